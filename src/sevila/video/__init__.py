"""Video input of SeViLA: decoding, frame-index sampling and image transforms.

``load_video(path, n)`` returns `VideoClip` (uint8 frames resized by the decoder, indices, timestamps, fps);
``normalize`` / ``train_augment`` turn its frames into the float tensors the model takes. Decoding uses
PyAV by default; ``backend="decord"`` or ``"torchcodec"`` select the optional extras. Every bad-input case
raises `VideoError`.
"""

from __future__ import annotations

from typing import Any

from sevila.video.backends import BACKENDS, FrameReader, check_backend
from sevila.video.decode import VideoClip, check_video_file, load_video, open_video, read_clip
from sevila.video.errors import BackendUnavailable, VideoError
from sevila.video.sampling import (
    SAMPLINGS,
    check_clip,
    check_count_or_rate,
    check_rate,
    frame_range,
    frames_at_rate,
    sample_indices,
    segment_bounds,
)

# The transforms need torch; import them on first use so decoding and sampling stay light.
_TRANSFORMS = ("normalize", "random_resized_crop_box", "resized_crop", "train_augment")

__all__ = [
    "BACKENDS",
    "SAMPLINGS",
    "BackendUnavailable",
    "FrameReader",
    "VideoClip",
    "VideoError",
    "check_backend",
    "check_clip",
    "check_count_or_rate",
    "check_rate",
    "check_video_file",
    "frame_range",
    "frames_at_rate",
    "load_video",
    "normalize",
    "open_video",
    "random_resized_crop_box",
    "read_clip",
    "resized_crop",
    "sample_indices",
    "segment_bounds",
    "train_augment",
]


def __getattr__(name: str) -> Any:
    if name in _TRANSFORMS:
        from sevila.video import transforms

        return getattr(transforms, name)
    raise AttributeError(f"module 'sevila.video' has no attribute {name!r}")
