"""Multiple-choice QA accuracy: overall, per type, NExT-QA groups, STAR mean, failures, duplicates,
missing predictions and malformed input. Expected values are worked out in the comments."""

from __future__ import annotations

import json

import pytest

from sevila.data import QARecord, write_records
from sevila.data.sources import DataError
from sevila.evaluate.metrics import AnswerKeyEntry, QAPrediction, qa_metrics, read_answer_key, read_predictions
from tests.support.paths import shared_dir

NEXTQA_VAL = shared_dir() / "datasets" / "sevila_preprocessed" / "nextqa" / "val.json"


def row(qid: str, prediction: int | None, answer: int | None = None, **extra) -> dict:
    data = {"qid": qid, "prediction": prediction, **extra}
    if answer is not None:
        data["answer"] = answer
    return data


def test_nextqa_types_and_groups():
    rows = [
        row("CW_1_0", 0, 0),  # right
        row("CW_1_1", 1, 0),  # wrong
        row("CH_1_2", 2, 2),  # right
        row("TN_2_0", 0, 0),  # right
        row("TP_2_1", 3, 1),  # wrong: TP has no correct answer at all
        row("DL_3_0", 4, 4),  # right
    ]
    metrics = qa_metrics(rows)
    assert metrics["accuracy"] == pytest.approx(400 / 6)
    assert (metrics["num_questions"], metrics["num_correct"], metrics["num_failed"], metrics["num_missing"]) == (
        6,
        4,
        0,
        0,
    )
    assert metrics["per_type"] == pytest.approx({"CH": 100, "CW": 50, "DL": 100, "TN": 100, "TP": 0.0})
    assert metrics["per_type_count"] == {"CH": 1, "CW": 2, "DL": 1, "TN": 1, "TP": 1}
    # Question-weighted groups: Causal 2 of 3, Temporal 1 of 2, Descriptive 1 of 1.
    assert metrics["groups"] == pytest.approx({"Causal": 200 / 3, "Temporal": 50, "Descriptive": 100})
    assert "star_mean_type_accuracy" not in metrics


def test_star_mean_of_types_differs_from_question_weighted_accuracy():
    rows = [
        row("Interaction_T1_0", 0, 0),
        row("Interaction_T1_1", 1, 1),
        row("Interaction_T1_2", 2, 2),  # Interaction 3/3 = 100
        row("Sequence_T1_0", 0, 1),  # Sequence 0/1 = 0
        row("Prediction_T1_0", 3, 3),
        row("Prediction_T1_1", 3, 2),  # Prediction 1/2 = 50
        row("Feasibility_T1_0", 1, 1),  # Feasibility 1/1 = 100
    ]
    metrics = qa_metrics(rows)
    assert metrics["accuracy"] == pytest.approx(500 / 7)  # 5 of 7 questions
    assert metrics["star_mean_type_accuracy"] == pytest.approx(62.5)  # (100 + 0 + 50 + 100) / 4
    assert "groups" not in metrics
    # With a STAR type absent there is no mean of the four.
    assert "star_mean_type_accuracy" not in qa_metrics(rows[:-1])


def test_answer_key_counts_failed_and_missing_as_wrong():
    key = [
        AnswerKeyEntry("HOW2QA_0", 1, "HOW2QA"),
        AnswerKeyEntry("HOW2QA_1", 2, "HOW2QA"),
        AnswerKeyEntry("HOW2QA_2", 3, "HOW2QA"),
        AnswerKeyEntry("HOW2QA_3", 0, "HOW2QA"),
    ]
    rows = [
        row("HOW2QA_0", 1),  # right
        {"qid": "HOW2QA_1", "error": "video unreadable"},  # failed
        row("HOW2QA_2", 0),  # wrong
    ]  # HOW2QA_3: missing
    metrics = qa_metrics(rows, key)
    assert metrics["accuracy"] == 25.0
    assert (metrics["num_questions"], metrics["num_failed"], metrics["num_missing"]) == (4, 1, 1)
    assert metrics["per_type"] == {"HOW2QA": 25.0}


def test_answer_key_from_records_uses_their_type_and_answer():
    records = [
        QARecord("CW_1_0", "v/1", "nextqa", "why?", ["a.", "b."], 1, "CW"),
        QARecord("TVQA_0", "s01", "tvqa", "who?", ["a", "b"], 0),  # no type: the qid prefix
    ]
    # The key's answer wins over a row's own answer.
    metrics = qa_metrics([row("CW_1_0", 1, answer=0), row("TVQA_0", 0)], records)
    assert metrics["per_type"] == {"CW": 100.0, "TVQA": 100.0}
    unlabeled = QARecord("TVQA_1", "s01", "tvqa", "who?", ["a", "b"], None)
    with pytest.raises(ValueError, match="TVQA_1.*no answer"):
        qa_metrics([row("TVQA_1", 0)], [unlabeled])


