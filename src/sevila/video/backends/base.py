"""What every decoding backend provides, so that sampling and `load_video` never depend on one library."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np


class FrameReader(ABC):
    """An opened video whose frames are addressed by decode-order index; a context manager.

    Subclasses are constructed as ``Reader(path, image_size)``, set the three attributes below, and raise
    `VideoError` (never their library's own exceptions) for anything wrong with the file.
    """

    path: Path
    num_frames: int
    """Number of frames, counted like decord's ``len(VideoReader)``: one per video packet."""
    fps: float
    """Average frame rate (FFmpeg's ``avg_frame_rate``), the rate SeViLA converts seconds and indices with."""

    @classmethod
    def check_available(cls) -> None:
        """Raise `sevila.video.BackendUnavailable` if the backend's library cannot be imported."""
        return None  # PyAV is a core dependency; the optional backends override this

    @abstractmethod
    def read(self, indices: Sequence[int]) -> np.ndarray:
        """Frames at `indices` (any order, repeats allowed) as uint8 ``(len(indices), S, S, 3)`` RGB."""

    @abstractmethod
    def close(self) -> None:
        """Release the file and decoder."""

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
