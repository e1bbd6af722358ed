"""The shipped demo model: `sevila demo` answers its example, `--model demo` everywhere, one-line errors."""

import json

import pytest

from sevila import cli
from sevila.hub import DEMO_DIR

needs_demo = pytest.mark.skipif(
    not (DEMO_DIR / "model" / "config.json").is_file(),
    reason="the demo model is not in this checkout (docs/demo.md, The shipped demo)",
)


@needs_demo
def test_demo_command_answers_the_example(capsys):
    """It says what the model is, where the evidence was, whether the keyframes found it and whether the answer
    is right."""
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Demo model: a 1.8 M-parameter toy SeViLA trained on synthetic videos")
    assert "Answer: (" in out and "Keyframes: " in out and "Frame scores" in out
    assert "Evidence (where the answer can be seen): " in out and "keyframes inside it: " in out
    assert "; the model is right" in out or "; the model is wrong" in out
    assert cli.main(["demo", "-q", "what colour was the shape that appeared?", "-o", "red", "-o", "blue"]) == 0
    out = capsys.readouterr().out
    assert "Answer: (" in out and "Correct answer" not in out and "Evidence" not in out


@needs_demo
def test_demo_model_by_name_everywhere(capsys):
    example = json.loads((DEMO_DIR / "example.json").read_text())
    args = ["answer", str(DEMO_DIR / example["video"]), "-q", example["question"], "--no-cache", "--json"]
    for option in example["options"]:
        args += ["-o", option]
    assert cli.main(args) == 2  # no silent default model
    assert "no model given: name one with --model" in capsys.readouterr().err
    assert cli.main([*args, "--model", "demo"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert len(result["keyframes"]) == 4 and len(result["frame_scores"]) == 32
    from sevila.inference import VideoQA

    qa = VideoQA.load("demo", device="cpu", cache=False)
    assert qa.predict(DEMO_DIR / example["video"], example["question"], example["options"]).index == result["index"]


def test_demo_errors_are_one_line(monkeypatch, tmp_path, capsys):
    import sevila.hub as hub
    from sevila.loading import load_model
    from sevila.utils.errors import CheckpointError

    assert cli.main(["demo", "-q", "what colour?"]) == 2
    assert "give both --question and --option" in capsys.readouterr().err
    monkeypatch.setattr(hub, "DEMO_DIR", tmp_path)
    with pytest.raises(CheckpointError, match="the demo model is not installed"):
        load_model("demo")
