"""NExT-GQA grounded-QA metrics: overlaps, spans from keyframes, prediction files, the metrics.

Hand-computed cases are worked out in the comments. The real-annotation cases compare with the output
of the benchmark's own scripts (``eval_ground.py`` prints one decimal, ``eval_next.py`` two), run on the
same predictions outside this repository.
"""

from __future__ import annotations

import csv
import json

import pytest

from sevila.data import QARecord, convert, write_records
from sevila.data.sources import DataError
from sevila.evaluate.metrics import (
    GroundedPrediction,
    GroundedQuestion,
    QAPrediction,
    keyframe_span,
    nextgqa_metrics,
    predictions_from_rows,
    questions_from_records,
    read_nextgqa_annotations,
    read_official_predictions,
    write_official_predictions,
)
from sevila.evaluate.metrics.nextgqa import nextgqa_key, overlap, question_overlap
from tests.support.paths import shared_dir

DATA = shared_dir() / "datasets" / "nextgqa"
needs_data = pytest.mark.skipif(
    not (DATA / "gsub_val.json").is_file(), reason=f"NExT-GQA annotations not found in {DATA}"
)


def test_overlap_of_one_segment():
    # Segment [10, 20], span [15, 25]: intersection 5, hull 15, span length 10.
    assert overlap((10, 20), (15, 25)) == pytest.approx((1 / 3, 0.5))
    # A span inside the segment: IoP 1.
    assert overlap((10, 20), (12, 14)) == pytest.approx((0.2, 1.0))
    # Disjoint: the official ratios are negative (the per-question maximum floors them at 0).
    assert overlap((10, 20), (30, 40)) == pytest.approx((-10 / 30, -1.0))
    assert question_overlap(GroundedQuestion("1_0", ((10, 20),), 40), (30, 40)) == (0.0, 0.0)


def test_zero_length_span_counts_as_inside_or_not():
    assert overlap((10, 20), (12, 12)) == (0.0, 1.0)
    assert overlap((10, 20), (20, 20)) == (0.0, 1.0)  # the ends are included
    assert overlap((10, 20), (25, 25)) == (0.0, 0.0)


def test_several_segments_maximise_iou_and_iop_separately():
    # Span [8, 13] against [0, 10]: intersection 2, hull 13, IoP 2/5; against [12, 13]: 1, hull 5, IoP 1/5.
    # IoU comes from the second segment (1/5 > 2/13), IoP from the first (2/5).
    question = GroundedQuestion("1_1", ((0, 10), (12, 13)), 20)
    assert question_overlap(question, (8, 13)) == pytest.approx((0.2, 0.4))


def test_keyframe_span():
    assert keyframe_span([3, 1, 2]) == (1, 3)
    assert keyframe_span([3, 1, 2], pad=1, duration=3.5) == (0, 3.5)  # widening stops at 0 and duration
    assert keyframe_span([4.0], pad=0.5, duration=3.5) == (3.5, 4.0)  # a keyframe past the duration stays
    assert keyframe_span([5.5]) == (5.5, 5.5)
    with pytest.raises(ValueError):
        keyframe_span([])


def test_keys():
    assert nextgqa_key("CW_4882821564_1") == "4882821564_1"
    assert nextgqa_key("4882821564_1") == "4882821564_1"
    with pytest.raises(ValueError):
        nextgqa_key("TVQA_1")


