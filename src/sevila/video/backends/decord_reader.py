"""Optional backend: decord, the decoder the original SeViLA used (``pip install 'sevila[decord]'``).

Useful to reproduce the original's frames bit for bit where its FFmpeg build matters; the PyAV backend gives
identical frames on the videos we checked. decord is imported only when this backend is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np

from sevila.video.backends.base import FrameReader
from sevila.video.errors import BackendUnavailable, VideoError


def _import_decord() -> ModuleType:
    try:
        import decord
    except ImportError as exc:
        raise BackendUnavailable("the 'decord' video backend needs decord: pip install 'sevila[decord]'") from exc
    return decord


class DecordReader(FrameReader):
    """decord's ``VideoReader`` resizing to ``image_size`` × ``image_size`` in its FFmpeg filter graph."""

    @classmethod
    def check_available(cls) -> None:
        _import_decord()

    def __init__(self, path: str | Path, image_size: int) -> None:
        decord = _import_decord()
        self.path = Path(path)
        self._size = image_size
        try:
            self._reader = decord.VideoReader(str(self.path), height=image_size, width=image_size)
            self.num_frames = len(self._reader)
            self.fps = float(self._reader.get_avg_fps())
        except Exception as exc:  # decord raises its own DECORDError (and plain RuntimeErrors) for bad files
            raise VideoError(self.path, f"decord cannot read the video ({type(exc).__name__}: {exc})") from None
        if self.num_frames <= 0:
            raise VideoError(self.path, "the video stream has no frames")

    def read(self, indices: Sequence[int]) -> np.ndarray:
        if len(indices) == 0:
            return np.zeros((0, self._size, self._size, 3), dtype=np.uint8)
        try:
            return self._reader.get_batch([int(i) for i in indices]).asnumpy()
        except Exception as exc:
            raise VideoError(self.path, f"decord cannot decode frames ({type(exc).__name__}: {exc})") from None

    def close(self) -> None:
        del self._reader
