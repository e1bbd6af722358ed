"""The per-video feature cache: question-independent visual tokens, computed once and kept on disk.

Neither Q-Former sees the question, so a video's visual tokens for both branches (`FrameFeatures`) depend
only on (the video's content, how frames were sampled, the weights of the ViT and both branches). They are
stored under a key hashing exactly those three things, so further questions, runs and processes reuse them,
and a changed video file, sampling or weight misses the cache instead of returning stale tokens.

Location: ``$SEVILA_CACHE_DIR`` if set, else ``~/.cache/sevila/features``. Each entry is one safetensors file
(both branches' tokens, in the dtype the model produced them, plus the frame indices and times). Size: the
paper model stores 2 × 32 × 32 × 2048 bf16 values per video at 32 frames, 8 MiB. ``max_bytes`` bounds the
total: after each write the least recently used entries are deleted until the cache fits.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from sevila.model import FrameFeatures, SeViLA
from sevila.utils.io import atomic_write
from sevila.video import VideoError, load_video, normalize

CACHE_ENV = "SEVILA_CACHE_DIR"
_FORMAT_VERSION = "1"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sevila" / "features")


@dataclass
class VideoFeatures:
    """Visual tokens of one video's sampled frames and where those frames are."""

    features: FrameFeatures  # (1, frames, Q, D) per branch
    indices: list[int]  # frame numbers in the video
    timestamps: list[float]  # seconds
    fps: float
    duration: float


# ---------------------------------------------------------------------------------------------- fingerprints
_file_hashes: dict[tuple[str, int, int], str] = {}


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of the file's bytes (memoised per path, size and modification time within a process)."""
    path = Path(path)
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo not in _file_hashes:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _file_hashes[memo] = digest.hexdigest()
    return _file_hashes[memo]


def model_fingerprint(model: SeViLA) -> str:
    """SHA-256 over every tensor that feature extraction uses (ViT and both branches), with dtypes.

    Memoised on the model and recomputed when any of those tensors is modified in place (tracked by torch's
    per-tensor version counters), so training between two uses cannot leave a stale fingerprint.
    """
    modules = {"vision": model.vision, "answerer": model.answerer, "localizer": model.localizer}
    tensors = [(f"{name}.{key}", t) for name, module in modules.items() for key, t in module.state_dict().items()]
    versions = (model.precision, tuple((id(t), t._version) for _, t in tensors))
    cached = getattr(model, "_feature_fingerprint", None)
    if cached is not None and cached[0] == versions:
        return cached[1]
    digest = hashlib.sha256()
    digest.update(model.config.to_json().encode())
    # How the stages compute (autocast) changes the features as much as the weights' dtypes do.
    digest.update(json.dumps(model.precision.to_dict(), sort_keys=True).encode())
    for key, tensor in tensors:
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    fingerprint = digest.hexdigest()
    model._feature_fingerprint = (versions, fingerprint)
    return fingerprint


# ---------------------------------------------------------------------------------------------- the cache
class FeatureCache:
    def __init__(self, directory: str | Path | None = None, max_bytes: int | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(video: str, sampling: Mapping, model: str) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, "video": video, "sampling": sampling, "model": model}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str, device: torch.device | str = "cpu") -> VideoFeatures | None:
        from safetensors import safe_open

        path = self.path(key)
        if not path.is_file():
            self.misses += 1
            return None
        try:
            with safe_open(str(path), framework="pt", device=str(device)) as handle:
                meta = json.loads(handle.metadata()["sevila"])
                features = FrameFeatures(handle.get_tensor("answerer"), handle.get_tensor("localizer"))
        except Exception:  # a damaged entry (e.g. disk full during another process's write): recompute it
            path.unlink(missing_ok=True)
            self.misses += 1
            return None
        os.utime(path)  # mark as recently used for eviction
        self.hits += 1
        return VideoFeatures(features, meta["indices"], meta["timestamps"], meta["fps"], meta["duration"])

    def put(self, key: str, value: VideoFeatures) -> None:
        from safetensors.torch import save_file

        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"indices": value.indices, "timestamps": value.timestamps, "fps": value.fps, "duration": value.duration}
        tensors = {
            "answerer": value.features.answerer.detach().cpu().contiguous(),
            "localizer": value.features.localizer.detach().cpu().contiguous(),
        }
        # Atomic: readers (other processes sharing the cache) never see a half-written entry.
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"sevila": json.dumps(meta)}))
        if self.max_bytes is not None:
            self.evict(self.max_bytes)

    def entries(self) -> list[Path]:
        return sorted(self.directory.glob("*/*.safetensors")) if self.directory.is_dir() else []

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.entries())

    def evict(self, max_bytes: int) -> None:
        """Delete least recently used entries until the cache holds at most ``max_bytes``."""
        entries = sorted(self.entries(), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for entry in entries:
            if total <= max_bytes:
                break
            total -= entry.stat().st_size
            entry.unlink(missing_ok=True)

    def clear(self) -> None:
        self.evict(0)


# ---------------------------------------------------------------------------------------------- encoding videos
def encode_video(
    model: SeViLA,
    path: str | Path,
    num_frames: int,
    clip: tuple[float, float] | None = None,
    backend: str = "pyav",
    cache: FeatureCache | None = None,
) -> VideoFeatures:
    """Sample ``num_frames`` uniformly (within ``clip`` seconds if given), decode and encode them, through
    the cache when one is given. Raises `sevila.video.VideoError` for an unreadable video."""
    image_size = model.config.vision.image_size
    key = None
    if cache is not None:
        sampling = {
            "num_frames": num_frames,
            "clip": list(clip) if clip else None,
            "image_size": image_size,
            "backend": backend,
            "rule": "uniform",
        }
        try:
            video_hash = file_fingerprint(path)
        except OSError as err:  # missing or unreadable: the same error the decoder would give
            raise VideoError(path, "file not found" if isinstance(err, FileNotFoundError) else str(err)) from None
        key = cache.key(video_hash, sampling, model_fingerprint(model))
        hit = cache.get(key, device=model.device)
        if hit is not None:
            return hit
    video = load_video(path, num_frames, "uniform", clip, image_size=image_size, backend=backend)
    frames = normalize(video.frames, model.config.image_mean, model.config.image_std)[None]
    with torch.no_grad():
        features = model.encode_frames(frames)
    result = VideoFeatures(features, list(video.indices), list(video.timestamps), video.fps, video.duration)
    if cache is not None:
        cache.put(key, result)
    return result