QUESTIONS = [
    GroundedQuestion("1_0", ((10, 20),), 40, answer=0),
    GroundedQuestion("1_1", ((0, 10), (12, 13)), 40, answer=1),
    GroundedQuestion("2_0", ((5, 6),), 30, answer=2),
    GroundedQuestion("2_1", ((0, 30),), 30, answer=3),
]
# Right answer, span [15, 25]: IoU 1/3, IoP 1/2.  Wrong answer, span [8, 13]: IoU 1/5, IoP 2/5.
# Right answer, one keyframe at 5.5 inside [5, 6]: IoU 0, IoP 1.  Question 2_1 has no prediction.
PREDICTIONS = [
    GroundedPrediction("1_0", True, (15, 25)),
    GroundedPrediction("1_1", False, (8, 13)),
    GroundedPrediction("2_0", True, (5.5, 5.5)),
]
EXPECTED = {
    "Acc@QA": 50.0,  # 2 of 4
    "Acc@GQA": 50.0,  # right and IoP >= 0.5: 1_0 (0.5) and 2_0 (1)
    "mIoP": 47.5,  # (0.5 + 0.4 + 1 + 0) / 4
    "IoP@0.3": 75.0,
    "IoP@0.5": 50.0,
    "mIoU": 40 / 3,  # (1/3 + 1/5 + 0 + 0) / 4
    "IoU@0.3": 25.0,
    "IoU@0.5": 0.0,
    "num_questions": 4,
    "num_missing": 1,
    "num_failed": 0,
}


def test_metrics_by_hand():
    assert nextgqa_metrics(QUESTIONS, PREDICTIONS) == pytest.approx(EXPECTED)


def test_rows_give_the_same_metrics():
    rows = [
        QAPrediction("CW_1_0", 0, keyframe_times=(15, 25, 20)),
        QAPrediction("CH_1_1", 2, keyframe_times=(8, 13)),
        QAPrediction("TN_2_0", 2, keyframe_times=(5.5,)),
    ]
    assert nextgqa_metrics(QUESTIONS, predictions_from_rows(rows, QUESTIONS)) == pytest.approx(EXPECTED)
    # A failed row counts as wrong with no span, and is counted.
    failed = rows[:2] + [QAPrediction("TN_2_0", None, error="video unreadable")]
    metrics = nextgqa_metrics(QUESTIONS, predictions_from_rows(failed, QUESTIONS))
    assert (metrics["Acc@QA"], metrics["Acc@GQA"], metrics["num_failed"]) == (25.0, 25.0, 1)


def test_official_files_round_trip(tmp_path):
    rows = [
        QAPrediction("CW_1_0", 0, keyframe_times=(15, 25)),
        QAPrediction("CH_1_1", 2, keyframe_times=(8, 13)),
        QAPrediction("TN_2_0", 2, keyframe_times=(5.5,)),
        QAPrediction("TC_2_1", None, error="failed"),  # left out of the files
    ]
    ground, results = tmp_path / "val_ground.json", tmp_path / "val-res.json"
    write_official_predictions(ground, results, rows, QUESTIONS)
    assert json.loads(ground.read_text()) == {"1_0": [15, 25], "1_1": [8, 13], "2_0": [5.5, 5.5]}
    assert json.loads(results.read_text())["1_1"] == {"prediction": 2, "answer": 1}
    predictions = read_official_predictions(ground, results)
    assert nextgqa_metrics(QUESTIONS, predictions) == pytest.approx(EXPECTED)


def test_duplicate_and_unknown_predictions():
    with pytest.raises(ValueError, match="'1_0' occurs twice"):
        nextgqa_metrics(QUESTIONS, PREDICTIONS + PREDICTIONS[:1])
    with pytest.raises(ValueError, match="'9_9'"):
        nextgqa_metrics(QUESTIONS, [GroundedPrediction("9_9", True, (0, 1))])
    with pytest.raises(ValueError, match="no keyframe_times"):
        predictions_from_rows([QAPrediction("CW_1_0", 0)], QUESTIONS)


def test_malformed_official_files(tmp_path):
    ground, results = tmp_path / "g.json", tmp_path / "r.json"
    ground.write_text(json.dumps({"1_0": [15, 25], "1_1": [9, 8]}))
    results.write_text(json.dumps({"1_0": {"prediction": 0, "answer": 0}, "1_1": {"prediction": 1, "answer": 1}}))
    with pytest.raises(DataError) as err:
        read_official_predictions(ground, results)
    assert (err.value.source, err.value.field) == (str(ground), "1_1")
    results.write_text(json.dumps({"1_0": {"prediction": 0, "answer": 0}}))
    with pytest.raises(DataError) as err:
        read_official_predictions(ground, results)
    assert (err.value.source, err.value.field) == (str(results), "1_1")


