"""Pictures from the command line: `sevila answer --plot`, `sevila localize` (table, --json, --plot)."""

import json
import struct
import subprocess
import sys

import pytest

from sevila import cli
from sevila.hub import DEMO_DIR

needs_demo = pytest.mark.skipif(
    not (DEMO_DIR / "model" / "config.json").is_file(),
    reason="the demo model is not in this checkout (docs/demo.md, The shipped demo)",
)
try:
    import matplotlib  # noqa: F401

    HAVE_MATPLOTLIB = True
except ImportError:
    HAVE_MATPLOTLIB = False
needs_matplotlib = pytest.mark.skipif(
    not HAVE_MATPLOTLIB, reason="matplotlib is not installed: pip install 'sevila[plot]'"
)

EXAMPLE = json.loads((DEMO_DIR / "example.json").read_text()) if (DEMO_DIR / "example.json").is_file() else {}
VIDEO = str(DEMO_DIR / EXAMPLE.get("video", "example.mp4"))
FAST = ["--model", "demo", "--device", "cpu", "--frames", "16", "--keyframes", "3"]


def png_size(path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def answer_args(*extra: str) -> list[str]:
    args = ["answer", VIDEO, "-q", EXAMPLE["question"], *FAST]
    for option in EXAMPLE["options"]:
        args += ["-o", option]
    return [*args, *extra]


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("SEVILA_CACHE_DIR", str(tmp_path / "cache"))  # shared by the commands of one test


@needs_demo
@needs_matplotlib
def test_answer_plot_writes_a_png(tmp_path, capsys):
    path = tmp_path / "answer.png"
    assert cli.main(answer_args("--plot", str(path))) == 0
    captured = capsys.readouterr()
    assert "Answer: (" in captured.out and f"wrote the plot to {path}" in captured.err
    width, height = png_size(path)
    assert 600 <= width <= 2000 and 400 <= height <= 1500  # the curve and a row of thumbnails beneath it


@needs_demo
@needs_matplotlib
def test_localize_prints_moments_json_and_plot(tmp_path, capsys):
    query = ["localize", VIDEO, "-q", "a red triangle", *FAST]
    assert cli.main(query) == 0
    out = capsys.readouterr().out
    assert out.startswith("Moments for: a red triangle") and "start" in out and "s  " in out
    path = tmp_path / "moments.png"
    assert cli.main([*query, "--json", "--plot", str(path)]) == 0
    captured = capsys.readouterr()
    row = json.loads(captured.out)  # one JSON object, nothing else on stdout
    assert set(row) == {"query", "vid", "pred_relevant_windows", "pred_saliency_scores"}
    assert row["query"] == "a red triangle" and row["vid"] == "example"
    windows = row["pred_relevant_windows"]
    assert windows and all(len(w) == 3 and 0 <= w[0] < w[1] <= 8.0 for w in windows)
    assert [w[2] for w in windows] == sorted((w[2] for w in windows), reverse=True)
    assert len(row["pred_saliency_scores"]) == 4  # one per 2-second clip of the 8-s example
    width, height = png_size(path)
    assert width >= 600 and height >= 250
    assert f"wrote the plot to {path}" in captured.err


def test_missing_matplotlib_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    path = tmp_path / "x.png"
    commands = [["localize", VIDEO, "-q", "x", *FAST, "--plot", str(path)]]
    if EXAMPLE:
        commands.append(answer_args("--plot", str(path)))
    for argv in commands:
        assert cli.main(argv) == 2  # before the model is loaded
        err = capsys.readouterr().err
        assert err.splitlines() == [f"sevila {argv[0]}: error: --plot needs matplotlib: pip install 'sevila[plot]'"]
    assert not path.exists()


@needs_matplotlib
def test_bad_plot_path_fails_before_the_model(tmp_path, capsys):
    assert cli.main(["localize", VIDEO, "-q", "x", *FAST, "--plot", str(tmp_path / "no" / "x.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["localize", VIDEO, "-q", "x", *FAST, "--plot", str(tmp_path / "x.txt")]) == 2
    assert "must end in one of .png" in capsys.readouterr().err


def test_importing_sevila_does_not_import_matplotlib():
    code = "import sys, sevila, sevila.inference, sevila.plots, sevila.cli; sevila.cli.build_parser(); print('matplotlib' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
