"""NExT-GQA grounded-QA metrics, as the benchmark's own scripts (``doc-doc/NExT-GQA``) define them.

Every question comes with one or more ground-truth segments ``[start, end]`` (seconds, ``gsub_*.json``);
a system gives an answer and one predicted span. The definitions (``code/TempGQA/eval_ground.py`` for
grounding, ``eval_next.py`` for QA), reimplemented here:

* **IoP** (intersection over prediction) and **IoU** of the predicted span with a ground-truth segment:
  intersection = ``min(ends) - max(starts)``; IoU divides it by ``max(ends) - min(starts)``, IoP by the
  predicted span's length. A *zero-length* predicted span (one keyframe) has IoU 0 and IoP 1 if it lies
  inside the segment (ends included), else 0.
* **Several ground-truth segments**: the question's IoU is the maximum over its segments, and so is its
  IoP — each maximised separately (they may come from different segments). Both start at 0, so spans
  that miss every segment score 0 (not the negative ratio of a disjoint pair).
* **mIoU / mIoP**: means over questions; **IoU@θ / IoP@θ**: share of questions with IoU / IoP >= θ
  (θ = 0.3, 0.5).
* **Acc@QA**: share of questions answered correctly. **Acc@GQA**: share answered correctly *and* with
  IoP >= 0.5.
* All in percent (unrounded; the official scripts print one decimal).

Departures, deliberate: the evaluated set is every annotated question; a question without a prediction
counts as wrong with IoU = IoP = 0 (``num_missing``) — the official script silently drops questions that
have no span, which inflates partial runs, and crashes (KeyError) on those without a QA result; a failed
row (``error``) counts the same way (``num_failed``). Predicted spans normalised to [0, 1] (the official
``gs`` option for Gaussian-mask models) are not handled: spans are in seconds.

Correctness of an answer comes from where the prediction comes from: for the benchmark's own files it is
``answer == prediction`` in its QA result file (as the official script compares them); for our rows it is
``prediction`` against the annotation's gold index.

Spans from our rows: SeViLA grounds with its keyframes. The span is ``[min, max]`` of the row's
``keyframe_times`` — the conversion NExT-GQA's authors applied to SeViLA's outputs (first and last
keyframe time, ``code/SeViLA/tools``) to report its numbers — optionally widened by ``pad`` seconds on
each side and clipped to ``[0, duration]``.

Files of the benchmark's format, keyed by ``"{video_id}_{qid}"``: a grounding file
``{key: [start, end]}`` and a QA result file ``{key: {"prediction": p, "answer": a}}``. Our qids
(``{type}_{video_id}_{qid}``) map to those keys by dropping the type.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sevila.data.records import QARecord, Record, read_records
from sevila.data.sources import DataError, Row, json_object, load_json
from sevila.evaluate.metrics.qa import QAPrediction, read_predictions
from sevila.utils.io import atomic_write_text

THRESHOLDS = (0.3, 0.5)
GQA_IOP_THRESHOLD = 0.5


@dataclass(frozen=True)
class GroundedQuestion:
    """One annotated question: its key, ground-truth segments, video duration and gold answer.

    `answer` is None when only the grounding file is known (then correctness must come with the
    predictions: the benchmark's QA result file).
    """

    key: str  # "{video_id}_{qid}"
    windows: tuple[tuple[float, float], ...]
    duration: float
    answer: int | None = None


@dataclass(frozen=True)
class GroundedPrediction:
    """One question's prediction: whether the answer is right, and the predicted span (None if failed)."""

    key: str
    correct: bool
    span: tuple[float, float] | None
    failed: bool = False


def nextgqa_key(qid: str) -> str:
    """``"{video_id}_{qid}"`` of our qid ``"{type}_{video_id}_{qid}"`` (a key is returned unchanged)."""
    parts = qid.split("_")
    if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
        return f"{parts[1]}_{parts[2]}"
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        return qid
    raise ValueError(f"not a NExT-GQA qid: {qid!r} (expected TYPE_VIDEO_QID or VIDEO_QID)")


def question_key(qid: str) -> str:
    """The key our rows and records are matched by: `nextgqa_key` for NExT-GQA qids, the qid itself for other
    grounded datasets (``sevila synth``'s ``colour_v0001_0``), so whatever ``sevila eval`` scored with these
    metrics, ``sevila metrics nextgqa`` scores too."""
    try:
        return nextgqa_key(qid)
    except ValueError:
        return qid


def overlap(segment: Sequence[float], span: Sequence[float]) -> tuple[float, float]:
    """(IoU, IoP) of a predicted `span` with one ground-truth `segment`, by the official rules above.

    The ratios are negative for disjoint intervals, as the official code computes them; the per-question
    maximum (which starts at 0) turns them into 0. A reversed span (end before start) has IoP 0.
    """
    if span[0] == span[1]:
        return 0.0, 1.0 if segment[0] <= span[0] <= segment[1] else 0.0
    intersection = min(segment[1], span[1]) - max(segment[0], span[0])
    hull = max(segment[1], span[1]) - min(segment[0], span[0])
    length = span[1] - span[0]
    return intersection / hull, intersection / length if length > 0 else 0.0


def question_overlap(question: GroundedQuestion, span: Sequence[float]) -> tuple[float, float]:
    """The question's (IoU, IoP): each the maximum over its segments, floored at 0."""
    best_iou = best_iop = 0.0
    for segment in question.windows:
        iou, iop = overlap(segment, span)
        best_iou, best_iop = max(best_iou, iou), max(best_iop, iop)
    return best_iou, best_iop


def keyframe_span(times: Sequence[float], *, pad: float = 0.0, duration: float | None = None) -> tuple[float, float]:
    """``[min, max]`` of keyframe times, widened by `pad` seconds on each side.

    The widening stops at 0 and at `duration`, but the keyframe times themselves are never moved (a
    keyframe slightly past the annotated duration, which NExT-GQA rounds to whole seconds, stays).
    """
    if not times:
        raise ValueError("no keyframe times to make a span from")
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    first, last = min(times), max(times)
    start = min(first, max(0.0, first - pad))
    end = last + pad if duration is None else max(last, min(float(duration), last + pad))
    return start, end


# ----------------------------------------------------------------------------------------- annotations


def questions_from_records(records: Iterable[Record]) -> list[GroundedQuestion]:
    """Questions of NExT-GQA records converted with their grounding (``extra``: ``grounding_windows``,
    ``duration``)."""
    questions = []
    for record in records:
        if not isinstance(record, QARecord):
            raise ValueError(f"record {record.qid!r} is not a QA record")
        windows = record.extra.get("grounding_windows")
        if not windows or "duration" not in record.extra:
            raise ValueError(f"record {record.qid!r} has no grounding (convert the csv together with gsub_*.json)")
        questions.append(
            GroundedQuestion(
                key=question_key(record.qid),
                windows=tuple((float(s), float(e)) for s, e in windows),
                duration=float(record.extra["duration"]),
                answer=record.answer,
            )
        )
    return questions


def questions_from_grounding(path: str | os.PathLike[str]) -> list[GroundedQuestion]:
    """Questions of a grounding file alone (``gsub_*.json``): segments and durations, no answers."""
    questions = []
    for video, entry in json_object(path, load_json(path), "video id -> grounding").items():
        if not isinstance(entry, dict):
            raise DataError(path, f"video {video!r}", None, "expected an object with duration and location")
        row = Row(entry, path, f"video {video!r}")
        duration = float(row.number("duration"))
        location = row.raw("location")
        if not isinstance(location, dict):
            raise row.error("location", "expected an object qid -> [[start, end], ...]")
        for qid, segments in location.items():
            field = f"location.{qid}"
            if not isinstance(segments, list) or not segments:
                raise row.error(field, "expected a non-empty list of [start, end]")
            windows = tuple((float(s), float(e)) for s, e in (row.span(field, seg) for seg in segments))
            questions.append(GroundedQuestion(f"{video}_{qid}", windows, duration))
    return questions


def read_nextgqa_annotations(paths: Sequence[str | os.PathLike[str]]) -> list[GroundedQuestion]:
    """The annotated questions of a split, from one of:

    * our records (``.jsonl``, converted with the grounding file);
    * the grounding file alone (``.json``; no answers: only for the benchmark's own prediction files).

    The benchmark's csv is a release file, not records: its caller converts it with the grounding file
    (`sevila.data.convert`, as ``sevila metrics nextgqa --annotations val.csv gsub_val.json`` does) and
    passes the records to `questions_from_records`.
    """
    by_kind: dict[str, list[Path]] = {".jsonl": [], ".csv": [], ".json": []}
    for path in map(Path, paths):
        if path.suffix not in by_kind:
            raise ValueError(f"{path}: expected records (.jsonl), the csv (.csv) or a grounding file (.json)")
        by_kind[path.suffix].append(path)
    records, csvs, groundings = by_kind[".jsonl"], by_kind[".csv"], by_kind[".json"]
    if len(records) == 1 and not csvs and not groundings:
        return questions_from_records(read_records(records[0]))
    if len(groundings) == 1 and len(csvs) <= 1 and not records:
        if not csvs:
            return questions_from_grounding(groundings[0])
        raise ValueError(
            f"{csvs[0]}: the benchmark's csv must first be converted to records with its grounding "
            f"file (sevila prepare nextgqa {csvs[0]} {groundings[0]} -o records.jsonl)"
        )
    given = " ".join(map(str, paths)) or "nothing"
    raise ValueError(f"NExT-GQA annotations: give records.jsonl, or CSV + gsub JSON, or gsub JSON; got {given}")


# ----------------------------------------------------------------------------------------- predictions


def predictions_from_rows(
    rows: Iterable[QAPrediction], questions: Sequence[GroundedQuestion], *, pad: float = 0.0
) -> list[GroundedPrediction]:
    """Grounded predictions of our rows: correctness against the questions' gold answers, span from the
    keyframe times (`keyframe_span`)."""
    by_key = {q.key: q for q in questions}
    predictions = []
    for row in rows:
        key = question_key(row.qid)
        question = by_key.get(key)
        if question is None:
            raise ValueError(f"prediction {row.qid!r}: no such question in the annotations")
        if row.failed:
            predictions.append(GroundedPrediction(key, False, None, failed=True))
            continue
        if question.answer is None:
            raise ValueError("the annotations have no answers (grounding file only): give the csv or records")
        if not row.keyframe_times:
            raise ValueError(f"prediction {row.qid!r} has no keyframe_times to ground the answer")
        span = keyframe_span(row.keyframe_times, pad=pad, duration=question.duration)
        predictions.append(GroundedPrediction(key, row.prediction == question.answer, span))
    return predictions


def read_row_predictions(
    path: str | os.PathLike[str], questions: Sequence[GroundedQuestion], *, pad: float = 0.0
) -> list[GroundedPrediction]:
    """`predictions_from_rows` of a prediction file (JSONL rows with ``keyframe_times``)."""
    return predictions_from_rows(read_predictions(path), questions, pad=pad)


def read_official_predictions(
    ground_path: str | os.PathLike[str], qa_path: str | os.PathLike[str]
) -> list[GroundedPrediction]:
    """The benchmark's prediction files: spans ``{key: [start, end]}`` and QA results
    ``{key: {"prediction": p, "answer": a}}``. Both must hold the same keys."""
    spans = json_object(ground_path, load_json(ground_path), "key -> [start, end]")
    results = json_object(qa_path, load_json(qa_path), 'key -> {"prediction", "answer"}')
    only_spans, only_results = spans.keys() - results.keys(), results.keys() - spans.keys()
    if only_spans:
        problem = f"no QA result for this key of {ground_path} ({len(only_spans)} such keys)"
        raise DataError(qa_path, None, min(only_spans), problem)
    if only_results:
        problem = f"no span for this key of {qa_path} ({len(only_results)} such keys)"
        raise DataError(ground_path, None, min(only_results), problem)
    ground = Row(spans, ground_path, "")
    predictions = []
    for key, value in spans.items():
        start, end = ground.span(key, value)
        result = results[key]
        if not isinstance(result, dict) or not {"prediction", "answer"} <= result.keys():
            raise DataError(qa_path, None, key, 'expected {"prediction": ..., "answer": ...}')
        correct = result["prediction"] == result["answer"]
        predictions.append(GroundedPrediction(key, correct, (float(start), float(end))))
    return predictions


def write_official_predictions(
    ground_path: str | os.PathLike[str],
    qa_path: str | os.PathLike[str],
    rows: Iterable[QAPrediction],
    questions: Sequence[GroundedQuestion],
    *,
    pad: float = 0.0,
) -> None:
    """Our rows in the benchmark's two files, so that its own script can score them.

    Failed rows are left out of both files (the official script then skips those questions).
    """
    by_key = {q.key: q for q in questions}
    spans: dict[str, list[float]] = {}
    results: dict[str, dict[str, Any]] = {}
    rows = [row for row in rows if not row.failed]
    for prediction, row in zip(predictions_from_rows(rows, questions, pad=pad), rows, strict=True):
        assert prediction.span is not None
        spans[prediction.key] = list(prediction.span)
        results[prediction.key] = {"prediction": row.prediction, "answer": by_key[prediction.key].answer}
    atomic_write_text(ground_path, json.dumps(spans))
    atomic_write_text(qa_path, json.dumps(results))


# ----------------------------------------------------------------------------------------- metrics


def nextgqa_metrics(
    questions: Sequence[GroundedQuestion], predictions: Iterable[GroundedPrediction]
) -> dict[str, float | int]:
    """Acc@QA, Acc@GQA, mIoP, IoP@0.3, IoP@0.5, mIoU, IoU@0.3, IoU@0.5 (percent) and the counts
    ``num_questions``, ``num_missing``, ``num_failed`` (rules in the module docstring)."""
    known = {q.key for q in questions}
    if len(known) != len(questions):
        raise ValueError("annotations: a question occurs twice")
    if not questions:
        raise ValueError("no questions to evaluate")
    by_key: dict[str, GroundedPrediction] = {}
    for prediction in predictions:
        if prediction.key in by_key:
            raise ValueError(f"predictions: question {prediction.key!r} occurs twice")
        if prediction.key not in known:
            raise ValueError(f"prediction for {prediction.key!r}, which is not in the annotations")
        by_key[prediction.key] = prediction
    ious, iops, correct = [], [], []
    num_missing = num_failed = 0
    for question in questions:
        found = by_key.get(question.key)
        num_missing += found is None
        num_failed += found is not None and found.failed
        if found is None or found.span is None:
            iou = iop = 0.0
        else:
            iou, iop = question_overlap(question, found.span)
        ious.append(iou)
        iops.append(iop)
        correct.append(found is not None and found.correct)
    n = len(questions)

    def share(flags: Iterable[bool]) -> float:
        return 100.0 * sum(flags) / n

    metrics: dict[str, float | int] = {
        "Acc@QA": share(correct),
        "Acc@GQA": share(c and p >= GQA_IOP_THRESHOLD for c, p in zip(correct, iops, strict=True)),
        "mIoP": 100.0 * sum(iops) / n,
        "mIoU": 100.0 * sum(ious) / n,
    }
    for threshold in THRESHOLDS:
        metrics[f"IoP@{threshold}"] = share(p >= threshold for p in iops)
        metrics[f"IoU@{threshold}"] = share(u >= threshold for u in ious)
    metrics.update(num_questions=n, num_missing=num_missing, num_failed=num_failed)
    return metrics
