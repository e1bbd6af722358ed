"""Evaluation metrics: multiple-choice QA accuracy, QVHighlights moment retrieval and highlight detection,
NExT-GQA grounded QA.

One module per responsibility, numpy only (no torch), so scoring a prediction file needs no model. They read
records and prediction files (`sevila.data.records`, `sevila.data.sources`), never a dataset's release files
(converting those is `sevila.data.converters`'s job, done by the caller):

* `qa` — accuracy overall, per question type, NExT-QA groups, STAR mean of types;
* `qvhighlights_io` — the Moment-DETR submission format (rows made from frame scores by the rules of
  `sevila.moments`) and QVHighlights ground truth;
* `average_precision` — the two AP definitions of the QVHighlights evaluator;
* `qvhighlights` — the official QVHighlights summary metrics;
* `nextgqa` — NExT-GQA's Acc@QA, Acc@GQA, IoP and IoU metrics and its prediction files.
"""

from __future__ import annotations

from sevila.evaluate.metrics.nextgqa import (
    GroundedPrediction,
    GroundedQuestion,
    keyframe_span,
    nextgqa_metrics,
    predictions_from_rows,
    questions_from_records,
    read_nextgqa_annotations,
    read_official_predictions,
    write_official_predictions,
)
from sevila.evaluate.metrics.qa import AnswerKeyEntry, QAPrediction, qa_metrics, read_answer_key, read_predictions
from sevila.evaluate.metrics.qvhighlights import SUMMARY_KEYS, evaluate_qvhighlights
from sevila.evaluate.metrics.qvhighlights_io import (
    MomentAnnotation,
    MomentPrediction,
    moment_prediction,
    read_qvhighlights_annotations,
    read_submission,
    write_submission,
)

__all__ = [
    "SUMMARY_KEYS",
    "AnswerKeyEntry",
    "GroundedPrediction",
    "GroundedQuestion",
    "MomentAnnotation",
    "MomentPrediction",
    "QAPrediction",
    "evaluate_qvhighlights",
    "keyframe_span",
    "moment_prediction",
    "nextgqa_metrics",
    "predictions_from_rows",
    "qa_metrics",
    "questions_from_records",
    "read_answer_key",
    "read_nextgqa_annotations",
    "read_official_predictions",
    "read_predictions",
    "read_qvhighlights_annotations",
    "read_submission",
    "write_official_predictions",
    "write_submission",
]
