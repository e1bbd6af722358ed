"""Small synthetic videos with known content, for tests (ours and other packages') and benchmarks.

Frame ``i`` is a flat grey of level ``16 + 5 * i`` (so ``i`` survives lossy coding and any resize: read it
back with `frame_number`) under a red band across the top quarter (so orientation is visible after
rotation: `red_band_side`). Written with PyAV, so no ffmpeg executable is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import av
import numpy as np
from av.audio.stream import AudioStream
from av.video.stream import VideoStream

from sevila.video.encode import write_mp4

MAX_FRAMES = 48
"""Grey levels 16, 21, …, 251, 5 apart so that coding and scaling errors (±2) cannot confuse them."""
_RED = (230, 20, 20)


def frame_pattern(index: int, width: int = 64, height: int = 48) -> np.ndarray:
    """The RGB uint8 ``(height, width, 3)`` content of frame `index`."""
    if not 0 <= index < MAX_FRAMES:
        raise ValueError(f"frame index must be in [0, {MAX_FRAMES}), got {index}")
    frame = np.full((height, width, 3), 16 + 5 * index, dtype=np.uint8)
    frame[: height // 4] = _RED
    return frame


def frame_number(frame: np.ndarray) -> int:
    """The frame index encoded in a decoded (possibly resized or rotated) `frame_pattern` image.

    Reads the median grey of the central region, which the red band never reaches in any orientation.
    """
    h, w = frame.shape[:2]
    centre = frame[3 * h // 8 : 5 * h // 8, 3 * w // 8 : 5 * w // 8, 1]  # green: the band has almost none
    return int(round((float(np.median(centre)) - 16) / 5))


def red_band_side(frame: np.ndarray) -> str:
    """Which edge of a decoded pattern frame carries the red band: "top", "bottom", "left" or "right"."""
    redness = frame[..., 0].astype(int) - frame[..., 1].astype(int)
    h, w = redness.shape
    edges = {
        "top": redness[: h // 8].mean(),
        "bottom": redness[-(h // 8) :].mean(),
        "left": redness[:, : w // 8].mean(),
        "right": redness[:, -(w // 8) :].mean(),
    }
    return max(edges, key=edges.__getitem__)


def write_video(
    path: str | Path,
    num_frames: int = 30,
    *,
    width: int = 64,
    height: int = 48,
    fps: int = 25,
    codec: str = "libx264",
    gop: int = 10,
    b_frames: int = 2,
    frame_times: Sequence[float] | None = None,
    rotation: int = 0,
    faststart: bool = False,
) -> Path:
    """Encode `num_frames` `frame_pattern` frames to `path` (container from the suffix, e.g. ``.mp4``).

    `gop` and `b_frames` give a regular keyframe interval and reordered frames, so that seeking code is
    exercised. `frame_times` (seconds, increasing) makes a variable-frame-rate file. `rotation` stores a
    display matrix rotating the picture counter-clockwise by that many degrees (PyAV ≥ 15 can write it).
    `faststart` puts the MP4 index before the data, as streaming files have it.
    """
    if frame_times is not None and len(frame_times) != num_frames:
        raise ValueError("frame_times needs one time per frame")
    if codec == "libx264":
        # Fixed keyframe interval (no scene-cut keyframes: every frame is a "scene cut" here), lossless.
        options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={b_frames}", "qp": "0"}
    else:  # e.g. FFmpeg's own mpeg4 encoder: finest quantiser, so grey levels survive
        options = {"qmin": "1", "qmax": "2"}
    return write_mp4(
        path,
        (frame_pattern(i, width, height) for i in range(num_frames)),
        fps,
        codec=codec,
        codec_options=options,
        gop=gop,
        b_frames=b_frames,
        frame_times=frame_times,
        rotation=rotation,
        container_options={"movflags": "faststart"} if faststart else None,
    )


def write_audio_only(path: str | Path, seconds: float = 0.5, sample_rate: int = 16000) -> Path:
    """A file with a sine tone and no video stream (container from the suffix, e.g. ``.m4a``/``.wav``)."""
    path = Path(path)
    samples = int(seconds * sample_rate)
    tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / sample_rate) * 8000).astype(np.int16)
    with av.open(str(path), "w") as container:
        stream = cast(
            AudioStream, container.add_stream("pcm_s16le" if path.suffix == ".wav" else "aac", rate=sample_rate)
        )
        frame = av.AudioFrame.from_ndarray(tone[None, :], format="s16", layout="mono")
        frame.sample_rate = sample_rate
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_empty_video(path: str | Path, width: int = 64, height: int = 48) -> Path:
    """A container with a video stream that holds no frames.

    Use an ``.avi`` path: FFmpeg reports an MP4 or Matroska file without samples as having no stream at all.
    """
    path = Path(path)
    with av.open(str(path), "w") as container:
        stream = cast(VideoStream, container.add_stream("mpeg4", rate=25))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        container.start_encoding()  # writes the header although no packet follows
    return path
