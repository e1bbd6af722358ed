"""QVHighlights moment retrieval and highlight detection metrics, as the official evaluator defines them.

The definitions are those of ``standalone_eval/eval.py`` in ``jayleicn/moment_detr`` (the script behind
every published QVHighlights number, SeViLA's included); this is an independent implementation that gives
the same numbers (checked against that script on the val split). All results are percentages rounded to
2 decimals as the official script rounds (``round(100 * x, 2)``, applied after averaging).

Moment retrieval (MR), per query with predicted windows ``[start, end, score]``:

* **R1@θ**: the *first listed* window (not the best-scoring one) is the top-1; it is compared with the
  ground-truth window that overlaps it most (the first among equals), and is a hit when that IoU >= θ.
  This IoU divides by the hull ``max(end) - min(start)``, which equals the union whenever the windows
  overlap. Averaged over queries.
* **mAP**: per query, AP (see `average_precision.detection_average_precision`) of the first 10 listed
  windows against *all* of the query's ground-truth windows, at IoU thresholds 0.5, 0.55, …, 0.95;
  averaged over queries per threshold; ``MR-full-mAP`` is the mean over the 10 thresholds,
  ``mAP@0.5``/``mAP@0.75`` the single-threshold values.
* **short / middle / long mAP**: ground-truth windows are kept when their length ``l`` is in
  (0, 10], (10, 30] or (30, 150] seconds; a query keeps only those windows, and queries left with none
  are dropped from that split (their predictions too). "full" keeps every window, whatever its length.

Highlight detection (HL), on the ``int(duration / 2)`` 2-second clips of each video, for each level
``Fair`` (score >= 2), ``Good`` (>= 3) and ``VeryGood`` (>= 4) — "min" in ``HL-min-Fair`` is the minimum
score for a clip to count as a highlight, applied to each of the 3 annotators separately (clips outside
``relevant_clip_ids`` score 0):

* **Hit1**: the clip with the highest predicted score (the first among equals) is a hit when *any*
  annotator scored it at or above the level; a top clip past the video's clips is a miss. Averaged over
  queries.
* **mAP**: per query and per annotator, AP (see `average_precision.highlight_average_precision`) of the
  predicted scores against that annotator's binary labels; the predicted list is cut to, or padded with
  zeros to, the number of clips; averaged over all (query, annotator) pairs.

As the official script (with its default ``match_number=True``), predictions and ground truth must cover
the same queries; ``require_all=False`` evaluates the queries present in both instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sevila.evaluate.metrics.average_precision import (
    detection_average_precision,
    highlight_average_precision,
    window_ious,
)
from sevila.evaluate.metrics.qvhighlights_io import MomentAnnotation, MomentPrediction

IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55, ..., 0.95
R1_THRESHOLDS = (0.5, 0.7)
MAX_PRED_WINDOWS = 10
# Ground-truth window length ranges (lo, hi], seconds; "full" keeps every window.
LENGTH_RANGES = {"short": (0, 10), "middle": (10, 30), "long": (30, 150)}
SALIENCY_LEVELS = {"Fair": 2, "Good": 3, "VeryGood": 4}

SUMMARY_KEYS = (
    "MR-full-R1@0.5",
    "MR-full-R1@0.7",
    "MR-full-mAP",
    "MR-full-mAP@0.5",
    "MR-full-mAP@0.75",
    "MR-short-mAP",
    "MR-middle-mAP",
    "MR-long-mAP",
    "HL-min-Fair-mAP",
    "HL-min-Fair-Hit1",
    "HL-min-Good-mAP",
    "HL-min-Good-Hit1",
    "HL-min-VeryGood-mAP",
    "HL-min-VeryGood-Hit1",
)

Pair = tuple[MomentPrediction, MomentAnnotation]


def _percent(value: float | np.floating[Any]) -> float:
    """A fraction as the official summary shows it: percent, rounded to 2 decimals after averaging."""
    return round(100 * float(value), 2)


def hull_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU as the official R1 computes it: intersection / (max end - min start); 0 when that is 0."""
    intersection = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    hull = max(a[1], b[1]) - min(a[0], b[0])
    return intersection / hull if hull != 0 else 0.0


def _windows(prediction: MomentPrediction) -> tuple[tuple[float, float, float], ...]:
    if prediction.windows is None:
        raise ValueError(f"qid {prediction.qid}: no pred_relevant_windows")
    return prediction.windows


def recall_at_one(pairs: Sequence[Pair], threshold: float) -> float:
    """R1@`threshold` in percent (rule in the module docstring)."""
    hits = []
    for prediction, annotation in pairs:
        top = _windows(prediction)[0][:2]
        gts = np.asarray(annotation.windows, dtype=float)
        best = gts[int(np.argmax(window_ious(np.asarray([top]), gts)[0]))]
        hits.append(hull_iou(top, best) >= threshold)
    return _percent(np.mean(hits))


def mean_average_precision(pairs: Sequence[Pair]) -> np.ndarray:
    """Mean over queries of the per-query AP at each of `IOU_THRESHOLDS` (fractions, unrounded)."""
    per_query = [
        detection_average_precision(
            np.asarray(annotation.windows, dtype=float),
            np.asarray(_windows(prediction)[:MAX_PRED_WINDOWS], dtype=float),
            IOU_THRESHOLDS,
        )
        for prediction, annotation in pairs
    ]
    return np.array(per_query).mean(0)


def _in_length_range(pairs: Sequence[Pair], low: float, high: float) -> list[Pair]:
    kept = []
    for prediction, annotation in pairs:
        windows = tuple(w for w in annotation.windows if low < w[1] - w[0] <= high)
        if windows:
            kept.append((prediction, MomentAnnotation(annotation.qid, annotation.duration, windows)))
    return kept


