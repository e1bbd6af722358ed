"""The two average-precision definitions of the QVHighlights evaluator (Moment-DETR's ``standalone_eval``).

Neither is the textbook AP, and neither equals scikit-learn's ``average_precision_score``; published
QVHighlights numbers use exactly these, so they are re-implemented here from their definitions:

* `detection_average_precision` (moment retrieval): predictions matched greedily to ground-truth windows
  per IoU threshold, then the PASCAL-VOC (2010+) area under the precision envelope;
* `highlight_average_precision` (highlight detection): the *mean* of the interpolated precision over the
  distinct recall levels of a clip ranking — not weighted by how much recall each level adds.

numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def window_ious(windows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of each ``[start, end]`` row of `windows` (``(m, 2)``) with each row of `others` (``(n, 2)``).

    IoU = intersection / (length + length - intersection), the form the official code uses for matching.
    A zero union (two empty windows at one instant) gives 0; the official code divides by zero there
    (``nan``), which cannot happen on QVHighlights because every ground-truth window has a positive length.
    """
    windows = np.asarray(windows, dtype=float).reshape(-1, 2)
    others = np.asarray(others, dtype=float).reshape(-1, 2)
    starts = np.maximum(windows[:, None, 0], others[None, :, 0])
    ends = np.minimum(windows[:, None, 1], others[None, :, 1])
    intersection = np.clip(ends - starts, 0, None)
    union = (windows[:, 1] - windows[:, 0])[:, None] + (others[:, 1] - others[:, 0])[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union != 0)


def detection_average_precision(
    gt_windows: np.ndarray, predictions: np.ndarray, iou_thresholds: Sequence[float]
) -> np.ndarray:
    """AP of one query's predicted windows at each IoU threshold (one value per threshold, in [0, 1]).

    `gt_windows` is ``(n, 2)`` ``[start, end]``; `predictions` is ``(m, 3)`` ``[start, end, score]``.
    The rules, per threshold:

    1. predictions are visited by decreasing score; equal scores keep their given order (stable sort);
    2. a prediction tries the ground-truth windows in the order ``np.argsort(iou)[::-1]`` (highest IoU
       first; among equal IoUs the later window first). Windows already matched at this threshold are
       skipped; the first unmatched one is taken if its IoU >= threshold (true positive, the window is
       now matched), otherwise the prediction is a false positive. So each ground-truth window matches at
       most one prediction, and several ground-truth windows can all be recalled;
    3. precision_k = TP_k / k and recall_k = TP_k / n after the k-th prediction; AP is the area under the
       precision envelope (each precision replaced by the maximum precision at any higher recall), with
       the curve starting at recall 0 and ending at recall 1 with precision 0 (VOC 2010+).

    No predictions gives AP 0 at every threshold.
    """
    gt_windows = np.asarray(gt_windows, dtype=float).reshape(-1, 2)
    predictions = np.asarray(predictions, dtype=float).reshape(-1, 3)
    if len(gt_windows) == 0:
        raise ValueError("average precision needs at least one ground-truth window")
    thresholds = np.asarray(iou_thresholds, dtype=float)
    num_thresholds, num_preds = len(thresholds), len(predictions)
    if num_preds == 0:
        return np.zeros(num_thresholds)
    order = np.argsort(-predictions[:, 2], kind="stable")
    matched = np.zeros((num_thresholds, len(gt_windows)), dtype=bool)
    true_positive = np.zeros((num_thresholds, num_preds))
    rows = np.arange(num_thresholds)
    all_ious = window_ious(predictions[order, :2], gt_windows)
    for rank, ious in enumerate(all_ious):
        candidates = np.argsort(ious)[::-1]
        # Per threshold (one row each): the first still-unmatched window in candidate order.
        unmatched = ~matched[:, candidates]
        first = candidates[np.argmax(unmatched, axis=1)]
        hit = unmatched.any(axis=1) & (ious[first] >= thresholds)
        true_positive[hit, rank] = 1
        matched[rows[hit], first[hit]] = True
    tp = np.cumsum(true_positive, axis=1)
    fp = np.cumsum(1 - true_positive, axis=1)
    return _voc_areas(tp / (tp + fp), tp / len(gt_windows))


def _voc_areas(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    """Per row, the area under the precision envelope of a curve padded with (recall 0, precision 0)
    in front and (recall 1, precision 0) at the end; only the points where recall changes count."""
    zeros = np.zeros((len(precision), 1))
    precision = np.hstack([zeros, precision, zeros])
    recall = np.hstack([zeros, recall, zeros + 1])
    envelope = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    changed = recall[:, 1:] != recall[:, :-1]
    gains = (recall[:, 1:] - recall[:, :-1]) * envelope[:, 1:]
    return np.array([np.sum(row[mask]) for row, mask in zip(gains, changed, strict=True)])


def highlight_average_precision(labels: np.ndarray, scores: np.ndarray) -> float:
    """AP of ranking a video's clips by `scores` against binary `labels` (1 = highlight), in [0, 1].

    The official definition (``get_ap`` over scikit-learn's ``precision_recall_curve``):

    * all labels 0 gives 0, all labels 1 gives 1, whatever the scores;
    * otherwise clips are ranked by decreasing score and cut at every distinct score (tied clips enter
      together); each cut has precision TP/(TP+FP) and recall TP/P;
    * each precision is replaced by the best precision at an equal or higher recall (interpolation);
    * AP = the plain mean of that interpolated precision over the distinct positive recall values reached
      (one value per recall level, taken at the cut that first reaches it), *not* weighted by the recall
      each level adds: a level reached by a tie of several positives counts once.

    Recall levels are compared in float32, as the official code does.
    """
    labels = np.asarray(labels, dtype=float)
    scores = np.asarray(scores, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1 or len(labels) == 0:
        raise ValueError(
            f"labels and scores must be equal-length non-empty vectors, got {labels.shape}, {scores.shape}"
        )
    if np.all(labels == labels[0]):
        return 1.0 if labels[0] == 1 else 0.0
    order = np.argsort(scores, kind="mergesort")[::-1]
    ranked_scores, ranked_labels = scores[order], labels[order]
    cuts = np.append(np.flatnonzero(np.diff(ranked_scores)), len(labels) - 1)
    tp = np.cumsum(ranked_labels)[cuts]
    precision = tp / (cuts + 1)
    recall = tp / tp[-1]
    # The curve as scikit-learn lists it: lowest cut (full recall) first, then (recall 0, precision 1).
    precision = np.maximum.accumulate(np.append(precision[::-1], 1.0))
    recall = np.append(recall[::-1], 0.0).astype(np.float32)
    return float(np.mean(precision[np.flatnonzero(np.diff(recall))]))
