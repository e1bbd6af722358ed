"""Converters: hand-written raw snippets of every release format, malformed input, and (when the shared
release files are present) fidelity to the original's preprocessed files."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from sevila.data import DataError, convert, read_sevila, write_sevila
from sevila.data.converters.how2qa import correct_position
from tests.support.paths import shared_dir

DATASETS_DIR = shared_dir() / "datasets"
needs_shared = pytest.mark.skipif(
    not DATASETS_DIR.is_dir(), reason=f"shared datasets not found at {DATASETS_DIR} (set SEVILA_SHARED_DIR)"
)

NEXTQA_HEADER = "video,frame_count,width,height,question,answer,qid,type,a0,a1,a2,a3,a4\n"
NEXTQA_ROW = "4010069381,369,640,480,how do the two man play the instrument,0,6,CH,roll the handle,tap their feet,strum the string,hit with sticks,pat with hand\n"  # noqa: E501


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8", newline="")
    return path


@pytest.fixture
def vidor_map(tmp_path) -> Path:
    return write(tmp_path / "map_vid_vidorID.json", json.dumps({"4010069381": "1106/4010069381"}))


def test_nextqa(tmp_path, vidor_map):
    csv = write(tmp_path / "val.csv", NEXTQA_HEADER + NEXTQA_ROW)
    (record,), summary = convert("nextqa", csv, video_map=vidor_map)
    assert record.qid == "CH_4010069381_6" and record.video == "1106/4010069381"
    assert record.question == "how do the two man play the instrument?"
    assert record.options[0] == "roll the handle." and record.answer == 0 and record.question_type == "CH"
    assert (summary.records_in, summary.records_out, sum(summary.skipped.values())) == (1, 1, 0)


def test_nextqa_needs_its_map_and_its_columns(tmp_path, vidor_map):
    csv = write(tmp_path / "val.csv", NEXTQA_HEADER + NEXTQA_ROW)
    with pytest.raises(ValueError, match="map_vid_vidorID.json"):
        convert("nextqa", csv)
    bad = write(tmp_path / "bad.csv", NEXTQA_HEADER + NEXTQA_ROW.replace(",0,6,CH,", ",7,6,CH,"))
    with pytest.raises(DataError, match=r"bad\.csv, line 2, field 'answer': 7 is outside 0\.\.4"):
        convert("nextqa", bad, video_map=vidor_map)
    short = write(tmp_path / "short.csv", NEXTQA_HEADER + "4010069381,369\n")
    with pytest.raises(DataError, match=r"line 2: expected 13 columns, got 2"):
        convert("nextqa", short, video_map=vidor_map)
    gqa = write(tmp_path / "gqa.csv", NEXTQA_HEADER.replace("video,", "video_id,"))
    with pytest.raises(DataError, match=r"line 1, field 'video': missing column"):
        convert("nextqa", gqa, video_map=vidor_map)
    unknown = write(tmp_path / "unknown.csv", NEXTQA_HEADER + NEXTQA_ROW.replace("4010069381,", "1,", 1))
    with pytest.raises(DataError, match=r"field 'video': video '1' is not in"):
        convert("nextqa", unknown, video_map=vidor_map)


def test_nextgqa_keeps_grounding(tmp_path, vidor_map):
    header = NEXTQA_HEADER.replace("video,", "video_id,")
    rows = [
        "4010069381,369,640,480,how is the baby feeling,happy,4,TC,sad,happy to see,calm,happy,happy\n",
        "4010069381,369,640,480,why did he clap,cheer,1,CW,cheer,run,sit,jump,eat\n",
    ]
    csv = write(tmp_path / "test.csv", header + "".join(rows))
    gsub = write(
        tmp_path / "gsub_test.json",
        json.dumps(
            {"4010069381": {"duration": 34, "location": {"4": [[1.2, 5.8]], "1": [[0, 2], [3.5, 34]]}, "fps": 29.97}}
        ),  # fmt: skip
    )
    records, summary = convert("nextgqa", csv, grounding=gsub, video_map=vidor_map)
    assert records[0].answer == 4  # two identical correct options: the last, as NExT-QA's own index
    assert summary.notes["answer text equals several options: the last one is the answer"] == 1
    assert records[1].qid == "CW_4010069381_1" and records[1].video == "1106/4010069381"
    assert records[1].extra == {"grounding_windows": [[0, 2], [3.5, 34]], "fps": 29.97, "duration": 34}
    records, summary = convert("nextgqa", csv)
    assert records[0].video == "4010069381" and records[0].extra == {}
    assert summary.notes["no grounding (no gsub_*.json given)"] == 2
    other_split = write(tmp_path / "gsub_val.json", json.dumps({"1": {"duration": 3, "location": {}, "fps": 30}}))
    with pytest.raises(DataError, match=r"test\.csv, line 2, field 'video_id': video 4010069381 has no grounding"):
        convert("nextgqa", csv, grounding=other_split)
    no_qid = write(tmp_path / "gsub.json", json.dumps({"4010069381": {"duration": 3, "location": {}, "fps": 30}}))
    with pytest.raises(DataError, match=r"line 2, field 'qid': video 4010069381 qid 4 has no grounding"):
        convert("nextgqa", csv, grounding=no_qid)
    wrong = write(tmp_path / "wrong.csv", header + rows[1].replace(",cheer,1,", ",dance,1,"))
    with pytest.raises(DataError, match=r"line 2, field 'answer': answer text 'dance' matches none"):
        convert("nextgqa", wrong)


STAR = [
    {"question_id": "Interaction_T1_13", "question": "Which object was tidied up by the person?",
     "video_id": "6H78U", "start": 11.1, "end": 19.6, "answer": "The clothes.",
     "question_program": [], "situations": {},
     "choices": [{"choice_id": 0, "choice": "The closet/cabinet."}, {"choice_id": 1, "choice": "The blanket."},
                 {"choice_id": 2, "choice": "The clothes."}, {"choice_id": 3, "choice": "The table."}]},
    {"question_id": "Sequence_T1_1", "question": "What did the person do?", "video_id": "YSKX3",
     "start": 1, "end": 26, "answer": "Sat.",
     "choices": [{"choice_id": 0, "choice": "Ran."}, {"choice_id": 1, "choice": "Sat."},
                 {"choice_id": 2, "choice": "Ate."}, {"choice_id": 3, "choice": "Slept."}]},
]  # fmt: skip


def test_star(tmp_path):
    path = write(tmp_path / "STAR_val.json", json.dumps(STAR))
    records, _ = convert("star", path)
    assert [r.answer for r in records] == [2, 1]
    assert records[0].question_type == "Interaction" and records[0].clip == (11.1, 19.6)
    assert records[1].end == 26 and isinstance(records[1].end, int)  # kept as written
    test_split = [{k: v for k, v in STAR[0].items() if k != "answer"}]
    (unlabeled,), _ = convert("star", write(tmp_path / "STAR_test.json", json.dumps(test_split)))
    assert unlabeled.answer is None and not unlabeled.labeled


def test_star_answer_matching_no_choice_raises(tmp_path):
    """The original notebook silently reuses the previous record's answer index here."""
    broken = [STAR[0], {**STAR[1], "answer": "Walked."}]
    path = write(tmp_path / "STAR_val.json", json.dumps(broken))
    with pytest.raises(DataError, match=r"STAR_val\.json, record \[1\], field 'answer': answer text 'Walked\.'"):
        convert("star", path)


