"""`load_video`: open a file, pick frame indices with SeViLA's sampling rules, decode and resize those frames.

The entry point for everything that needs frames (dataset, feature cache, CLI). Frames come back as uint8 RGB
resized by the decoder to ``image_size`` × ``image_size`` without keeping the aspect ratio — what the
original's ``decord.VideoReader(height=, width=)`` produced — so normalisation (`sevila.video.transforms`)
sees the same pixels the original model saw.

Times: ``timestamps[j] = indices[j] / fps`` with the *average* fps, as the original computes them (e.g. for
QVHighlights frame labels). For variable-frame-rate files this is the nominal time of the ``i``-th frame,
not its presentation timestamp; we keep the original's convention because labels and metrics depend on it.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sevila.video.backends import FrameReader, open_reader
from sevila.video.errors import VideoError
from sevila.video.sampling import Rng, Sampling, frames_at_rate, sample_indices


@dataclass(frozen=True)
class VideoClip:
    """Frames sampled from one video, with where they came from."""

    frames: np.ndarray
    """uint8 ``(T, H, W, 3)`` RGB, ``H == W == image_size``."""
    indices: list[int]
    """Decode-order frame numbers of `frames` in the video."""
    timestamps: list[float]
    """Seconds, ``index / fps``."""
    fps: float
    """The video's average frame rate."""
    num_video_frames: int
    """Frames in the whole video (decord's ``len(VideoReader)``)."""
    duration: float
    """``num_video_frames / fps`` seconds: the span the timestamps live in."""
    path: Path


def check_video_file(path: str | Path) -> Path:
    """`path` as a `Path` if it is an existing regular file, else `VideoError` ("file not found", "a directory",
    "not a regular file").

    Call it before anything reads the file: reading a FIFO, ``/dev/zero`` or a terminal never ends (the feature
    cache hashes a video's bytes before decoding it). Only ``stat`` is used, which never blocks on those.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise VideoError(path, "file not found") from None
    except OSError as err:  # permission denied on a parent, a symlink loop, a name too long, ...
        raise VideoError(path, f"cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(mode):
        raise VideoError(path, "is a directory, not a regular file")
    if not stat.S_ISREG(mode):
        raise VideoError(path, "not a regular file (a pipe, device or socket cannot be read as a video)")
    return path


def open_video(path: str | Path, image_size: int = 224, backend: str = "pyav") -> FrameReader:
    """Open `path` for reading frames by index (a context manager; or call ``.close()``).

    Checks the file exists first so that a wrong path gets a plain "file not found" rather than a decoder's
    guess. Use this instead of `load_video` to sample several sets of indices from one opened file.
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return open_reader(check_video_file(path), image_size, backend)


def read_clip(reader: FrameReader, indices: Sequence[int]) -> VideoClip:
    """Decode `indices` from an opened reader into a `VideoClip`."""
    indices = [int(i) for i in indices]
    frames = reader.read(indices)
    fps = reader.fps
    return VideoClip(
        frames=frames,
        indices=indices,
        timestamps=[i / fps for i in indices],
        fps=fps,
        num_video_frames=reader.num_frames,
        duration=reader.num_frames / fps,
        path=reader.path,
    )


def load_video(
    path: str | Path,
    num_frames: int | None,
    sampling: Sampling = "uniform",
    clip: tuple[float, float] | None = None,
    image_size: int = 224,
    backend: str = "pyav",
    rng: Rng | None = None,
    *,
    rate: float | None = None,
) -> VideoClip:
    """Sample `num_frames` frames of `path` (optionally within `clip`, seconds) and decode them.

    `sampling` is ``"uniform"`` (evaluation: segment midpoints) or ``"random"`` (training: one random frame
    per segment, drawn from `rng`); see `sevila.video.sampling`. Always returns exactly `num_frames` frames,
    repeating frames of videos shorter than that. `backend` is ``"pyav"`` (default), ``"decord"`` or
    ``"torchcodec"``; all use the same indices. Raises `VideoError` (naming the file) for any unreadable
    video or a clip window outside it. With ``rate`` (frames a second) instead of `num_frames`, the count is
    `sevila.video.frames_at_rate` of the video or window.
    """
    if (num_frames is None) == (rate is None):
        raise ValueError("give exactly one of num_frames and rate")
    if num_frames is not None and num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    with open_video(path, image_size, backend) as reader:
        if rate is not None:
            num_frames = frames_at_rate(reader.num_frames, reader.fps, rate, clip, source=path)
        indices = sample_indices(reader.num_frames, reader.fps, num_frames, sampling, clip, rng=rng, source=path)
        return read_clip(reader, indices)
