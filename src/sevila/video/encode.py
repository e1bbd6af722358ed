"""Writing RGB frames to a video file: the one encoder of the project (test videos, synthetic worlds)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.video.stream import VideoStream


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int = 25,
    *,
    codec: str = "libx264",
    codec_options: Mapping[str, str] | None = None,
    gop: int | None = None,
    b_frames: int | None = None,
    frame_times: Sequence[float] | None = None,
    rotation: int = 0,
    container_options: Mapping[str, str] | None = None,
    threads: int | None = None,
) -> Path:
    """Encode uint8 RGB frames ``(H, W, 3)`` to `path` (container from the suffix), yuv420p at `fps`.

    `frame_times` (seconds, one per frame, increasing) makes a variable-frame-rate file; `gop` and `b_frames`
    set the keyframe interval and reordered frames; `rotation` stores a display matrix (degrees,
    counter-clockwise); `container_options` go to the muxer (e.g. ``{"movflags": "faststart"}``).
    """
    path = Path(path)
    time_base = Fraction(1, 1000) if frame_times is not None else Fraction(1, fps)
    with av.open(str(path), "w", options=dict(container_options or {})) as container:
        stream = cast(VideoStream, container.add_stream(codec, rate=fps))
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = time_base
        if gop is not None:
            stream.codec_context.gop_size = gop
        if b_frames is not None:
            stream.codec_context.max_b_frames = b_frames
        if threads is not None:
            stream.codec_context.thread_count = threads
        if codec_options:
            stream.codec_context.options = dict(codec_options)
        if rotation:
            stream.set_display_rotation(rotation)
        count = 0
        for index, rgb in enumerate(frames):
            if index == 0:
                stream.height, stream.width = rgb.shape[:2]
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.time_base = time_base
            frame.pts = index if frame_times is None else round(frame_times[index] * 1000)
            container.mux(stream.encode(frame))
            count += 1
        if frame_times is not None and len(frame_times) != count:
            raise ValueError(f"frame_times has {len(frame_times)} times for {count} frames")
        container.mux(stream.encode())
    return path
