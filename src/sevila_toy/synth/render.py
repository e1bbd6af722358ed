"""Drawing a `Scene` into frames with numpy and encoding them as H.264 MP4 with PyAV.

Shapes are filled pixel masks (no antialiasing: the colours stay pure), pasted in the scene's drawing order.
The encoder runs single-threaded at a high quality (CRF 12) so that the colours and shapes come back recognisable
after 4:2:0 chroma subsampling, and with x264's assembly turned off so that the same scene always gives the same
file: on CPUs with AVX-512, x264's kernels made the output depend on what earlier work had left in memory
(docs/demo.md, "What it took" (i)). The C code is slower, but encoding is small beside rendering at 64×64.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from sevila.video.encode import write_mp4 as _write_mp4
from sevila_toy.synth.world import BACKGROUND_RGB, FPS, NUM_FRAMES, SIZE, Scene, Sprite

CRF = "12"


@cache
def shape_mask(shape: str, radius: int) -> np.ndarray:
    """Boolean ``(2r+1, 2r+1)`` mask of a shape centred in its box (triangles point up)."""
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    if shape == "circle":
        return x * x + y * y <= radius * radius + radius
    if shape == "square":
        return np.maximum(abs(x), abs(y)) <= radius - 1
    if shape == "triangle":
        return abs(x) <= (y + radius) / 2 + 0.5
    if shape == "cross":
        return (abs(x) <= 0.4 * radius) | (abs(y) <= 0.4 * radius)
    raise ValueError(f"unknown shape {shape!r}")


def _paste(frame: np.ndarray, sprite: Sprite, index: int) -> None:
    """Paint `sprite` as it is at frame `index` onto `frame`, clipped at the borders."""
    r = sprite.radius
    mask = shape_mask(sprite.shape, r)
    cx, cy = (int(v) for v in np.rint(sprite.centre(index)))
    top, left = cy - r, cx - r
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + 2 * r + 1, SIZE), min(left + 2 * r + 1, SIZE)
    if y0 < y1 and x0 < x1:
        region = frame[y0:y1, x0:x1]
        region[mask[y0 - top : y1 - top, x0 - left : x1 - left]] = sprite.rgb


def render(scene: Scene) -> np.ndarray:
    """The scene's uint8 RGB frames, ``(NUM_FRAMES, SIZE, SIZE, 3)``."""
    frames = np.empty((NUM_FRAMES, SIZE, SIZE, 3), dtype=np.uint8)
    frames[:] = BACKGROUND_RGB
    for sprite in scene.sprites():
        for index in range(sprite.first, sprite.last + 1):
            _paste(frames[index], sprite, index)
    return frames


def write_mp4(path: str | Path, frames: np.ndarray, fps: int = FPS) -> Path:
    """Encode RGB frames ``(T, H, W, 3)`` as H.264 (yuv420p) at a constant `fps`."""
    # 64×64 frames gain nothing from threads; parallelism is per video.
    options = {"crf": CRF, "preset": "veryfast", "x264-params": "asm=0"}  # see above
    return _write_mp4(path, frames, fps, codec_options=options, threads=1)
