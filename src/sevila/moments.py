"""From the localizer's per-frame scores to moments (time spans) and per-clip highlight scores.

Used by inference (`VideoQA.localize`) and by evaluation (QVHighlights submission rows), so it lives below
both; numpy only, no torch. SeViLA's localizer scores frames, not spans. The paper reports QVHighlights
moment retrieval from "frame predictions merged into spans (span threshold 6)" but never states the merging
rule, and the released code has none: its ``moment_retrieval`` task scores only frame-level yes/no accuracy
(docs/fidelity.md, "Moments from frame scores"). This module defines one, exactly:

**Moments** (`frame_scores_to_moments`), for frames at times ``t_0 < t_1 < ... < t_{T-1}`` with scores
``s_i`` in a video of length ``D``:

1. *Positive frames*: ``s_i >= threshold``. Scores are whatever the caller passes (a probability of
   "yes" with the default threshold 0.5; pass a threshold on the scale of the scores you use).
2. *Merging*: positive frames are grouped in time order; two successive positive frames ``i < j`` join
   the same span when at most `span_threshold` non-positive frames lie between them (``j - i - 1 <=
   span_threshold``; 0 merges only adjacent frames). The default 6 is the paper's "span threshold".
3. *Boundaries*: frame ``i`` stands for the cell from the midpoint with its predecessor to the midpoint
   with its successor; the first cell starts at 0 and the last ends at ``D``. A span over frames
   ``i..j`` covers ``[cell_start(i), cell_end(j)]``, within ``[0, D]``. With one frame sampled at the
   middle of every 2-second clip (75 frames over a 150-s QVHighlights video) the cells are exactly the
   clips, so spans fall on the annotation grid.
4. *Score*: the mean score of all frames ``i..j`` of the span, bridged (non-positive) frames included —
   a span stitched over weak frames ranks below a solid run of the same peak height.
5. *Order*: by decreasing score, equal scores by start time. Every span is returned (the evaluator
   reads at most 10 for mAP, and the first for R1@IoU).
6. *Fallback*: when no frame passes the threshold, the cell of the best-scoring frame (the earliest
   among equals) is the only moment, with that frame's score, so that a top-1 window always exists.

**Highlight scores** (`frame_scores_to_saliency`): one score per 2-second clip ``k`` (covering
``[2k, 2k + 2)``, ``int(D / 2)`` clips, the evaluator's grid): the score of the frame nearest to the
clip's centre ``2k + 1`` (the earlier frame when two are equally near). With one frame per clip centre
this is the frame's own score; no interpolation is made, so the scores stay the localizer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

CLIP_LENGTH = 2  # seconds per QVHighlights clip: clip i covers [2i, 2i + 2)
DEFAULT_THRESHOLD = 0.5
DEFAULT_SPAN_THRESHOLD = 6


class Moment(NamedTuple):
    """A predicted span in seconds with its score (the submission format's ``[start, end, score]``)."""

    start: float
    end: float
    score: float


def _check_frames(
    frame_times: Sequence[float], frame_scores: Sequence[float], duration: float
) -> tuple[np.ndarray, np.ndarray]:
    times = np.asarray(frame_times, dtype=float)
    scores = np.asarray(frame_scores, dtype=float)
    if times.ndim != 1 or times.shape != scores.shape or len(times) == 0:
        raise ValueError(f"need one score per frame time, got {times.shape} times and {scores.shape} scores")
    if not (np.all(np.isfinite(times)) and np.all(np.isfinite(scores))):
        raise ValueError("frame times and scores must be finite")
    if not duration > 0:
        raise ValueError(f"duration must be positive, got {duration}")
    if np.any(np.diff(times) <= 0):
        raise ValueError("frame times must be strictly increasing")
    if times[0] < 0 or times[-1] > duration:
        raise ValueError(f"frame times must lie within [0, {duration}], got {times[0]}..{times[-1]}")
    return times, scores


def frame_cells(frame_times: np.ndarray, duration: float) -> np.ndarray:
    """Cell boundaries: ``T + 1`` values, 0, the midpoints between successive frames, then `duration`."""
    return np.concatenate([[0.0], (frame_times[1:] + frame_times[:-1]) / 2, [float(duration)]])


def frame_scores_to_moments(
    frame_times: Sequence[float],
    frame_scores: Sequence[float],
    duration: float,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    span_threshold: int = DEFAULT_SPAN_THRESHOLD,
) -> list[Moment]:
    """Moments of a video from its frames' localizer scores, best first (rule in the module docstring)."""
    times, scores = _check_frames(frame_times, frame_scores, duration)
    if isinstance(span_threshold, bool) or not isinstance(span_threshold, int) or span_threshold < 0:
        raise ValueError(f"span_threshold must be a non-negative integer, got {span_threshold!r}")
    cells = frame_cells(times, duration)
    positive = np.flatnonzero(scores >= threshold)
    if len(positive) == 0:
        best = int(np.argmax(scores))
        return [Moment(float(cells[best]), float(cells[best + 1]), float(scores[best]))]
    # A new span starts wherever more than `span_threshold` frames separate two positive frames.
    breaks = np.flatnonzero(np.diff(positive) - 1 > span_threshold)
    firsts = positive[np.r_[0, breaks + 1]]
    lasts = positive[np.r_[breaks, len(positive) - 1]]
    moments = [
        Moment(float(cells[first]), float(cells[last + 1]), float(np.mean(scores[first : last + 1])))
        for first, last in zip(firsts, lasts, strict=True)
    ]
    return sorted(moments, key=lambda m: (-m.score, m.start))


def frame_scores_to_saliency(
    frame_times: Sequence[float], frame_scores: Sequence[float], duration: float
) -> list[float]:
    """One highlight score per 2-second clip: the score of the frame nearest the clip's centre."""
    times, scores = _check_frames(frame_times, frame_scores, duration)
    num_clips = int(duration / CLIP_LENGTH)
    if num_clips == 0:
        raise ValueError(f"a {duration}-s video has no whole {CLIP_LENGTH}-s clip to score")
    centres = (np.arange(num_clips) + 0.5) * CLIP_LENGTH
    nearest = np.argmin(np.abs(times[None, :] - centres[:, None]), axis=1)
    return [float(s) for s in scores[nearest]]


__all__ = [
    "CLIP_LENGTH",
    "DEFAULT_SPAN_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "Moment",
    "frame_cells",
    "frame_scores_to_moments",
    "frame_scores_to_saliency",
]
