"""Issue 17, the inference side: bad frame/keyframe numbers, clip windows, options, devices, backends, video
paths, special files, broken pipes and Ctrl-C each give one clear line (or the right result), never a raw
traceback, a hang or a silent default. Tiny models and videos made here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from sevila import cli
from sevila.data.paths import check_video_path, video_file
from sevila.data.records import QARecord
from sevila.inference import FewerFrames, VideoQA
from sevila.model.text import PromptTruncated
from sevila.video import BackendUnavailable, VideoError
from sevila_toy.pattern_videos import write_video
from tests.support.tiny import OPTIONS, QUESTION, tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    """16 frames at 2 fps: an 8-second video."""
    return write_video(tmp_path_factory.mktemp("videos") / "eight_seconds.mp4", num_frames=16, fps=2)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "tiny"
    tiny_model(seed=1).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=1)


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging the suite if a regression blocks (e.g. reading a FIFO)."""

    def expired(signum, frame):
        raise TimeoutError(f"still running after {seconds}s: a hang")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def answer_args(video, model_dir, *extra) -> list[str]:
    return ["answer", str(video), "-q", QUESTION, "-o", OPTIONS[0], "-o", OPTIONS[1], "--model", str(model_dir), *extra]


def run_cli(args, capsys) -> tuple[int, str]:
    code = cli.main(args)
    err = capsys.readouterr().err
    return code, err


def one_line_error(err: str, command: str = "answer") -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sevila {command}: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ------------------------------------------------------------------------------------------ frames, keyframes
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_frames": 0}, "num_frames (--frames) must be at least 1, got 0"),
        ({"num_frames": -3}, "num_frames (--frames) must be at least 1, got -3"),
        ({"num_keyframes": 0}, "num_keyframes (--keyframes) must be at least 1, got 0"),
        ({"num_keyframes": -1}, "num_keyframes (--keyframes) must be at least 1, got -1"),
        ({"num_frames": 4, "num_keyframes": 8}, "num_keyframes (--keyframes) is 8 but only 4 frames are sampled"),
    ],
)
def test_bad_frame_numbers_are_errors_not_defaults(model, model_dir, kwargs, message):
    with pytest.raises(ValueError) as info:
        VideoQA(model, **kwargs)
    assert message in str(info.value)
    with pytest.raises(ValueError) as info:  # checked before the model is loaded
        VideoQA.load(model_dir, device="cpu", cache=False, **kwargs)
    assert message in str(info.value)


def test_bad_frame_numbers_per_call(model, video):
    qa = VideoQA(model, num_frames=4, num_keyframes=2)
    with pytest.raises(ValueError, match=r"num_frames \(--frames\) must be at least 1, got 0"):
        qa.predict(video, QUESTION, OPTIONS[:2], num_frames=0)
    with pytest.raises(ValueError, match=r"num_keyframes \(--keyframes\) must be at least 1, got 0"):
        qa.predict(video, QUESTION, OPTIONS[:2], num_keyframes=0)
    with pytest.raises(TypeError, match=r"num_frames \(--frames\) must be a whole number, got 2.5"):
        qa.predict(video, QUESTION, OPTIONS[:2], num_frames=2.5)
    with pytest.raises(ValueError, match="is 6 but only 4 frames are sampled"):
        qa.predict(video, QUESTION, OPTIONS[:2], num_keyframes=6)
    # Without the localizer keyframes are not chosen: a default keyframe count above --frames is fine.
    assert len(VideoQA(model, num_frames=2).predict(video, QUESTION, OPTIONS[:2], use_localizer=False).keyframes) == 2


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--frames", "0"], "num_frames (--frames) must be at least 1, got 0"),
        (["--frames", "-2"], "num_frames (--frames) must be at least 1, got -2"),
        (["--keyframes", "0"], "num_keyframes (--keyframes) must be at least 1, got 0"),
        (["--frames", "4", "--keyframes", "9"], "num_keyframes (--keyframes) is 9 but only 4 frames are sampled"),
    ],
)
def test_cli_bad_frame_numbers(video, model_dir, capsys, extra, message):
    code, err = run_cli(answer_args(video, model_dir, "--no-cache", *extra), capsys)
    assert code == 2 and message in one_line_error(err)


