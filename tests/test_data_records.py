"""Records: JSONL round trip, validation messages, the original SeViLA format, and staying torch-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sevila.data import (
    DataError,
    MomentRecord,
    QARecord,
    from_sevila_dict,
    read_records,
    read_sevila,
    record_from_dict,
    record_to_dict,
    to_sevila_dict,
    write_records,
    write_sevila,
)
from sevila.data.sevila_format import looks_like_sevila
from tests.support.paths import shared_dir


def qa(**overrides) -> QARecord:
    fields = dict(
        qid="CH_4010069381_6",
        video="1106/4010069381",
        dataset="nextqa",
        question="how do the two man play the instrument?",
        options=["roll the handle.", "tap their feet.", "strum the string.", "hit with sticks.", "pat with hand."],
        answer=0,
        question_type="CH",
    )
    fields.update(overrides)
    return QARecord(**fields)


def moment(**overrides) -> MomentRecord:
    fields = dict(
        qid="QVHighlight_2579",
        video="NUsG9BgSes0_210.0_360.0",
        query="A girl and her mother cooked while talking with each other on facetime.",
        duration=150,
        relevant_windows=[[82, 150]],
        relevant_clip_ids=[41, 42],
        saliency_scores=[[1, 1, 2], [3, 1, 4]],
    )
    fields.update(overrides)
    return MomentRecord(**fields)


def test_jsonl_round_trip_keeps_every_field(tmp_path):
    records = [
        qa(),
        qa(qid="Interaction_T1_0", dataset="star", answer=None, question_type="Interaction", start=12.1, end=26),
        qa(qid="VLEP_1", dataset="vlep", question=None, options=["a", "b"], answer=1, question_type=None),
        qa(qid="TVQA_0", dataset="tvqa", question="q?", start=0.0, end=10.01, extra={"ts": "0-10.01"}),
        moment(),
        moment(qid="QVHighlight_3158", relevant_windows=None, relevant_clip_ids=None, saliency_scores=None),
    ]
    path = tmp_path / "records.jsonl"
    write_records(path, records)
    assert read_records(path) == records
    lines = path.read_text().splitlines()
    assert len(lines) == len(records)
    first = json.loads(lines[0])
    assert list(first)[:3] == ["kind", "dataset", "qid"]
    assert first["start"] is None and first["extra"] == {}  # absent values are written as null
    assert json.loads(lines[1])["end"] == 26  # numbers are kept as written


def test_record_to_dict_has_kind_and_dataset_first():
    data = record_to_dict(moment())
    assert list(data)[:2] == ["kind", "dataset"]
    assert record_from_dict(data) == moment()


@pytest.mark.parametrize(
    ("line", "field", "problem"),
    [
        ({"question": None}, "question", "non-empty string"),
        ({"answer": 5}, "answer", "index 0..4"),
        ({"answer": True}, "answer", "index"),
        ({"options": ["only one"]}, "options", "2..5"),
        ({"start": 3.0}, "end", "go together"),
        ({"start": 5.0, "end": 1.0}, "start", "start <= end"),
        ({"dataset": "imagenet"}, "dataset", "not one of"),
        ({"colour": "red"}, "colour", "unknown field"),
        ({"kind": "video"}, "kind", "expected one of"),
    ],
)
def test_invalid_records_name_file_line_and_field(tmp_path, line, field, problem):
    good = record_to_dict(qa())
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "qid": "other", **line}) + "\n")
    with pytest.raises(DataError) as err:
        read_records(path)
    message = str(err.value)
    assert str(path) in message and "line 2" in message and f"field {field!r}" in message and problem in message
    assert err.value.field == field


def test_missing_field_and_bad_json_are_reported(tmp_path):
    data = record_to_dict(qa())
    del data["options"]
    path = tmp_path / "missing.jsonl"
    path.write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"missing\.jsonl, line 1, field 'options': missing"):
        read_records(path)
    path.write_text(json.dumps(record_to_dict(qa())) + "\n\n{not json\n")
    with pytest.raises(DataError, match=r"line 3: invalid JSON"):
        read_records(path)


def test_duplicate_qids_are_rejected(tmp_path):
    path = tmp_path / "dup.jsonl"
    write_records(path, [qa(), qa()])
    with pytest.raises(DataError, match=r"line 2, field 'qid': .* repeats the qid of line 1"):
        read_records(path)


def test_moment_record_invariants():
    with pytest.raises(ValueError, match="saliency_scores"):
        moment(saliency_scores=[[1, 2, 3]])
    with pytest.raises(ValueError, match=r"relevant_windows\[0\]"):
        moment(relevant_windows=[[10, 2]])
    with pytest.raises(ValueError, match="duration"):
        moment(duration=0)
    assert not moment(relevant_windows=None).labeled


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    write_records(path, [qa()])
    before = path.read_bytes()

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_records(path, [qa(qid="x_1_1")])
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]  # no temporary file left behind


def test_sevila_dicts_follow_the_notebook_key_order():
    assert list(to_sevila_dict(qa())) == [
        "video", "num_option", "qid", "a0", "a1", "a2", "a3", "a4", "answer", "question",
    ]  # fmt: skip
    tvqa = qa(qid="TVQA_0", dataset="tvqa", question="q?", question_type=None, start=0.0, end=10.01,
              extra={"ts": "0-10.01"})  # fmt: skip
    data = to_sevila_dict(tvqa)
    assert list(data)[-2:] == ["start", "end"] and (data["start"], data["end"]) == ("0", "10.01")
    edited = qa(qid="TVQA_0", dataset="tvqa", question="q?", question_type=None, start=1.5, end=10.01,
                extra={"ts": "0-10.01"})  # fmt: skip
    assert (to_sevila_dict(edited)["start"], to_sevila_dict(edited)["end"]) == ("1.5", "10.01")  # no stale strings
    vlep = to_sevila_dict(qa(qid="VLEP_1", dataset="vlep", question=None, options=["a", "b"], start=9, end=36.62))
    assert list(vlep) == ["video", "num_option", "qid", "a0", "a1", "answer", "start", "end"]
    assert (vlep["start"], vlep["end"]) == (9, 36.62)
    assert "answer" not in to_sevila_dict(qa(answer=None))
    assert "start" not in to_sevila_dict(qa(dataset="tvqa", question_type=None))  # no clip window
    assert to_sevila_dict(moment()) == {
        "video": "NUsG9BgSes0_210.0_360.0",
        "qid": "QVHighlight_2579",
        "query": moment().query,
        "duration": 150,
        "relevant_windows": [[82, 150]],
    }
    assert "relevant_windows" not in to_sevila_dict(moment(relevant_windows=None))


def test_sevila_round_trip_and_string_clips(tmp_path):
    original = [
        {"video": "25848", "num_option": 4, "qid": "HOW2QA_0", "a0": "A.", "a1": "B.", "a2": "C.", "a3": "D.",
         "answer": 2, "question": "What?", "start": "36.58", "end": "58.52"},
    ]  # fmt: skip
    path = tmp_path / "val.json"
    path.write_text(json.dumps(original))
    assert looks_like_sevila(path)
    (record,) = read_sevila(path, "how2qa")
    assert (record.start, record.end, record.extra["ts"]) == (36.58, 58.52, "36.58-58.52")
    write_sevila(tmp_path / "again.json", [record])
    assert (tmp_path / "again.json").read_text() == path.read_text()


def test_sevila_reader_names_record_and_field(tmp_path):
    path = tmp_path / "val.json"
    path.write_text(json.dumps([{"video": "v", "num_option": 5, "qid": "CW_1_1", "question": "q?", "a0": "x"}]))
    with pytest.raises(DataError, match=r"val\.json, record \[0\], field 'a1': missing"):
        read_sevila(path, "nextqa")
    with pytest.raises(DataError, match=r"field 'answer'"):
        from_sevila_dict({"video": "v", "num_option": 2, "qid": "VLEP_1", "a0": "x", "a1": "y", "answer": 2}, "vlep")


@pytest.mark.parity
def test_parity_annotations_read_as_sevila_records():
    path = shared_dir() / "parity" / "annotations.json"
    if not path.is_file():
        pytest.skip(f"shared parity annotations not found at {path} (set SEVILA_SHARED_DIR)")
    data = json.loads(path.read_text())
    records = [from_sevila_dict(d, "nextqa") for d in data["nextqa_style"]]
    assert [r.question_type for r in records] == ["DO", "CW"]
    assert [to_sevila_dict(r) for r in records] == data["nextqa_style"]
    moments = [from_sevila_dict(d, "qvhighlights") for d in data["qvhighlights_style"]]
    assert [to_sevila_dict(r) for r in moments] == data["qvhighlights_style"]


def test_records_and_converters_do_not_import_torch():
    code = (
        "import sys; import sevila.data.records, sevila.data, sevila.data.converters, sevila.data.targets; "
        "import sevila.cli.prepare; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_one_table_gives_every_dataset_its_kind_prompt_style_and_metrics():
    from sevila import prompts
    from sevila.data.converters import CONVERTIBLE_DATASETS
    from sevila.data.records import DATASET_TABLE, DATASETS, METRICS, MOMENT_DATASETS, QA_DATASETS

    assert set(DATASETS) == set(DATASET_TABLE) and len(DATASETS) == len(set(DATASETS))
    for name, spec in DATASET_TABLE.items():
        assert spec.prompt_style in prompts.PROMPT_STYLES and spec.prompt_style != "demo", name
        assert spec.metrics and set(spec.metrics) <= set(METRICS), name
        assert (name in QA_DATASETS) == (spec.kind == "qa") and (name in MOMENT_DATASETS) == (spec.kind == "moment")
    assert DATASET_TABLE["synthetic"].metrics == DATASET_TABLE["nextgqa"].metrics == ("qa", "grounding")
    assert DATASET_TABLE["synthetic"].prompt_style == "synthetic"
    # Synthetic records come from their generator, not from release files.
    assert set(CONVERTIBLE_DATASETS) == set(DATASETS) - {"synthetic"}
    record = qa(
        qid="colour_v0001_0",
        dataset="synthetic",
        question="What colour appeared?",
        question_type="colour",
        extra={"grounding_windows": [[1.0, 1.5]], "fps": 8, "duration": 8.0},
    )
    assert record_from_dict(record_to_dict(record)) == record