def test_how2qa_value_jsonl(tmp_path):
    rows = [
        {"vid_name": "25848", "ts": "36.58-58.52", "qid": 30351, "q": "What website?", "a0": "A.", "a1": "B.",
         "a2": "C.", "a3": "D.", "answer_idx": 2},
        {"vid_name": "e_367c", "ts": "0-10", "qid": 7, "q": "Why?", "a0": "A.", "a1": "B.", "a2": "C.",
         "a3": "D.", "answer_idx": 0},
    ]  # fmt: skip
    path = write(tmp_path / "how2qa_val_release.jsonl", "\n".join(json.dumps(r) for r in rows))
    mapping = write(tmp_path / "how2_vid_mapping.json", json.dumps({"25848": "Xdn_Z13OdJck_60_120"}))
    records, summary = convert("how2qa", path, video_map=mapping)
    assert [r.qid for r in records] == ["HOW2QA_0", "HOW2QA_1"]
    assert records[0].clip == (36.58, 58.52) and records[0].answer == 2
    assert records[0].extra == {"source_qid": 30351, "ts": "36.58-58.52", "youtube_id": "Xdn_Z13OdJck",
                                "clip_start": 60, "clip_end": 120}  # fmt: skip
    assert sum(summary.notes.values()) == 1  # e_367c is not in the map
    write_sevila(tmp_path / "out.json", records)
    assert json.loads((tmp_path / "out.json").read_text())[1]["start"] == "0"  # the original's strings


