"""Optional backend: TorchCodec (``pip install 'sevila[torchcodec]'``; it uses the system's FFmpeg libraries).

Frames are decoded in TorchCodec's exact seek mode (it scans the file, so indices match the other backends)
and resized by its decoder-native ``Resize`` transform, which runs FFmpeg's scaler; its interpolation is
TorchCodec's choice, so pixels differ slightly from the PyAV/decord backends. torchcodec is imported only
when this backend is chosen.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sevila.video.backends.base import FrameReader
from sevila.video.errors import BackendUnavailable, VideoError

_INSTALL_HINT = "pip install 'sevila[torchcodec]'"


def _import_torchcodec() -> tuple[type, type]:
    try:
        from torchcodec.decoders import VideoDecoder
        from torchcodec.transforms import Resize
    except (ImportError, OSError) as exc:  # OSError: FFmpeg (or another) shared library it loads is missing
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BackendUnavailable(
            f"the 'torchcodec' video backend needs torchcodec with decoder transforms and FFmpeg's shared "
            f"libraries: {_INSTALL_HINT} ({first_line})"
        ) from exc
    return VideoDecoder, Resize


class TorchCodecReader(FrameReader):
    """``torchcodec.decoders.VideoDecoder`` with a decoder-native resize to ``image_size`` × ``image_size``."""

    @classmethod
    def check_available(cls) -> None:
        _import_torchcodec()

    def __init__(self, path: str | Path, image_size: int) -> None:
        VideoDecoder, Resize = _import_torchcodec()  # noqa: N806 (classes)
        self.path = Path(path)
        self._size = image_size
        try:
            self._decoder = VideoDecoder(
                str(self.path),
                seek_mode="exact",
                dimension_order="NHWC",
                num_ffmpeg_threads=0,  # FFmpeg picks the thread count, as the other backends do
                transforms=[Resize(size=(image_size, image_size))],
            )
            metadata = self._decoder.metadata
            self.num_frames = int(metadata.num_frames or 0)
            self.fps = float(metadata.average_fps or 0.0)
        except (RuntimeError, ValueError) as exc:
            raise VideoError(self.path, f"torchcodec cannot read the video ({type(exc).__name__}: {exc})") from None
        if self.num_frames <= 0:
            raise VideoError(self.path, "the video stream has no frames")
        if self.fps <= 0:
            raise VideoError(self.path, "the video stream has no known frame rate")

    def read(self, indices: Sequence[int]) -> np.ndarray:
        if len(indices) == 0:
            return np.zeros((0, self._size, self._size, 3), dtype=np.uint8)
        try:
            batch = self._decoder.get_frames_at(indices=[int(i) for i in indices])
        except (RuntimeError, ValueError) as exc:
            raise VideoError(self.path, f"torchcodec cannot decode frames ({type(exc).__name__}: {exc})") from None
        return batch.data.numpy()

    def close(self) -> None:
        del self._decoder
