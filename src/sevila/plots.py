"""Pictures of a result: the localizer's score of every sampled frame over time, with the keyframes marked and
shown as thumbnails (`plot_answer`), or with the predicted moments shaded (`plot_localization`).

Why matplotlib: the same code gives the command line a PNG file (``sevila answer --plot``, ``sevila localize
--plot``) and an app an image to show (`answer_figure` / `localization_figure` return a `Figure`), with no
browser or JavaScript needed, and it renders headless through its Agg canvas. It is an optional dependency
(``pip install 'sevila[plot]'``): importing sevila never imports it, and a missing matplotlib is reported as
`PlotUnavailable` when a picture is asked for. Figures are built with the object-oriented API (no pyplot),
so no global backend is set and nothing is left open between calls.

Results are read by their fields (`sevila.inference.Answer`, `sevila.inference.Localization`), so this module
needs no torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sevila.video import open_video, read_clip

INSTALL_HINT = "pip install 'sevila[plot]'"
FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")
THUMBNAILS_PER_ROW = 8


class PlotUnavailable(ImportError):
    """matplotlib is not installed."""


def require_matplotlib() -> None:
    """Raise `PlotUnavailable` (one line, with the install command) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise PlotUnavailable(f"plotting needs matplotlib: {INSTALL_HINT}") from None


def check_plot_path(path: str | os.PathLike[str]) -> Path:
    """``path`` if a picture can be written there (a known image suffix, an existing folder), else `ValueError`."""
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"{path}: the plot file must end in one of {', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise ValueError(f"{path}: the folder {path.parent} does not exist")
    return path


def _figure(width: float, height: float):
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(figure, path: str | os.PathLike[str]) -> Path:
    path = check_plot_path(path)
    figure.savefig(path)
    return path


def _score_axes(axes, times: Sequence[float], scores: Sequence[float], ylabel: str) -> None:
    axes.plot(times, scores, color="tab:blue", marker=".", linewidth=1.5, label="every sampled frame")
    axes.set_xlabel("time (s)")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)


def _keyframe_images(answer: Any, frames_or_video, backend: str) -> np.ndarray | None:
    """The keyframes' images: decoded from a video path, taken from given frames, or None."""
    if frames_or_video is None:
        return None
    if isinstance(frames_or_video, (str, os.PathLike)):
        with open_video(frames_or_video, backend=backend) as reader:
            return read_clip(reader, [answer.frame_indices[k] for k in answer.keyframes]).frames
    frames = np.asarray(frames_or_video)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (N, H, W, 3) RGB images, got shape {frames.shape}")
    if len(frames) == len(answer.keyframes):  # the keyframes themselves
        return frames
    if len(frames) == len(answer.frame_times):  # every sampled frame
        return frames[list(answer.keyframes)]
    raise ValueError(
        f"got {len(frames)} frames: give the {len(answer.keyframes)} keyframes or all {len(answer.frame_times)} "
        "sampled frames"
    )


def answer_figure(answer: Any, frames_or_video=None, *, backend: str = "pyav"):
    """A `Figure`: the frame-score curve over time with the keyframes marked, the keyframe thumbnails beneath.

    ``frames_or_video``: the video file (its keyframes are decoded), uint8 ``(N, H, W, 3)`` frames (the keyframes
    or every sampled frame), or None for the curve alone.
    """
    images = _keyframe_images(answer, frames_or_video, backend)
    count = len(answer.keyframes) if images is not None else 0
    columns = min(count, THUMBNAILS_PER_ROW) or 1
    rows = math.ceil(count / columns) if count else 0
    width = max(8.0, 1.6 * columns)
    figure = _figure(width, 3.2 + 1.9 * rows)
    grid = figure.add_gridspec(1 + rows, columns, height_ratios=[3.0] + [1.7] * rows)
    curve = figure.add_subplot(grid[0, :])
    times, keytimes = answer.frame_times, answer.keyframe_times
    if answer.frame_scores is not None:
        _score_axes(curve, times, answer.frame_scores, 'localizer score ("yes" logit)')
        curve.scatter(
            keytimes,
            [answer.frame_scores[k] for k in answer.keyframes],
            color="tab:red",
            s=60,
            zorder=3,
            label="keyframes",
        )
        curve.legend(loc="best", fontsize="small")
    else:
        curve.text(
            0.5, 0.5, "no localizer scores (uniform frames)", ha="center", va="center", transform=curve.transAxes
        )
        curve.set_yticks([])
        curve.set_xlabel("time (s)")
    for t in keytimes:
        curve.axvline(t, color="tab:red", alpha=0.25, linewidth=1)
    if times:
        curve.set_xlim(min(0.0, times[0]), times[-1] + (times[1] - times[0] if len(times) > 1 else 1.0) / 2)
    title = f"Answer: ({answer.letter}) {answer.text}"
    if getattr(answer, "question", None):
        title = f"{answer.question}\n{title}"
    curve.set_title(title, fontsize="medium")
    for n in range(count):
        axes = figure.add_subplot(grid[1 + n // columns, n % columns])
        axes.imshow(images[n])
        axes.set_axis_off()
        axes.set_title(f"{keytimes[n]:.2f}s", fontsize="small")
    return figure


def plot_answer(answer: Any, frames_or_video, path: str | os.PathLike[str], *, backend: str = "pyav") -> Path:
    """Write `answer_figure` to ``path`` (the format from its suffix, e.g. ``.png``); returns the path."""
    check_plot_path(path)
    return _save(answer_figure(answer, frames_or_video, backend=backend), path)


def localization_figure(localization: Any, *, threshold: float | None = None):
    """A `Figure`: every sampled frame's p(yes) over time (what moments are cut from), moments shaded.

    ``threshold`` (default `sevila.moments.DEFAULT_THRESHOLD`) is drawn as a dashed line.
    """
    from sevila.moments import DEFAULT_THRESHOLD

    figure = _figure(9.0, 3.6)
    axes = figure.add_subplot(1, 1, 1)
    for n, (start, end, score) in enumerate(localization.moments):
        axes.axvspan(start, end, color="tab:orange", alpha=0.25, label="moments" if n == 0 else None)
        axes.text((start + end) / 2, 1.02, f"{score:.2f}", ha="center", va="bottom", fontsize="small")
    _score_axes(axes, localization.frame_times, localization.frame_probabilities, 'localizer p("yes")')
    axes.axhline(
        DEFAULT_THRESHOLD if threshold is None else threshold,
        color="grey",
        linestyle="--",
        linewidth=1,
        label="threshold",
    )
    axes.set_ylim(0.0, 1.1)
    axes.set_title(f"Moments for: {localization.query}", fontsize="medium")
    axes.legend(loc="lower right", fontsize="small")
    return figure


def plot_localization(localization: Any, path: str | os.PathLike[str], *, threshold: float | None = None) -> Path:
    """Write `localization_figure` to ``path`` (the format from its suffix, e.g. ``.png``); returns the path."""
    check_plot_path(path)
    return _save(localization_figure(localization, threshold=threshold), path)


__all__ = [
    "PlotUnavailable",
    "answer_figure",
    "check_plot_path",
    "localization_figure",
    "plot_answer",
    "plot_localization",
    "require_matplotlib",
]