def test_duplicates_unknown_and_unanswerable_rows_are_errors():
    with pytest.raises(ValueError, match="'CW_1_0' occurs 2 times"):
        qa_metrics([row("CW_1_0", 0, 0), row("CW_1_0", 0, 0)])
    with pytest.raises(ValueError, match="'CW_9_9'"):
        qa_metrics([row("CW_9_9", 0)], [AnswerKeyEntry("CW_1_0", 0, "CW")])
    with pytest.raises(ValueError, match="no 'answer'"):
        qa_metrics([row("CW_1_0", 0)])
    with pytest.raises(ValueError, match="no questions"):
        qa_metrics([])


def test_in_memory_rows_are_validated():
    with pytest.raises(DataError) as err:
        qa_metrics([row("CW_1_0", 0, 0), row("CW_1_1", "A", 0)])
    assert (err.value.position, err.value.field) == ("record [1]", "prediction")


def test_prediction_files(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [
        {"qid": "CW_1_0", "prediction": 2, "keyframe_times": [1.5, 3.0]},
        {"qid": "CW_1_1", "error": "boom"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines))
    assert read_predictions(path) == [
        QAPrediction("CW_1_0", 2, keyframe_times=(1.5, 3.0)),
        QAPrediction("CW_1_1", None, error="boom"),
    ]
    # The original's result file: a JSON array with the gold answer as "target".
    original = tmp_path / "val_epochbest.json"
    original.write_text(json.dumps([{"qid": "CW_1_0", "prediction": 2, "target": 2, "frame_idx": [1, 5]}]))
    assert qa_metrics(read_predictions(original))["accuracy"] == 100.0


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ('{"prediction": 1}', "qid"),
        ('{"qid": "CW_1_1"}', "prediction"),
        ('{"qid": "CW_1_1", "prediction": -1}', "prediction"),
        ('{"qid": "CW_1_1", "prediction": 1.0}', "prediction"),
        ('{"qid": "CW_1_1", "prediction": 1, "error": 3}', "error"),
        ('{"qid": "CW_1_1", "prediction": 1, "keyframe_times": [1, "x"]}', "keyframe_times[1]"),
        ('{"qid": "CW_1_0", "prediction": 1}', "qid"),  # repeats line 1
    ],
)
def test_malformed_prediction_file_names_line_and_field(tmp_path, line, field):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"qid": "CW_1_0", "prediction": 0}\n' + line + "\n")
    with pytest.raises(DataError) as err:
        read_predictions(path)
    assert (err.value.source, err.value.position, err.value.field) == (str(path), "line 2", field)


def test_answer_key_files(tmp_path):
    records = tmp_path / "val.jsonl"
    write_records(records, [QARecord("Sequence_T1_0", "V1", "star", "what?", ["a", "b", "c", "d"], 3, "Sequence")])
    assert read_answer_key(records) == [AnswerKeyEntry("Sequence_T1_0", 3, "Sequence", num_options=4)]
    original = tmp_path / "val.json"
    original.write_text(
        json.dumps([{"video": "1/1", "num_option": 2, "qid": "CH_1_6", "a0": "x", "a1": "y", "answer": 1}])
    )
    assert read_answer_key(original) == [AnswerKeyEntry("CH_1_6", 1, "CH", num_options=2)]
    original.write_text(json.dumps([{"qid": "CH_1_6", "answer": 1}, {"qid": "CH_1_6", "answer": 0}]))
    with pytest.raises(DataError) as err:
        read_answer_key(original)
    assert (err.value.position, err.value.field) == ("record [1]", "qid")


@pytest.mark.skipif(not NEXTQA_VAL.is_file(), reason=f"SeViLA-format NExT-QA val not found at {NEXTQA_VAL}")
def test_original_nextqa_val_annotations():
    key = read_answer_key(NEXTQA_VAL)
    assert len(key) == 4996
    assert {e.question_type for e in key} == {"CW", "CH", "TN", "TC", "TP", "DL", "DC", "DO"}
    # Always option 0: the accuracy is the share of questions whose answer is option 0.
    metrics = qa_metrics([{"qid": e.qid, "prediction": 0} for e in key], key)
    assert metrics["num_correct"] == sum(e.answer == 0 for e in key)
    assert metrics["accuracy"] == pytest.approx(100 * metrics["num_correct"] / 4996)
    assert set(metrics["groups"]) == {"Causal", "Temporal", "Descriptive"}