def test_more_frames_than_the_video_has_uses_each_frame_once(model, video):
    """Decision: clamp with a warning, not refuse. The original samples min(n, frames) replacement-free
    segments, so a short video still gets an answer (also at the default 32 frames); repeating frames instead
    would make the localizer pick one frame several times."""
    qa = VideoQA(model, num_frames=100, num_keyframes=4)
    with pytest.warns(FewerFrames, match=r"eight_seconds.mp4 has only 16 frames: using each once instead of 100"):
        answer = qa.predict(video, QUESTION, OPTIONS[:3])
    assert answer.frame_indices == list(range(16)) and len(answer.frame_scores) == 16
    assert len(set(answer.keyframes)) == 4 and len(set(answer.keyframe_times)) == 4


def test_cli_more_frames_than_the_video_warns_on_one_line(video, model_dir, capsys):
    with pytest.warns(FewerFrames, match="has only 16 frames"):
        code, _ = run_cli(answer_args(video, model_dir, "--no-cache", "--frames", "100", "--json"), capsys)
    assert code == 0
    with cli._one_line_warnings("sevila answer"):
        line = warnings.formatwarning(FewerFrames("a.mp4 has only\n16 frames"), FewerFrames, "x.py", 1)
    assert line == "sevila answer: warning: a.mp4 has only 16 frames\n"


def test_fewer_frames_than_keyframes_is_an_error(model, tmp_path):
    short = write_video(tmp_path / "three.mp4", num_frames=3, fps=2)
    qa = VideoQA(model, num_frames=8, num_keyframes=4)
    with pytest.warns(FewerFrames), pytest.raises(VideoError, match="only 3 distinct frames to choose 4 keyframes"):
        qa.predict(short, QUESTION, OPTIONS[:2])


# ------------------------------------------------------------------------------------------ clip windows
@pytest.mark.parametrize(
    ("clip", "message"),
    [
        ((-3.0, 2.0), "clip window (-3s, 2s) starts before 0s"),
        ((0.0, float("inf")), "clip window (0, inf): start and end must be finite numbers of seconds"),
        ((float("nan"), 2.0), "start and end must be finite"),
        ((4.0, 4.0), "clip window (4s, 4s) is empty"),
        ((5.0, 2.0), "clip window (5s, 2s) is empty"),
        ((9.0, 12.0), "clip window (9s, 12s) is outside the video"),
        (("a", 2), "a clip window is two numbers (start, end) in seconds"),
    ],
)
def test_bad_clip_windows(model, video, tmp_path, clip, message):
    from sevila.features import FeatureCache

    qa = VideoQA(model, num_frames=4, num_keyframes=2, cache=FeatureCache(tmp_path / "cache"))
    with pytest.raises(VideoError) as info:
        qa.predict(video, QUESTION, OPTIONS[:2], clip=clip)
    assert message in str(info.value) and "eight_seconds.mp4" in str(info.value)


@pytest.mark.parametrize(
    ("clip", "message"),
    [
        (["-3", "2"], "clip window (-3s, 2s) starts before 0s"),
        (["0", "inf"], "clip window (0, inf): start and end must be finite"),
    ],
)
def test_cli_bad_clip_windows(video, model_dir, capsys, clip, message):
    code, err = run_cli(answer_args(video, model_dir, "--no-cache", "--frames", "4", "--clip", *clip), capsys)
    assert code == 2 and message in one_line_error(err)


def test_clip_past_the_end_is_clamped_and_gives_distinct_keyframes(model, video):
    """(7.5 s, 100 s) of an 8 s video: clamped to the video as in the original (and eval); its one frame at
    2 fps is used once rather than repeated 4 times."""
    qa = VideoQA(model, num_frames=4, num_keyframes=1)
    with pytest.warns(FewerFrames, match=r"clip window \(7.5s, 100s\) of .*eight_seconds.mp4 has only 1 frame:"):
        answer = qa.predict(video, QUESTION, OPTIONS[:2], clip=(7.5, 100.0))
    assert answer.frame_indices == [15] and answer.keyframes == [0]
    with pytest.warns(FewerFrames), pytest.raises(VideoError, match="only 1 distinct frame to choose 2 keyframes"):
        qa.predict(video, QUESTION, OPTIONS[:2], clip=(7.5, 100.0), num_keyframes=2)


