"""`sevila app` without a browser: what the page does (`sevila.app.logic`), the page's build and the command.

The page is driven in a real browser by tests/test_app_browser.py; these tests check the same behaviour fast.
"""

import html
import socket
import sys

import pytest

from sevila import cli
from sevila.app.logic import (
    DEMO_MODEL,
    Service,
    answer_html,
    bundled_example,
    check_question,
    error_message,
    moment_rows,
    moments_html,
    visible_options,
)
from sevila.features import FeatureCache
from sevila.hub import DEMO_DIR

EXAMPLE = bundled_example()
needs_demo = pytest.mark.skipif(
    EXAMPLE is None or not (DEMO_DIR / "model" / "config.json").is_file(),
    reason="the demo model or its example is not in this checkout (docs/demo.md, The shipped demo)",
)
try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
needs_matplotlib = pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed: sevila[app] has it")
FAST = {"frames": 16, "keyframes": 3}


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    return Service(device="cpu", cache=FeatureCache(tmp_path_factory.mktemp("cache")))


def cli_error(capsys, args) -> str:
    """What `sevila answer` prints after ``sevila answer: `` for these arguments (it must fail)."""
    assert cli.main(["answer", *args, "--model", "demo", "--device", "cpu", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sevila answer: error: "), err
    return err.removeprefix("sevila answer: ")


# ---------------------------------------------------------------------------------------------- the option rows
def test_only_the_rows_on_show_are_options():
    values = ["circle", "triangle", "left over", None, None]
    assert visible_options(values, 2) == ["circle", "triangle"]
    assert visible_options(values, 4) == ["circle", "triangle", "left over", ""]
    assert visible_options(values, 9) == ["circle", "triangle", "left over", "", ""]  # at most 5 rows
    assert visible_options(values, 0) == ["circle", "triangle"]  # at least 2


@needs_demo
@pytest.mark.parametrize(
    "question, options",
    [
        ("What shape appeared?", ["circle", ""]),
        ("What shape appeared?", ["circle", "  "]),
        ("What shape appeared?", ["circle"]),
        ("What shape appeared?", ["a", "b", "c", "d", "e", "f"]),
        ("   ", ["circle", "triangle"]),
    ],
    ids=["empty option", "whitespace option", "one option", "six options", "empty question"],
)
def test_a_bad_question_gives_the_command_lines_message(capsys, question, options):
    """The page checks before any work, with the library's checks' words: the line `sevila answer` prints."""
    with pytest.raises(ValueError) as caught:
        check_question(question, options)
    args = [str(EXAMPLE.video), "-q", question] + [arg for option in options for arg in ("-o", option)]
    assert error_message(caught.value) == cli_error(capsys, args)


@needs_demo
@needs_matplotlib
def test_a_broken_video_gives_the_command_lines_message(tmp_path, monkeypatch, capsys, service):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video\n" * 20)
    with pytest.raises(ValueError) as caught:
        service.answer(DEMO_MODEL, str(broken), EXAMPLE.question, EXAMPLE.options, **FAST)
    shown = error_message(caught.value, str(broken))
    assert str(tmp_path) not in shown  # an upload's temporary folder means nothing to the person
    monkeypatch.chdir(tmp_path)  # the command line names the file as it was given: here, by its name
    assert shown == cli_error(capsys, ["broken.mp4", "-q", EXAMPLE.question, "-o", "a", "-o", "b"])
    assert shown.startswith("error: broken.mp4: ")


def test_no_video_and_unexpected_errors_are_one_line():
    with pytest.raises(ValueError, match="no video: upload one or use the bundled example"):
        Service().answer(DEMO_MODEL, None, "q?", ["a", "b"], 32, 4)
    message = error_message(RuntimeError("boom\n  in the middle"))
    assert message == "error: unexpected RuntimeError: boom in the middle (the server log has the traceback)"


# ---------------------------------------------------------------------------------------------- answering
@needs_demo
@needs_matplotlib
def test_answer_is_the_librarys_and_the_second_question_reads_the_cache(service):
    from sevila.inference import VideoQA

    first = service.answer(DEMO_MODEL, str(EXAMPLE.video), EXAMPLE.question, EXAMPLE.options, 16.0, 3.0)
    expected = VideoQA.load("demo", device="cpu", cache=False).predict(
        EXAMPLE.video, EXAMPLE.question, EXAMPLE.options, num_frames=16, num_keyframes=3
    )
    assert (first.answer.text, first.answer.keyframes) == (expected.text, expected.keyframes)
    assert first.answer.option_scores == pytest.approx(expected.option_scores, abs=1e-4)
    assert first.from_cache is False
    assert len(first.thumbnails) == 3
    for (image, caption), t in zip(first.thumbnails, expected.keyframe_times):
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8"
        assert caption.endswith(f"{t:.2f} s")
    curve = first.figure.axes[0]
    assert len(curve.lines[0].get_xdata()) == 16  # every sampled frame's score
    text = answer_html(first)
    assert f"Answer: ({expected.letter}) {html.escape(expected.text)}" in text
    assert text.count("<tr") == 1 + len(EXAMPLE.options)  # a header and one row per option, with its score
    assert "read and encoded" in text

    second = service.answer(DEMO_MODEL, str(EXAMPLE.video), "What colour was it?", ["red", "blue"], 16, 3)
    assert second.from_cache is True and "from the feature cache" in answer_html(second)

    uncached = Service(device="cpu", cache=None).answer(DEMO_MODEL, str(EXAMPLE.video), "Why?", ["a", "b"], 16, 3)
    assert uncached.from_cache is None and "(no feature cache)" in answer_html(uncached)


@needs_demo
@needs_matplotlib
def test_the_feature_cache_is_the_command_lines(tmp_path, monkeypatch, capsys):
    """A video the command line has seen is not encoded again by the app (the default cache of both)."""
    monkeypatch.setenv("SEVILA_CACHE_DIR", str(tmp_path / "cache"))
    options = [arg for option in EXAMPLE.options for arg in ("-o", option)]
    args = ["answer", str(EXAMPLE.video), "-q", EXAMPLE.question, *options, "--model", "demo", "--device", "cpu"]
    assert cli.main(args) == 0
    capsys.readouterr()
    result = Service(device="cpu").answer(DEMO_MODEL, str(EXAMPLE.video), "Which colour?", ["red", "blue"], 32, 4)
    assert result.from_cache


@needs_demo
@needs_matplotlib
def test_option_text_is_shown_as_text(service):
    result = service.answer(DEMO_MODEL, str(EXAMPLE.video), EXAMPLE.question, ["<b>circle</b>", "a & b"], **FAST)
    shown = answer_html(result)
    assert "<b>circle</b>" not in shown and "&lt;b&gt;circle&lt;/b&gt;" in shown and "a &amp; b" in shown


@needs_demo
@needs_matplotlib
def test_more_keyframes_than_frames_gives_the_librarys_message(service):
    with pytest.raises(ValueError, match=r"num_keyframes \(--keyframes\) is 5 but only 4 frames are sampled"):
        service.answer(DEMO_MODEL, str(EXAMPLE.video), EXAMPLE.question, EXAMPLE.options, 4, 5)


# ---------------------------------------------------------------------------------------------- moments
@needs_demo
@needs_matplotlib
def test_moments_are_the_librarys(service):
    from sevila.inference import VideoQA

    result = service.find_moments(DEMO_MODEL, str(EXAMPLE.video), "a red triangle", 16)
    expected = VideoQA.load("demo", device="cpu", cache=False).localize(EXAMPLE.video, "a red triangle", num_frames=16)
    assert moment_rows(result.localization) == [
        [round(s, 2), round(e, 2), round(score, 3)] for s, e, score in expected.moments
    ]
    count = len(expected.moments)
    assert (f"{count} moment" if count else "no moment") in moments_html(result)
    with pytest.raises(ValueError, match="the query is empty"):
        service.find_moments(DEMO_MODEL, str(EXAMPLE.video), "  ", 16)


@needs_demo
@needs_matplotlib
def test_frames_per_second_replaces_the_frame_count(service):
    from sevila.inference import VideoQA

    qa = VideoQA.load("demo", device="cpu", cache=False)
    by_rate = service.answer(DEMO_MODEL, str(EXAMPLE.video), EXAMPLE.question, EXAMPLE.options, 16, 3, fps=1)
    expected = qa.predict(EXAMPLE.video, EXAMPLE.question, EXAMPLE.options, fps=1, num_keyframes=3)
    assert by_rate.answer.to_dict() == expected.to_dict()
    assert len(by_rate.answer.frame_indices) != 16  # the rate, not the slider, chose the frames
    by_count = service.answer(DEMO_MODEL, str(EXAMPLE.video), EXAMPLE.question, EXAMPLE.options, 16, 3, fps=0)
    assert len(by_count.answer.frame_indices) == 16
    moments = service.find_moments(DEMO_MODEL, str(EXAMPLE.video), "a red triangle", 16, fps=1)
    assert moments.localization.to_dict() == qa.localize(EXAMPLE.video, "a red triangle", fps=1).to_dict()


# ---------------------------------------------------------------------------------------------- the page and the command
@needs_demo
@pytest.mark.slow  # importing gradio takes ~3 s
def test_the_page_has_what_the_browser_test_drives(service):
    pytest.importorskip("gradio", reason='the app needs gradio: pip install "sevila[app]"')
    from sevila.app.page import build_page

    page = build_page(service)
    ids = {block.elem_id for block in page.blocks.values() if getattr(block, "elem_id", None)}
    assert {
        "video",
        "model",
        "frames",
        "fps",
        "keyframes",
        "question",
        "answer-button",
        "answer-text",
        "answer-error",
    } <= ids
    assert {
        "option-a",
        "option-e",
        "keyframe-thumbnails",
        "answer-plot",
        "query",
        "moments-button",
        "moments-table",
    } <= ids
    model = next(b for b in page.blocks.values() if getattr(b, "elem_id", None) == "model")
    assert model.value == "demo" and any("toy model" in label for label, _ in model.choices)


def test_the_command_without_gradio_says_what_to_install(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio raises ImportError
    assert cli.main(["app"]) == 2
    assert capsys.readouterr().err.strip() == 'sevila app: error: the app needs gradio: pip install "sevila[app]"'


def test_the_command_refuses_a_bad_port(capsys):
    assert cli.main(["app", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "sevila app: error: --port must be between 1 and 65535, got 70000"


@needs_demo
@pytest.mark.slow  # imports gradio and loads the demo model before it finds the port taken
def test_the_command_names_a_taken_port(capsys):
    pytest.importorskip("gradio", reason='the app needs gradio: pip install "sevila[app]"')
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["app", "--port", str(port), "--device", "cpu", "--no-cache"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sevila app: error: cannot serve on 127.0.0.1:{port}: ") and "\n" not in err
    assert err.endswith("; choose another --port or --host")


def test_the_command_serves_on_localhost_by_default():
    args = cli.build_parser().parse_args(["app"])
    assert (args.host, args.port, args.share, args.model) == ("127.0.0.1", 7860, False, "demo")
