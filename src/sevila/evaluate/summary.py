"""The metrics `sevila eval` reports for a split: QA accuracy (plus grounding when the records carry it), or
for QVHighlights moment queries the official moment-retrieval and highlight metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sevila.data.records import DATASET_TABLE, MomentRecord, Record, record_to_dict
from sevila.data.sources import Row
from sevila.evaluate.metrics import GroundedPrediction, GroundedQuestion, keyframe_span, nextgqa_metrics, qa_metrics
from sevila.evaluate.metrics.qa import prediction_from_dict
from sevila.evaluate.metrics.qvhighlights import evaluate_qvhighlights
from sevila.evaluate.metrics.qvhighlights_io import annotation_from_row, prediction_from_row, qvhighlights_qid


def split_metrics(rows: Sequence[dict[str, Any]], records: Sequence[Record]) -> dict[str, Any]:
    """The metrics `DATASET_TABLE` lists for the records' dataset: QA accuracy (overall, per type, the dataset's
    groups); where it lists "grounding" (NExT-GQA, synthetic) and every record carries its grounding windows, also
    the grounded-QA metrics of the keyframes' time span. An unlabeled split (test sets without answers) gets
    counts only."""
    if records and isinstance(records[0], MomentRecord):
        return moment_metrics(rows, records)
    if any(r.answer is None for r in records):
        failed = sum("error" in row for row in rows)
        return {
            "num_questions": len(records),
            "num_predicted": len(rows) - failed,
            "num_failed": failed,
            "note": "the split has unlabeled questions: no accuracy",
        }
    metrics = qa_metrics(rows, records)
    grounded = all("grounding" in DATASET_TABLE[r.dataset].metrics for r in records)
    if grounded and all(r.extra.get("grounding_windows") and "duration" in r.extra for r in records):
        questions = [
            GroundedQuestion(
                r.qid,
                tuple((float(s), float(e)) for s, e in r.extra["grounding_windows"]),
                float(r.extra["duration"]),
                r.answer,
            )
            for r in records
        ]
        duration = {r.qid: float(r.extra["duration"]) for r in records}
        answers = {r.qid: r.answer for r in records}
        predictions = []
        for i, row in enumerate(rows):
            parsed = prediction_from_dict(row, "<predictions>", f"row {i + 1}")
            if parsed.failed or not parsed.keyframe_times:
                predictions.append(GroundedPrediction(parsed.qid, False, None, failed=parsed.failed))
            else:
                span = keyframe_span(parsed.keyframe_times, duration=duration[parsed.qid])
                predictions.append(GroundedPrediction(parsed.qid, parsed.prediction == answers[parsed.qid], span))
        metrics["grounding"] = nextgqa_metrics(questions, predictions)
    return metrics


def moment_metrics(rows: Sequence[dict[str, Any]], records: Sequence[MomentRecord]) -> dict[str, Any]:
    """The official QVHighlights summary over the queries that were predicted (failed ones are counted),
    when the records are labeled QVHighlights queries; counts otherwise."""
    failed = sum("error" in row for row in rows)
    counts = {"num_queries": len(records), "num_predicted": len(rows) - failed, "num_failed": failed}
    labeled = all(r.relevant_windows for r in records)
    try:
        for r in records:
            qvhighlights_qid(r.qid)
    except ValueError:
        labeled = False  # not QVHighlights queries: the official metrics are keyed by its integer qids
    if not labeled:
        return {**counts, "note": "no QVHighlights labels: no moment metrics"}
    annotations = [
        annotation_from_row(Row(record_to_dict(r), "<annotations>", f"record {i + 1}")) for i, r in enumerate(records)
    ]
    predictions = [
        prediction_from_row(Row(row, "<predictions>", f"row {i + 1}"))
        for i, row in enumerate(rows)
        if "error" not in row
    ]
    return {**counts, **evaluate_qvhighlights(predictions, annotations, require_all=False)}
