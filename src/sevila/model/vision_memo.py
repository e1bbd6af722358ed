"""Remembering the frozen ViT's output per frame, for training runs that see the same frames again.

SeViLA never trains the ViT and keeps it in eval mode, so its output for a frame is a function of that frame's
pixels alone. When training sees the same frames epoch after epoch (uncropped frames of short videos, as in
the synthetic demo world), most of a step's ViT work repeats. `memoized_vision` makes `SeViLA.encode_vision`
look each frame up by a digest of its pixel values and encode only the frames it has not seen.

Results match an unmemoized run up to floating-point summation order (the ViT runs on a different set of
frames at once). Memory: one entry is the ViT's ``(tokens, width)`` output of a frame; past ``max_bytes`` new
frames are encoded but not kept, so a run never grows without bound.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from sevila.model.sevila import SeViLA


class VisionStateMemo:
    """A memo in front of an ``encode_vision`` function: ``(frames, 3, H, W)`` → ``(frames, S, W)``."""

    def __init__(self, encode: Callable[[torch.Tensor], torch.Tensor], max_bytes: int):
        self.encode = encode
        self.max_bytes = max_bytes
        self.states: dict[bytes, torch.Tensor] = {}
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _key(frame: torch.Tensor) -> bytes:
        values = frame.detach().to("cpu").contiguous()
        digest = hashlib.blake2b(values.numpy().tobytes(), digest_size=16)
        digest.update(str((values.dtype, tuple(values.shape))).encode())
        return digest.digest()

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        pixels = frames.flatten(0, 1) if frames.dim() == 5 else frames
        keys = [self._key(frame) for frame in pixels]
        missing = {key: row for row, key in enumerate(keys) if key not in self.states}  # first row of each
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh = {}
        if missing:
            encoded = self.encode(pixels[list(missing.values())])
            fresh = dict(zip(missing, encoded))
            for key, state in fresh.items():
                if self.bytes + state.nbytes > self.max_bytes:
                    break
                self.states[key] = state.clone()  # not a view that would keep the whole batch alive
                self.bytes += state.nbytes
        return torch.stack([fresh[key] if key in fresh else self.states[key] for key in keys])


@contextmanager
def memoized_vision(model: SeViLA, max_bytes: int = 4 << 30) -> Iterator[VisionStateMemo]:
    """Within the block, ``model.encode_vision`` (and everything built on it) goes through a `VisionStateMemo`."""
    memo = VisionStateMemo(model.encode_vision, max_bytes)
    model.encode_vision = memo  # an instance attribute shadows the method
    try:
        yield memo
    finally:
        del model.encode_vision
