"""QVHighlights files: the Moment-DETR submission format (read and write) and the ground truth (read).

Submission (one JSON object per line; what Moment-DETR's ``standalone_eval`` and its leaderboard read)::

    {"qid": 2579, "query": "...", "vid": "NUsG9BgSes0_210.0_360.0",
     "pred_relevant_windows": [[start, end, score], ...],   # seconds; the FIRST window is the top-1
     "pred_saliency_scores": [score per 2-second clip, ...]}

Either prediction key may be absent (a moment-only or highlight-only system). The evaluator takes the
first listed window as the top-1 for R1 and only the first 10 windows for mAP, so writers should list
windows by decreasing score (ours do). Keys beyond these are ignored.

Ground truth: QVHighlights' release JSONL (``highlight_{val,test_with_gt}_release.jsonl``: ``qid``,
``duration``, ``relevant_windows``, ``relevant_clip_ids``, ``saliency_scores``) or our moment records
(``kind: "moment"``, qid ``QVHighlight_<n>``) — each line is recognised on its own.

Errors name the file, the line and the field. Inputs the official evaluator would crash on (no window,
a relevant clip id past the end of the video) are rejected here, with the reason.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sevila.data.records import MomentRecord, record_from_dict
from sevila.data.sources import Row, read_jsonl, unique_by_qid
from sevila.moments import (
    CLIP_LENGTH,
    DEFAULT_SPAN_THRESHOLD,
    DEFAULT_THRESHOLD,
    frame_scores_to_moments,
    frame_scores_to_saliency,
)
from sevila.utils.io import atomic_write_text

NUM_ANNOTATORS = 3  # saliency scores per relevant clip (the official evaluator assumes three)
QID_PREFIX = "QVHighlight_"  # our records' (and the original SeViLA's) qid prefix


@dataclass(frozen=True)
class MomentPrediction:
    """One query's predictions in the submission format.

    `windows` are ``(start, end, score)`` in seconds, in the order they are written (the first is the
    top-1); `saliency` has one score per 2-second clip. Either may be None (not predicted).
    """

    qid: int
    query: str
    vid: str
    windows: tuple[tuple[float, float, float], ...] | None = None
    saliency: tuple[float, ...] | None = None


@dataclass(frozen=True)
class MomentAnnotation:
    """One query's ground truth: windows in seconds, and per relevant clip the annotators' 0–4 scores."""

    qid: int
    duration: float
    windows: tuple[tuple[float, float], ...]
    clip_ids: tuple[int, ...] | None = None
    saliency_scores: tuple[tuple[int, ...], ...] | None = None

    @property
    def num_clips(self) -> int:
        """Clips on the evaluator's grid: ``int(duration / 2)`` (a trailing partial clip is not scored)."""
        return int(self.duration / CLIP_LENGTH)


def qvhighlights_qid(qid: int | str) -> int:
    """The integer QVHighlights qid of ``2579`` or of our record qid ``"QVHighlight_2579"``."""
    if isinstance(qid, int) and not isinstance(qid, bool):
        return qid
    if isinstance(qid, str) and qid.startswith(QID_PREFIX) and qid[len(QID_PREFIX) :].isdigit():
        return int(qid[len(QID_PREFIX) :])
    raise ValueError(f"not a QVHighlights qid: {qid!r} (expected an integer or {QID_PREFIX}<n>)")


def moment_prediction(
    qid: int | str,
    query: str,
    vid: str,
    frame_times: Sequence[float],
    frame_scores: Sequence[float],
    duration: float,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    span_threshold: int = DEFAULT_SPAN_THRESHOLD,
) -> MomentPrediction:
    """A submission row from one query's frame scores: the merged moments and the clip highlight scores
    (the rules: `sevila.moments`).

    `qid` may be QVHighlights' integer or our record qid (``QVHighlight_<n>``).
    """
    moments = frame_scores_to_moments(
        frame_times, frame_scores, duration, threshold=threshold, span_threshold=span_threshold
    )
    saliency = frame_scores_to_saliency(frame_times, frame_scores, duration)
    return MomentPrediction(
        qid=qvhighlights_qid(qid),
        query=query,
        vid=vid,
        windows=tuple((m.start, m.end, m.score) for m in moments),
        saliency=tuple(saliency),
    )


def prediction_to_dict(prediction: MomentPrediction) -> dict[str, Any]:
    """The submission row of a prediction (absent predictions are left out, as the format allows)."""
    data: dict[str, Any] = {"qid": prediction.qid, "query": prediction.query, "vid": prediction.vid}
    if prediction.windows is not None:
        data["pred_relevant_windows"] = [list(w) for w in prediction.windows]
    if prediction.saliency is not None:
        data["pred_saliency_scores"] = list(prediction.saliency)
    return data


def write_submission(path: str | os.PathLike[str], predictions: Iterable[MomentPrediction]) -> None:
    """Write a submission file (JSONL, each line ending in a newline), atomically."""
    atomic_write_text(path, "".join(json.dumps(prediction_to_dict(p)) + "\n" for p in predictions))