def test_annotations_from_records(tmp_path):
    record = QARecord(
        qid="CW_1_0",
        video="1",
        dataset="nextgqa",
        question="why?",
        options=["a.", "b.", "c.", "d.", "e."],
        answer=0,
        question_type="CW",
        extra={"grounding_windows": [[10, 20]], "fps": 30, "duration": 40},
    )
    path = tmp_path / "val.jsonl"
    write_records(path, [record])
    assert read_nextgqa_annotations([path]) == [GroundedQuestion("1_0", ((10.0, 20.0),), 40.0, 0)]
    write_records(path, [QARecord(**{**record.__dict__, "extra": {}})])
    with pytest.raises(ValueError, match="no grounding"):
        read_nextgqa_annotations([path])
    with pytest.raises(ValueError, match="give records.jsonl"):
        read_nextgqa_annotations([path, path])
    # The benchmark's csv is a release file: converting it is the caller's job (the data converters).
    with pytest.raises(ValueError, match=r"val.csv: the benchmark's csv must first be converted to records"):
        read_nextgqa_annotations([tmp_path / "val.csv", tmp_path / "gsub_val.json"])


# ------------------------------------------------------------------------------ the real val split


@needs_data
def test_val_whole_video_spans_in_the_official_format(tmp_path):
    gsub = json.loads((DATA / "gsub_val.json").read_text())
    ground = {f"{v}_{q}": [0, e["duration"]] for v, e in gsub.items() for q in e["location"]}
    (tmp_path / "g.json").write_text(json.dumps(ground))
    (tmp_path / "r.json").write_text(json.dumps({k: {"prediction": 1, "answer": 1} for k in ground}))
    questions = read_nextgqa_annotations([DATA / "gsub_val.json"])
    metrics = nextgqa_metrics(questions, read_official_predictions(tmp_path / "g.json", tmp_path / "r.json"))
    assert metrics["num_questions"] == 3358 and metrics["Acc@QA"] == 100.0
    # The official eval_ground.py on the same files prints 10.6 21.3 21.2 10.6 21.3 21.2 10.6.
    assert metrics["IoP@0.3"] == metrics["IoU@0.3"] == pytest.approx(100 * 713 / 3358)  # 21.2
    assert metrics["IoP@0.5"] == metrics["IoU@0.5"] == metrics["Acc@GQA"] == pytest.approx(100 * 357 / 3358)
    assert (round(metrics["mIoP"], 1), round(metrics["mIoU"], 1)) == (21.3, 21.3)


@needs_data
def test_val_rows_from_the_csv():
    questions = questions_from_records(convert("nextgqa", DATA / "val.csv", grounding=DATA / "gsub_val.json").records)
    durations = {q.key: q.duration for q in questions}
    with open(DATA / "val.csv", newline="") as f:
        rows = [
            QAPrediction(
                f"{r['type']}_{r['video_id']}_{r['qid']}",
                0,
                keyframe_times=tuple(
                    durations[f"{r['video_id']}_{r['qid']}"] * x for x in (0.25, 5 / 12, 7 / 12, 0.75)
                ),
            )
            for r in csv.DictReader(f)
        ]
    metrics = nextgqa_metrics(questions, predictions_from_rows(rows, questions))
    # Option 0 for every question, keyframes spread over the middle half of each video. The official
    # scripts on the same predictions (written by write_official_predictions) print
    # Acc 20.10 (eval_next.py) and 3.1 23.7 28.4 17.1 19.4 25.9 13.6 (eval_ground.py).
    assert metrics["Acc@QA"] == pytest.approx(100 * 675 / 3358)
    rounded = [round(metrics[k], 1) for k in ("Acc@GQA", "mIoP", "IoP@0.3", "IoP@0.5", "mIoU", "IoU@0.3", "IoU@0.5")]
    assert rounded == [3.1, 23.7, 28.4, 17.1, 19.4, 25.9, 13.6]