# ------------------------------------------------------------------------------------------ questions, options
@pytest.mark.parametrize(
    ("question", "options", "error", "message"),
    [
        (QUESTION, ["yes", "   "], ValueError, "option 2 is empty (only whitespace)"),
        (QUESTION, ["\t", "no"], ValueError, "option 1 is empty (only whitespace)"),
        (QUESTION, None, TypeError, "options must be a list of strings, got NoneType"),
        (QUESTION, (o for o in OPTIONS[:2]), TypeError, "options must be a list of strings, got generator"),
        (QUESTION, "ab", TypeError, "options must be a list of strings, not one string"),
        (QUESTION, ["yes", 3], TypeError, "option 2 must be a string, got int"),
        (42, OPTIONS[:2], TypeError, "the question must be a string, got int"),
        ("  ", OPTIONS[:2], ValueError, "the question is empty"),
    ],
)
def test_bad_questions_and_options(model, video, question, options, error, message):
    qa = VideoQA(model, num_frames=4, num_keyframes=2)
    with pytest.raises(error) as info:
        qa.predict(video, question, options)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("questions", "message"),
    [
        ([(QUESTION, OPTIONS[:2]), QUESTION], "questions[1] must be a (question, options) pair, got 'what is"),
        ([(QUESTION,)], "questions[0] must be a (question, options) pair, got ('what is"),
        ([None], "questions[0] must be a (question, options) pair, got None"),
        (QUESTION, "questions must be a list of (question, options) pairs, got str"),
        (None, "questions must be a list of (question, options) pairs, got NoneType"),
    ],
)
def test_malformed_predict_many_items(model, video, questions, message):
    qa = VideoQA(model, num_frames=4, num_keyframes=2)
    with pytest.raises(TypeError) as info:
        qa.predict_many(video, questions)
    assert str(info.value).startswith(message)


def test_predict_many_takes_a_generator_of_pairs(model, video):
    qa = VideoQA(model, num_frames=4, num_keyframes=2)
    answers = qa.predict_many(video, ((QUESTION, OPTIONS[:n]) for n in (2, 3)))
    assert [len(a.options) for a in answers] == [2, 3]


def test_cli_whitespace_option(video, model_dir, capsys):
    args = ["answer", str(video), "-q", QUESTION, "-o", "a", "-o", "  ", "--model", str(model_dir), "--no-cache"]
    code, err = run_cli(args, capsys)
    assert code == 2 and one_line_error(err).endswith("option 2 is empty (only whitespace)")


def test_truncated_prompt_warns_with_the_options_it_loses(model, video):
    long_question = " ".join([QUESTION] * 5)
    qa = VideoQA(model, num_frames=4, num_keyframes=2)
    with pytest.warns(PromptTruncated) as caught:
        qa.predict(video, long_question, OPTIONS)
    messages = [str(w.message) for w in caught]
    answerer = [m for m in messages if "losing option" in m]
    assert answerer and answerer[0].startswith("prompt cut to 77 tokens as the original does: ")
    assert "tokens dropped from the end, losing option E: 'Question: what is the man" in answerer[0]
    assert all("\n" not in m for m in messages)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        qa.predict(video, QUESTION, OPTIONS[:3])  # a prompt that fits says nothing
        qa.predict(video, long_question, OPTIONS)  # nor does the same prompt a second time
        qa.predict(video, long_question[:240], OPTIONS[:2])  # nor one that loses only the instruction (80 tokens)


# ------------------------------------------------------------------------------------------ files
def test_fifo_and_dev_zero_are_refused_before_the_cache_reads_them(model, tmp_path):
    from sevila.features import FeatureCache

    fifo = tmp_path / "video.mp4"
    os.mkfifo(fifo)
    qa = VideoQA(model, num_frames=4, num_keyframes=2, cache=FeatureCache(tmp_path / "cache"))
    with deadline(20):
        with pytest.raises(VideoError, match=r"video.mp4: not a regular file \(a pipe, device or socket"):
            qa.predict(fifo, QUESTION, OPTIONS[:2])
        if Path("/dev/zero").exists():
            with pytest.raises(VideoError, match="/dev/zero: not a regular file"):
                qa.predict("/dev/zero", QUESTION, OPTIONS[:2])
        with pytest.raises(VideoError, match="is a directory, not a regular file"):
            qa.predict(tmp_path, QUESTION, OPTIONS[:2])