def moment_retrieval_metrics(pairs: Sequence[Pair]) -> dict[str, float | None]:
    """The ``MR-*`` summary metrics of (prediction, ground truth) pairs that all have windows."""
    full = mean_average_precision(pairs)
    metrics: dict[str, float | None] = {
        "MR-full-R1@0.5": recall_at_one(pairs, 0.5),
        "MR-full-R1@0.7": recall_at_one(pairs, 0.7),
        "MR-full-mAP": _percent(np.mean(full)),
        "MR-full-mAP@0.5": _percent(full[IOU_THRESHOLDS.index(0.5)]),
        "MR-full-mAP@0.75": _percent(full[IOU_THRESHOLDS.index(0.75)]),
    }
    for name, (low, high) in LENGTH_RANGES.items():
        subset = _in_length_range(pairs, low, high)
        # A split no query falls into has no mAP (None); the official script crashes there.
        metrics[f"MR-{name}-mAP"] = _percent(np.mean(mean_average_precision(subset))) if subset else None
    return metrics


def _clip_labels(annotation: MomentAnnotation) -> np.ndarray:
    """``(num_clips, 3)`` annotator scores on the whole video, 0 outside the relevant clips."""
    assert annotation.clip_ids is not None and annotation.saliency_scores is not None
    scores = np.zeros((annotation.num_clips, 3))
    scores[list(annotation.clip_ids)] = annotation.saliency_scores
    return scores


def highlight_metrics(pairs: Sequence[Pair]) -> dict[str, float]:
    """The ``HL-min-*`` summary metrics of (prediction, ground truth) pairs that all have saliency."""
    metrics = {}
    labels_by_query = [_clip_labels(annotation) for _, annotation in pairs]
    for name, level in SALIENCY_LEVELS.items():
        hits = np.zeros(len(pairs))
        aps = np.zeros((len(pairs), 3))
        for q, ((prediction, _), labels) in enumerate(zip(pairs, labels_by_query, strict=True)):
            assert prediction.saliency is not None
            binary = (labels >= level).astype(float)
            predicted = np.asarray(prediction.saliency, dtype=float)
            top = int(np.argmax(predicted))
            if top < len(binary):
                hits[q] = binary[top].max()
            fitted = np.zeros(len(binary))
            fitted[: min(len(predicted), len(binary))] = predicted[: len(binary)]
            for annotator in range(3):
                aps[q, annotator] = highlight_average_precision(binary[:, annotator], fitted)
        metrics[f"HL-min-{name}-mAP"] = _percent(np.mean(aps))
        metrics[f"HL-min-{name}-Hit1"] = _percent(np.mean(hits))
    return metrics


def _pair_up(
    predictions: Sequence[MomentPrediction], annotations: Sequence[MomentAnnotation], require_all: bool
) -> list[Pair]:
    by_qid: dict[int, MomentPrediction] = {}
    for prediction in predictions:
        if prediction.qid in by_qid:
            raise ValueError(f"predictions: qid {prediction.qid} occurs twice")
        by_qid[prediction.qid] = prediction
    gt_qids: set[int] = set()
    for annotation in annotations:
        if annotation.qid in gt_qids:
            raise ValueError(f"ground truth: qid {annotation.qid} occurs twice")
        gt_qids.add(annotation.qid)
    if require_all:
        missing, extra = sorted(gt_qids - by_qid.keys()), sorted(by_qid.keys() - gt_qids)
        if missing or extra:
            raise ValueError(
                "predictions and ground truth must cover the same queries: "
                f"{len(missing)} without prediction {missing[:5]}, {len(extra)} without ground truth {extra[:5]} "
                "(sevila metrics --partial scores the queries present in both)"
            )
    pairs = [(by_qid[a.qid], a) for a in annotations if a.qid in by_qid]
    if not pairs:
        raise ValueError("no query has both a prediction and ground truth")
    return pairs


def evaluate_qvhighlights(
    predictions: Sequence[MomentPrediction],
    annotations: Sequence[MomentAnnotation],
    *,
    require_all: bool = True,
) -> dict[str, float | None]:
    """The official summary (`SUMMARY_KEYS`) in percent: MR metrics when the predictions have windows,
    HL metrics when they have saliency scores (all predictions must agree on which they have) and the ground
    truth has them (for all of the queries, or for none: then there are no HL metrics).

    A length split that no query falls into (possible on a subset of queries) is reported as None.
    """
    pairs = _pair_up(predictions, annotations, require_all)
    metrics: dict[str, float | None] = {}
    with_windows = [p.windows is not None for p, _ in pairs]
    with_saliency = [p.saliency is not None for p, _ in pairs]
    if not any(with_windows) and not any(with_saliency):
        raise ValueError("predictions have neither pred_relevant_windows nor pred_saliency_scores")
    for present, what in ((with_windows, "pred_relevant_windows"), (with_saliency, "pred_saliency_scores")):
        if any(present) and not all(present):
            qid = next(p.qid for (p, _), has in zip(pairs, present, strict=True) if not has)
            raise ValueError(f"predictions: qid {qid} has no {what} although others have")
    if all(with_windows):
        metrics.update(moment_retrieval_metrics(pairs))
    labeled = [a.saliency_scores is not None for _, a in pairs]
    if all(with_saliency) and any(labeled):  # ground truth without any saliency (moments only): MR metrics only
        for _, annotation in pairs:
            if annotation.saliency_scores is None:
                raise ValueError(f"ground truth: qid {annotation.qid} has no saliency_scores for highlight metrics")
        metrics.update(highlight_metrics(pairs))
    return {key: metrics[key] for key in SUMMARY_KEYS if key in metrics}