def test_how2qa_original_csv(tmp_path):
    text = (
        "NOuQuofjk44,[7.2:18.0],10,12,16,how many knife is there?,1\r\n"
        'DUEyiEnMVj4,[12.6:13.2],"his ""a""","his b","his c",What is the channel?,"his ""d"""\r\n'
        "BLtEnymAvdY,[188.7:195.01],blue,black,pink,What color?,blue\r\n"
    )
    path = write(tmp_path / "how2QA_test_public_release.csv", text)
    records, summary = convert("how2qa", path)
    assert summary.records_in == 3 and summary.records_out == 2
    assert summary.skipped == Counter({"correct answer is also listed as a wrong answer": 1})
    first, second = records
    assert first.video == "NOuQuofjk44" and first.clip == (7.2, 18.0) and first.extra == {"ts": "7.2-18.0"}
    assert first.answer == correct_position("HOW2QA_0") and first.options[first.answer] == "1"
    assert [o for i, o in enumerate(first.options) if i != first.answer] == ["10", "12", "16"]
    assert second.options[second.answer] == 'his "d"' and 'his "a"' in second.options
    with pytest.raises(ValueError, match="VALUE id map applies to the jsonl"):
        convert("how2qa", path, video_map=path)


def test_how2qa_csv_answer_positions_are_spread():
    positions = Counter(correct_position(f"HOW2QA_{i}") for i in range(400))
    assert set(positions) == {0, 1, 2, 3} and min(positions.values()) > 60


def test_tvqa_jsonl_and_nan_timestamps(tmp_path):
    base = {"a0": "A ", "a1": "B", "a2": "C", "a3": "D", "a4": "E", "q": "Who?", "show_name": "Castle",
            "vid_name": "castle_s02e24_seg02_clip_26"}  # fmt: skip
    rows = [{**base, "qid": 5, "ts": "0-10.01", "answer_idx": 4}, {**base, "qid": 6, "ts": "NaN-NaN"}]
    path = write(tmp_path / "tvqa_val.jsonl", "\n".join(json.dumps(r) for r in rows))
    (labeled, nan), summary = convert("tvqa", path)
    assert labeled.qid == "TVQA_0" and labeled.options[0] == "A " and labeled.answer == 4
    assert labeled.clip == (0.0, 10.01) and labeled.extra["source_qid"] == 5
    assert nan.clip is None and nan.answer is None
    assert summary.notes == Counter({"ts 'NaN-NaN': no clip window, the whole video is used": 1})
    bad = write(tmp_path / "bad.jsonl", json.dumps(rows[0]) + "\n" + json.dumps({**rows[0], "ts": "5-x"}))
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2, field 'ts': 'x' is not a number"):
        convert("tvqa", bad)
    bad.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**rows[0], "answer_idx": 5}))
    with pytest.raises(DataError, match=r"line 2, field 'answer_idx': 5 is outside 0\.\.4"):
        convert("tvqa", bad)
    bad.write_text(json.dumps(rows[0]) + '\n{"a0": "A",\n')
    with pytest.raises(DataError, match=r"bad\.jsonl, line 2: invalid JSON"):
        convert("tvqa", bad)


def test_tvqa_plus(tmp_path):
    row = {"a1": "B .", "qid": 133290, "answer_idx": "3", "ts": [0.0, 5.4], "q": "Why ?", "a0": "A .",
           "a3": "D .", "a2": "C .", "bbox": {"1": []}, "vid_name": "s01e02_seg02_clip_12", "a4": "E ."}  # fmt: skip
    (record,), _ = convert("tvqa", write(tmp_path / "tvqa_plus_val.json", json.dumps([row])))
    assert record.answer == 3 and record.options == ["A .", "B .", "C .", "D .", "E ."]
    assert record.clip == (0.0, 5.4) and record.extra == {"source_qid": 133290}
    bad = write(tmp_path / "bad.json", json.dumps([row, {**row, "answer_idx": "x"}]))
    with pytest.raises(DataError, match=r"record \[1\], field 'answer_idx'"):
        convert("tvqa", bad)


