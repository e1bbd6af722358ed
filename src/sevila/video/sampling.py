"""Which frames of a video to use: SeViLA's frame-index sampling rules as pure functions.

The original (`load_video` in SeViLA's `du.py`) splits a frame range into `n` equal segments with
`numpy.linspace(start, end, n + 1).astype(int)` and takes one frame per segment: the integer midpoint at
evaluation (``"uniform"``) or a uniformly random frame of the segment in training (``"random"``). We
reproduce that arithmetic exactly (the parity fixture's indices depend on it), with one deliberate change:
the original first sets ``n = min(n_frms, vlen)``, so a video with fewer frames than requested yields
fewer frames and the dataset then fails its length assertion and silently swaps in another sample. Here
the linspace is always taken with the requested ``n``, so a short video gives exactly ``n`` indices, some of
them repeated. Indices are decode-order frame numbers in ``[0, num_frames)``.

Sampling by rate (``--fps F``, `frames_at_rate`) is the same rule with the count taken from the range's length:
``floor(seconds × F)`` segments (at least one, at most one per frame of the range), so a rate of 1 over ten
minutes gives 600 frames, each the midpoint of its one-second segment.
"""

from __future__ import annotations

import math
import random
from itertools import pairwise
from pathlib import Path
from typing import Literal

import numpy as np

from sevila.video.errors import VideoError

Sampling = Literal["uniform", "random"]
SAMPLINGS: tuple[str, ...] = ("uniform", "random")
Rng = random.Random | np.random.Generator


def _clip_numbers(clip: object, source: str | Path | None) -> tuple[float, float]:
    if (
        not isinstance(clip, (tuple, list))
        or len(clip) != 2
        or not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in clip)
    ):
        raise VideoError(source, f"a clip window is two numbers (start, end) in seconds, got {clip!r}")
    start_s, end_s = float(clip[0]), float(clip[1])
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        raise VideoError(
            source, f"clip window ({start_s:g}, {end_s:g}): start and end must be finite numbers of seconds"
        )
    return start_s, end_s


def check_clip(clip: object, *, source: str | Path | None = None) -> tuple[float, float]:
    """A clip window ``(start, end)`` in seconds as two floats, or `VideoError` naming `source`.

    The check of a window someone typed or wrote in an annotation file, before any video is opened: two finite
    numbers with ``0 <= start < end`` (`sevila.data` records apply the same rule at load time). `frame_range`
    itself stays as lenient as the original (a negative start is clamped to 0). An end past the video's end
    is not an error either: it is clamped, as in the original, whose annotation windows often overrun the
    video by a fraction of a second.
    """
    start_s, end_s = _clip_numbers(clip, source)
    if start_s < 0:
        raise VideoError(source, f"clip window ({start_s:g}s, {end_s:g}s) starts before 0s")
    if end_s <= start_s:
        raise VideoError(source, f"clip window ({start_s:g}s, {end_s:g}s) is empty: its end must come after its start")
    return start_s, end_s


def frame_range(
    num_frames: int,
    fps: float,
    clip: tuple[float, float] | None = None,
    *,
    source: str | Path | None = None,
) -> tuple[int, int]:
    """The half-open frame range ``[start, end)`` to sample from.

    Without a clip it is the whole video. A clip window ``(start_s, end_s)`` in seconds is converted as the
    original does, ``int(seconds * fps)`` (truncation, not rounding), and clamped to ``[0, num_frames]``.
    A window that leaves no frame — it starts at or after the last frame, or ends at or before its start —
    raises `VideoError` naming `source` and the window, instead of the original's late decoder failure.
    """
    if num_frames <= 0:
        raise VideoError(source, f"the video has no frames (frame count {num_frames})")
    if clip is None:
        return 0, num_frames
    start_s, end_s = _clip_numbers(clip, source)  # no overflow on inf or nan
    start = max(int(start_s * fps), 0)
    end = min(int(end_s * fps), num_frames)
    if start >= num_frames or end <= start:
        duration = num_frames / fps
        raise VideoError(
            source,
            f"clip window ({start_s:g}s, {end_s:g}s) is outside the video "
            f"(frames [{start}, {end}) of {num_frames}, duration {duration:.3f}s at {fps:.4f} fps)",
        )
    return start, end


def segment_bounds(start: int, end: int, n: int) -> np.ndarray:
    """The ``n + 1`` integer segment boundaries of the original: ``linspace(start, end, n + 1).astype(int)``."""
    if n <= 0:
        raise ValueError(f"the number of frames to sample must be positive, got {n}")
    return np.linspace(start, end, n + 1).astype(int)


def check_count_or_rate(num_frames: object, rate: object) -> None:
    """A frame count and a sampling rate are two ways to say one thing: a `ValueError` when both are given."""
    if num_frames is not None and rate is not None:
        raise ValueError("give num_frames (--frames) or fps (--fps), not both")


def check_rate(rate: object) -> float:
    """A sampling rate in frames per second: a finite number above 0, or a one-line `ValueError`."""
    if isinstance(rate, bool) or not isinstance(rate, (int, float, np.integer, np.floating)):
        raise TypeError(f"the sampling rate (--fps) must be a number of frames per second, got {rate!r}")
    if not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"the sampling rate (--fps) must be a positive number of frames per second, got {rate!r}")
    return float(rate)


def frames_at_rate(
    num_frames: int,
    fps: float,
    rate: float,
    clip: tuple[float, float] | None = None,
    *,
    source: str | Path | None = None,
) -> int:
    """How many frames sampling at ``rate`` frames per second takes from the video (or its clip window):
    ``floor(seconds × rate)`` of the range `frame_range` gives, at least 1 and at most the range's frames."""
    rate = check_rate(rate)
    start, end = frame_range(num_frames, fps, clip, source=source)
    # The epsilon keeps 17982 frames at 29.97 fps (600 s by the nominal rate) from giving 599.
    return min(max(int((end - start) / fps * rate + 1e-9), 1), end - start)


def _randint(rng: Rng | None, low: int, high: int) -> int:
    """A uniform integer in ``[low, high)``.

    With no generator the `random` module's global state is used, like the original's ``random.choice``;
    PyTorch seeds that state differently in each DataLoader worker, so training stays reproducible per seed.
    """
    if isinstance(rng, np.random.Generator):
        return int(rng.integers(low, high))
    return (rng or random).randrange(low, high)


def sample_indices(
    num_frames: int,
    fps: float,
    n: int,
    sampling: Sampling = "uniform",
    clip: tuple[float, float] | None = None,
    *,
    rng: Rng | None = None,
    source: str | Path | None = None,
) -> list[int]:
    """Exactly `n` frame indices in ``[0, num_frames)``, in temporal order (repeats possible on short ranges).

    ``"uniform"``: the integer midpoint ``(b[j] + b[j + 1]) // 2`` of each segment. ``"random"``: a uniform
    random frame of ``[b[j], b[j + 1])``, or ``b[j]`` when the segment is empty; pass a seeded
    `random.Random` or `numpy.random.Generator` as `rng` to make it reproducible. Indices are clamped to
    ``num_frames - 1`` as a safeguard. `source` only names the file in error messages.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"unknown sampling {sampling!r}; expected one of {SAMPLINGS}")
    start, end = frame_range(num_frames, fps, clip, source=source)
    segments = list(pairwise(segment_bounds(start, end, n).tolist()))
    if sampling == "uniform":
        indices = [(lo + hi) // 2 for lo, hi in segments]
    else:
        indices = [_randint(rng, lo, hi) if hi > lo else lo for lo, hi in segments]
    return [min(i, num_frames - 1) for i in indices]