def _number(row: Row, field: str, value: Any) -> float:
    return float(row.check_number(field, value))


def prediction_from_row(row: Row) -> MomentPrediction:
    """Validate one submission row; errors name the row's file, line and field."""
    qid = row.int("qid")
    windows = None
    if row.has("pred_relevant_windows"):
        raw = row.list("pred_relevant_windows")
        if not raw:
            raise row.error("pred_relevant_windows", "is empty (the evaluator needs a top-1 window)")
        parsed = []
        for i, window in enumerate(raw):
            field = f"pred_relevant_windows[{i}]"
            if not isinstance(window, list) or len(window) != 3:
                raise row.error(field, f"expected [start, end, score], got {json.dumps(window)[:60]}")
            start, end, score = (_number(row, field, v) for v in window)
            if start > end:
                raise row.error(field, f"start {start} is after end {end}")
            parsed.append((start, end, score))
        windows = tuple(parsed)
    saliency = None
    if row.has("pred_saliency_scores"):
        raw = row.list("pred_saliency_scores")
        if not raw:
            raise row.error("pred_saliency_scores", "is empty (expected one score per 2-second clip)")
        saliency = tuple(_number(row, f"pred_saliency_scores[{i}]", v) for i, v in enumerate(raw))
    query = row.str("query", allow_empty=True) if row.has("query") else ""
    vid = row.str("vid", allow_empty=True) if row.has("vid") else ""
    return MomentPrediction(qid=qid, query=query, vid=vid, windows=windows, saliency=saliency)


def read_submission(path: str | os.PathLike[str]) -> list[MomentPrediction]:
    """The rows of a submission file; a qid given twice is an error naming both lines. Failed rows (an
    ``error`` and no prediction, as ``sevila eval`` records a query whose video could not be read) are left
    out: such a query has no prediction."""
    rows = (row for row in read_jsonl(path) if not (row.has("error") and row.data["error"] is not None))
    return list(unique_by_qid(rows, prediction_from_row))


def annotation_from_row(row: Row) -> MomentAnnotation:
    """Validate one ground-truth line: a QVHighlights release row, or one of our moment records."""
    if row.has("kind"):
        record = record_from_dict(row.data, row.source, row.position)
        if not isinstance(record, MomentRecord):
            raise row.error("kind", f"expected a moment record, got {record.kind!r}")
        try:
            qid = qvhighlights_qid(record.qid)
        except ValueError as err:
            raise row.error("qid", str(err)) from None
        data = {
            "qid": qid,
            "duration": record.duration,
            "relevant_windows": record.relevant_windows,
            "relevant_clip_ids": record.relevant_clip_ids,
            "saliency_scores": record.saliency_scores,
        }
        row = Row({k: v for k, v in data.items() if v is not None}, row.source, row.position)
    qid = row.int("qid")
    duration = _number(row, "duration", row.raw("duration"))
    if duration <= 0:
        raise row.error("duration", f"expected a positive number, got {duration}")
    raw_windows = row.list("relevant_windows")
    if not raw_windows:
        raise row.error("relevant_windows", "is empty (every query needs at least one window)")
    spans = (row.span(f"relevant_windows[{i}]", w) for i, w in enumerate(raw_windows))
    windows = tuple((float(start), float(end)) for start, end in spans)
    annotation = MomentAnnotation(qid, duration, windows)
    if row.has("relevant_clip_ids") or row.has("saliency_scores"):
        clip_ids, scores = _saliency(row, annotation.num_clips)
        annotation = dataclasses.replace(annotation, clip_ids=clip_ids, saliency_scores=scores)
    return annotation


def _saliency(row: Row, num_clips: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    clip_ids = row.list("relevant_clip_ids")
    scores = row.list("saliency_scores")
    if len(clip_ids) != len(scores):
        raise row.error("saliency_scores", f"{len(scores)} entries for {len(clip_ids)} relevant clip ids")
    for i, clip in enumerate(clip_ids):
        if isinstance(clip, bool) or not isinstance(clip, int) or not 0 <= clip < num_clips:
            raise row.error(f"relevant_clip_ids[{i}]", f"expected a clip index 0..{num_clips - 1}, got {clip!r}")
    for i, triple in enumerate(scores):
        if (
            not isinstance(triple, list)
            or len(triple) != NUM_ANNOTATORS
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in triple)
        ):
            raise row.error(f"saliency_scores[{i}]", f"expected {NUM_ANNOTATORS} integer scores, got {triple!r}")
    return tuple(clip_ids), tuple(tuple(t) for t in scores)


def read_qvhighlights_annotations(path: str | os.PathLike[str]) -> list[MomentAnnotation]:
    """The ground truth of a split; a qid given twice is an error naming both lines."""
    return list(unique_by_qid(read_jsonl(path), annotation_from_row))