def test_cli_fifo_exits_with_one_line(model_dir, tmp_path):
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    env = {**os.environ, "SEVILA_CACHE_DIR": str(tmp_path / "cache")}
    args = answer_args(fifo, model_dir, "--device", "cpu")
    done = subprocess.run(
        [sys.executable, "-m", "sevila.cli", *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert done.returncode == 2
    assert one_line_error(done.stderr).endswith(
        "pipe.mp4: not a regular file (a pipe, device or socket cannot be read as a video)"
    )


# ------------------------------------------------------------------------------------------ environment
def test_unknown_or_missing_device(model_dir, video, capsys):
    with pytest.raises(ValueError, match=r"unknown device 'gpu'; available here: cpu"):
        VideoQA.load(model_dir, device="gpu", cache=False)
    code, err = run_cli(answer_args(video, model_dir, "--device", "gpu", "--no-cache"), capsys)
    assert code == 2 and "unknown device 'gpu'; available here: cpu" in one_line_error(err)
    if torch.cuda.is_available():
        missing = f"cuda:{torch.cuda.device_count()}"
        with pytest.raises(ValueError, match=rf"device '{missing}' is not available: there are"):
            VideoQA.load(model_dir, device=missing, cache=False)
    else:
        with pytest.raises(ValueError, match=r"device 'cuda' is not available: .*; available here: cpu"):
            VideoQA.load(model_dir, device="cuda", cache=False)
        code, err = run_cli(answer_args(video, model_dir, "--device", "cuda", "--no-cache"), capsys)
        assert code == 2 and "device 'cuda' is not available" in one_line_error(err)


@pytest.mark.parametrize(("backend", "module"), [("decord", "decord"), ("torchcodec", "torchcodec.decoders")])
def test_missing_backend_says_what_to_install(model, model_dir, video, capsys, monkeypatch, backend, module):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail
    hint = f"pip install 'sevila[{backend}]'"
    with pytest.raises(BackendUnavailable) as info:
        VideoQA(model, backend=backend)
    assert hint in str(info.value) and isinstance(info.value, ImportError)
    with pytest.raises(BackendUnavailable):
        VideoQA.load(model_dir, device="cpu", cache=False, backend=backend)
    code, err = run_cli(answer_args(video, model_dir, "--backend", backend, "--no-cache"), capsys)
    assert code == 2 and hint in one_line_error(err)


def test_unknown_key_in_video_path(capsys):
    record = QARecord("q1", "1106/4010069381", "nextqa", QUESTION, OPTIONS[:2], 0)
    assert video_file(record, "/v", "{dataset}/{video}.mp4") == "/v/nextqa/1106/4010069381.mp4"
    assert video_file(record, "/v", "{video[0]}/{qid}.mp4") == "/v/1/q1.mp4"
    expected = "video path '{vid}.mp4' has the unknown key {vid}; the allowed keys are {video}, {qid}, {dataset}"
    with pytest.raises(ValueError) as info:
        video_file(record, "/v", "{vid}.mp4")
    assert str(info.value) == expected
    with pytest.raises(ValueError, match=r"has the unknown key \{0\}"):
        check_video_path("{0}.mp4")
    with pytest.raises(ValueError, match="is not a valid template"):
        check_video_path("{video.mp4")


def test_cache_limit_flag(video, model_dir, capsys):
    from sevila.cli.common import load_videoqa

    parser = cli.build_parser()
    args = parser.parse_args(answer_args(video, model_dir, "--device", "cpu", "--cache-limit", "5MB"))
    assert load_videoqa(args).cache.max_bytes == 5 * 10**6
    args = parser.parse_args(answer_args(video, model_dir, "--device", "cpu", "--cache-limit", "none"))
    assert load_videoqa(args).cache.max_bytes is None
    code, err = run_cli(answer_args(video, model_dir, "--cache-limit", "lots"), capsys)
    assert code == 2 and "--cache-limit: not a size: 'lots'" in one_line_error(err)
    code, err = run_cli(answer_args(video, model_dir, "--cache-limit", "1GB", "--no-cache"), capsys)
    assert code == 2 and "--cache-limit has no effect with --no-cache" in one_line_error(err)


# ------------------------------------------------------------------------------------------ pipes, Ctrl-C
def test_ctrl_c_and_broken_pipe_end_quietly(video, model_dir, capsys, monkeypatch):
    import sevila.cli.answer as answer

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(answer, "run", interrupted)
    code, err = run_cli(answer_args(video, model_dir), capsys)
    assert code == 130 and err == "sevila answer: interrupted\n"

    def broken(args):
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(answer, "run", broken)
    code, err = run_cli(answer_args(video, model_dir), capsys)
    assert code == 141 and err == ""


def test_real_broken_pipe_exits_141_without_a_traceback():
    script = (
        "import sys, sevila.cli.answer as a\n"
        "def run(args):\n"
        "    for _ in range(200000):\n"
        "        print('x' * 100)\n"
        "a.run = run\n"
        "from sevila import cli\n"
        "sys.exit(cli.main(['answer', 'v.mp4', '-q', 'q', '-o', 'a', '-o', 'b']))\n"
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    process.stdout.readline()
    process.stdout.close()  # like `| head -1`
    code = process.wait(timeout=60)
    err = process.stderr.read().decode()
    process.stderr.close()
    assert code == 141 and err == ""