def test_vlep(tmp_path):
    rows = [
        {"example_id": 20142, "vid_name": "friends_s03e09_seg02_clip_07_ep", "ts": [9, 36.62],
         "events": ["Ross will stop.", "Ross will ask."], "answer": 0, "split": "dev"},
        {"example_id": 24534, "vid_name": "s10e05_seg02_clip_00_ep", "ts": [1.5, 3], "events": ["x", "y"],
         "split": "test"},
    ]  # fmt: skip
    records, _ = convert("vlep", write(tmp_path / "vlep_dev_release.jsonl", "\n".join(map(json.dumps, rows))))
    assert [r.qid for r in records] == ["VLEP_20142", "VLEP_24534"]
    assert records[0].question is None and records[0].options == rows[0]["events"] and records[0].answer == 0
    assert records[0].start == 9 and records[1].answer is None
    bad = write(tmp_path / "bad.jsonl", json.dumps({**rows[0], "events": ["only one"]}))
    with pytest.raises(DataError, match=r"line 1, field 'events'"):
        convert("vlep", bad)


def test_qvhighlights(tmp_path):
    rows = [
        {"qid": 2579, "query": "A girl cooked.", "duration": 150, "vid": "NUsG9BgSes0_210.0_360.0",
         "relevant_clip_ids": [41, 42], "saliency_scores": [[1, 1, 2], [3, 1, 4]], "relevant_windows": [[82, 86]]},
        {"qid": 3158, "query": "A boat.", "duration": 150, "vid": "_6hnl_BrFvs_360.0_510.0"},
    ]  # fmt: skip
    path = write(tmp_path / "highlight_val_release.jsonl", "\n".join(map(json.dumps, rows)))
    labeled, unlabeled = convert("qvhighlights", path).records
    assert labeled.qid == "QVHighlight_2579" and labeled.relevant_windows == [[82, 86]]
    assert labeled.saliency_scores == [[1, 1, 2], [3, 1, 4]] and labeled.relevant_clip_ids == [41, 42]
    assert unlabeled.relevant_windows is None and not unlabeled.labeled
    bad = write(tmp_path / "bad.jsonl", json.dumps({**rows[0], "relevant_windows": [[90, 80]]}))
    with pytest.raises(DataError, match=r"bad\.jsonl, line 1, field 'relevant_windows\[0\]'"):
        convert("qvhighlights", bad)
    bad.write_text(json.dumps({k: v for k, v in rows[1].items() if k != "query"}))
    with pytest.raises(DataError, match=r"line 1, field 'query': missing"):
        convert("qvhighlights", bad)


def test_unsupported_auxiliary_files_and_datasets(tmp_path):
    path = write(tmp_path / "vlep.jsonl", "")
    with pytest.raises(ValueError, match="vlep takes no video map"):
        convert("vlep", path, video_map=path)
    with pytest.raises(ValueError, match="unknown dataset"):
        convert("msrvtt", path)
    with pytest.raises(DataError, match="vlep.jsonl: no records to convert"):  # an empty file is refused
        convert("vlep", path)


# ---------------------------------------------------------------- the real release files


@needs_shared
def test_nextqa_val_equals_sevila_preprocessed_byte_for_byte(tmp_path):
    records, _ = convert(
        "nextqa", DATASETS_DIR / "nextqa/val.csv", video_map=DATASETS_DIR / "nextqa/map_vid_vidorID.json"
    )
    write_sevila(tmp_path / "val.json", records)
    reference = (DATASETS_DIR / "sevila_preprocessed/nextqa/val.json").read_bytes()
    assert json.loads((tmp_path / "val.json").read_bytes()) == json.loads(reference)
    assert (tmp_path / "val.json").read_bytes() == reference


@needs_shared
def test_star_test_equals_sevila_preprocessed_byte_for_byte(tmp_path):
    records, _ = convert("star", DATASETS_DIR / "star/STAR_test.json")
    write_sevila(tmp_path / "test.json", records)
    assert (tmp_path / "test.json").read_bytes() == (DATASETS_DIR / "sevila_preprocessed/star/test.json").read_bytes()


@needs_shared
@pytest.mark.parametrize(("name", "dataset"), [("nextqa/val.json", "nextqa"), ("star/val.json", "star")])
def test_sevila_preprocessed_files_round_trip(tmp_path, name, dataset):
    path = DATASETS_DIR / "sevila_preprocessed" / name
    records = read_sevila(path, dataset)
    write_sevila(tmp_path / "out.json", records)
    assert (tmp_path / "out.json").read_bytes() == path.read_bytes()
    if dataset == "star":  # STAR val: 7,098 questions of the four types (raw release not available)
        types = Counter(r.question_type for r in records)
        assert types == Counter(Interaction=2398, Sequence=3586, Prediction=624, Feasibility=490)
