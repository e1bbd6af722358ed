"""`sevila prepare`: conversion, summary, failures (exit 2 naming file/line/field), atomic output, and every
raw release file in the shared datasets folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import sevila.cli as cli
from sevila.data import read_records, sort_inputs
from tests.support.paths import shared_dir

DATASETS_DIR = shared_dir() / "datasets"
needs_shared = pytest.mark.skipif(
    not DATASETS_DIR.is_dir(), reason=f"shared datasets not found at {DATASETS_DIR} (set SEVILA_SHARED_DIR)"
)


@pytest.fixture(autouse=True)
def only_prepare(monkeypatch):
    """Run the dispatcher with this command only, independent of the other sub-commands' modules."""
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("prepare",))


def run(*args: str) -> int:
    return cli.main(["prepare", *map(str, args)])


VLEP_LINES = [
    {"example_id": 1, "vid_name": "a_ep", "ts": [1, 2.5], "events": ["x", "y"], "answer": 1, "split": "dev"},
    {"example_id": 2, "vid_name": "b_ep", "ts": [0, 3], "events": ["u", "v"], "answer": 0, "split": "dev"},
]


def test_prepare_writes_records_and_prints_a_summary(tmp_path, capsys):
    raw = tmp_path / "vlep_dev_release.jsonl"
    raw.write_text("\n".join(map(json.dumps, VLEP_LINES)))
    out = tmp_path / "out" / "val.jsonl"
    assert run("vlep", raw, "-o", out) == 0
    assert [r.qid for r in read_records(out)] == ["VLEP_1", "VLEP_2"]
    err = capsys.readouterr().err
    assert "2 records in, 2 out, 0 skipped" in err and "wrote 2 records" in err
    assert run("vlep", raw, "-o", tmp_path / "val.json", "--format", "sevila") == 0
    assert json.loads((tmp_path / "val.json").read_text())[0] == {
        "video": "a_ep", "num_option": 2, "qid": "VLEP_1", "a0": "x", "a1": "y", "answer": 1, "start": 1, "end": 2.5,
    }  # fmt: skip


def test_malformed_input_exits_2_naming_file_line_field_and_keeps_old_output(tmp_path, capsys):
    raw = tmp_path / "vlep_dev_release.jsonl"
    raw.write_text(json.dumps(VLEP_LINES[0]) + "\n" + json.dumps({**VLEP_LINES[1], "answer": 3}))
    out = tmp_path / "val.jsonl"
    out.write_text("previous\n")
    assert run("vlep", raw, "-o", out) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"sevila prepare: error: {raw}, line 2, field 'answer': 3 is outside 0..1"
    assert out.read_text() == "previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["val.jsonl", "vlep_dev_release.jsonl"]


def test_missing_file_exits_2(tmp_path, capsys):
    assert run("star", tmp_path / "nope.json", "-o", tmp_path / "x.jsonl") == 2
    assert "nope.json" in capsys.readouterr().err


def test_auxiliary_files_are_recognised_by_name_or_flag(tmp_path):
    csv, vmap, gsub = tmp_path / "val.csv", tmp_path / "map_vid_vidorID.json", tmp_path / "gsub_val.json"
    assert sort_inputs("nextgqa", [vmap, csv, gsub]) == (csv, vmap, gsub)
    assert sort_inputs("nextgqa", [csv], grounding="g.json", video_map="m.json") == (
        csv,
        Path("m.json"),
        Path("g.json"),
    )
    with pytest.raises(ValueError, match="exactly one annotation file"):
        sort_inputs("nextqa", [csv, tmp_path / "test.csv"])
    with pytest.raises(ValueError, match="two video map files"):
        sort_inputs("nextqa", [csv, vmap], video_map="other.json")
    with pytest.raises(ValueError, match="sampled frame timestamps"):
        sort_inputs("nextgqa", [csv, tmp_path / "upbd_val.json"])


