"""The metrics `sevila eval` reports for a split: QA accuracy (plus grounding when the records carry it), or
for QVHighlights moment queries the official moment-retrieval and highlight metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sevila.data.records import DATASET_TABLE, MomentRecord, Record
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
    when every record has its relevant windows; counts otherwise. Queries of another benchmark (qids that
    are not QVHighlights', as `sevila synth` writes) are numbered in annotation order for the official
    code; without saliency labels only the moment-retrieval metrics are computed."""
    failed = sum("error" in row for row in rows)
    counts = {"num_queries": len(records), "num_predicted": len(rows) - failed, "num_failed": failed}
    if not records or not all(r.relevant_windows for r in records):
        return {**counts, "note": "no moment labels (relevant_windows): no moment metrics"}
    try:
        numbers = {str(qvhighlights_qid(r.qid)): qvhighlights_qid(r.qid) for r in records}
    except ValueError:  # not QVHighlights queries: the official code wants integer qids
        numbers = {r.qid: i for i, r in enumerate(records)}
    predicted = {str(row["qid"]) for row in rows if "error" not in row}
    with_saliency = all(r.relevant_clip_ids and r.saliency_scores for r in records if str(_key(r)) in predicted)
    annotations = []
    for i, r in enumerate(records):
        data: dict[str, Any] = {"qid": numbers[str(_key(r))], "duration": r.duration}
        data["relevant_windows"] = r.relevant_windows
        if r.relevant_clip_ids and r.saliency_scores:
            data.update(relevant_clip_ids=r.relevant_clip_ids, saliency_scores=r.saliency_scores)
        annotations.append(annotation_from_row(Row(data, "<annotations>", f"record {i + 1}")))
    predictions = []
    for i, row in enumerate(rows):
        if "error" in row:
            continue
        data = {**row, "qid": numbers[str(row["qid"])]}
        if not with_saliency:
            data.pop("pred_saliency_scores", None)
        predictions.append(prediction_from_row(Row(data, "<predictions>", f"row {i + 1}")))
    metrics = {**counts, **evaluate_qvhighlights(predictions, annotations, require_all=False)}
    if not with_saliency:
        metrics["note"] = "no saliency labels: moment retrieval metrics only"
    return metrics


def _key(record: MomentRecord) -> str | int:
    try:
        return qvhighlights_qid(record.qid)
    except ValueError:
        return record.qid