def test_help_documents_the_auxiliary_files(capsys):
    with pytest.raises(SystemExit):
        run("--help")
    help_text = capsys.readouterr().out
    for name in ("map_vid_vidorID.json", "gsub_val.json", "how2_vid_mapping.json", "--video-map", "--grounding"):
        assert name in help_text


# Every file of the shared datasets folder: (dataset, auxiliary files, records out or the expected error).
MAP = "nextqa/map_vid_vidorID.json"
ALL_RAW_FILES: dict[str, tuple[str, list[str], int | str]] = {
    "nextqa/val.csv": ("nextqa", [MAP], 4996),
    "nextqa/test.csv": ("nextqa", [MAP], 8564),
    MAP: ("nextqa", [], "exactly one annotation file"),
    "nextgqa/val.csv": ("nextgqa", ["nextgqa/gsub_val.json", MAP], 3358),
    "nextgqa/test.csv": ("nextgqa", ["nextgqa/gsub_test.json", MAP], 5553),
    "nextgqa/gsub_val.json": ("nextgqa", [], "exactly one annotation file"),
    "nextgqa/gsub_test.json": ("nextgqa", [], "exactly one annotation file"),
    "nextgqa/frame2time_val.json": ("nextgqa", [], "sampled frame timestamps"),
    "nextgqa/frame2time_test.json": ("nextgqa", [], "sampled frame timestamps"),
    "nextgqa/upbd_val.json": ("nextgqa", [], "sampled frame timestamps"),
    "nextgqa/upbd_test.json": ("nextgqa", [], "sampled frame timestamps"),
    "star/STAR_test.json": ("star", [], 7377),
    "tvqa/tvqa_test_public.jsonl": ("tvqa", [], 7623),
    "tvqa/tvqa_plus_val.first300.json": ("tvqa", [], 300),
    "how2qa/how2qa_val_release.jsonl": ("how2qa", ["how2qa/how2_vid_mapping.json"], 3115),
    "how2qa/how2QA_val_release.csv": ("how2qa", [], 2849),
    "how2qa/how2QA_test_public_release.csv": ("how2qa", [], 2935),
    "how2qa/how2_vid_mapping.json": ("how2qa", [], "exactly one annotation file"),
    "vlep/vlep_dev_release.jsonl": ("vlep", [], 4392),
    "vlep/vlep_test_release.jsonl": ("vlep", [], 4192),
    "qvhighlights/highlight_val_release.jsonl": ("qvhighlights", [], 1550),
    "qvhighlights/highlight_test_release.jsonl": ("qvhighlights", [], 1542),
    "qvhighlights/highlight_test_with_gt.jsonl": ("qvhighlights", [], 1542),
    "qvhighlights/highlight_train_release.first300.jsonl": ("qvhighlights", [], 300),
    "sevila_preprocessed/nextqa/val.json": ("nextqa", [], 4996),
    "sevila_preprocessed/star/val.json": ("star", [], 7098),
    "sevila_preprocessed/star/test.json": ("star", [], 7377),
}


@needs_shared
def test_the_table_covers_every_shared_raw_file():
    present = {p.relative_to(DATASETS_DIR).as_posix() for p in DATASETS_DIR.rglob("*") if p.is_file()}
    assert present - {"README.md"} == set(ALL_RAW_FILES)


@needs_shared
@pytest.mark.parametrize("name", sorted(ALL_RAW_FILES))
def test_every_shared_raw_file_converts_or_names_the_cause(name, tmp_path, capsys):
    dataset, auxiliary, expected = ALL_RAW_FILES[name]
    out = tmp_path / "out.jsonl"
    status = run(dataset, DATASETS_DIR / name, *(DATASETS_DIR / a for a in auxiliary), "-o", out)
    err = capsys.readouterr().err
    if isinstance(expected, str):
        assert status == 2 and expected in err and name.split("/")[-1] in err
        assert not out.exists()
    else:
        assert status == 0, err
        assert f"{expected} out" in err
        assert len(read_records(out)) == expected
