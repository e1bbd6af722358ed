"""The per-video feature cache: question-independent visual tokens, computed once and kept on disk.

Neither Q-Former sees the question, so a video's visual tokens for both branches (`FrameFeatures`) depend
only on (the video's content, how frames were sampled, the weights of the ViT and both branches). They are
stored under a key hashing exactly those three things, so further questions, runs and processes reuse them,
and a changed video file, sampling or weight misses the cache instead of returning stale tokens.

Location: ``$SEVILA_CACHE_DIR`` if set, else ``~/.cache/sevila/features``. Each entry is one safetensors file
(both branches' tokens, in the dtype the model produced them, plus the frame indices and times, and a SHA-256
of the tensors' bytes: an entry whose bytes do not match — a damaged disk, a partial copy — is a miss, with
a warning, and is recomputed and overwritten). Size: the paper model stores 2 × 32 × 32 × 2048 bf16 values
per video at 32 frames, 8 MiB. ``max_bytes`` bounds the total, by default `DEFAULT_CACHE_LIMIT` (10 GB, about
1,200 videos of the paper model) or ``$SEVILA_CACHE_LIMIT`` (``20GB``, ``500MB``, a number of bytes, or
``none`` for no limit): after a write that takes the cache past it, the least recently used entries are
deleted until it fits. ``sevila cache info`` and ``sevila cache clear`` inspect and empty it.

The cache never costs an answer: a cache folder that cannot be written (read-only, full disk) gives one
warning and the run continues without caching; one that cannot be read is a miss.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sevila.model import FrameFeatures, SeViLA
from sevila.utils.io import atomic_write
from sevila.utils.sizes import parse_size
from sevila.video import VideoError, load_video, normalize, open_video

logger = logging.getLogger(__name__)

CACHE_ENV = "SEVILA_CACHE_DIR"
LIMIT_ENV = "SEVILA_CACHE_LIMIT"
DEFAULT_CACHE_LIMIT = 10 * 10**9  # bytes (10 GB): about 1,200 videos' tokens of the paper model at 32 frames
_FORMAT_VERSION = "2"  # 2: entries carry a checksum of their tensors' bytes


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "sevila" / "features")


def parse_cache_limit(text: str | int | None, source: str = "the cache limit") -> int | None:
    """A cache size limit in bytes from ``10GB``, ``500MB``, ``2GiB``, a number of bytes, or ``none`` /
    ``unlimited`` (None: no limit). A `ValueError` naming ``source`` for anything else."""
    if text is None or isinstance(text, int):
        if isinstance(text, int) and text < 0:
            raise ValueError(f"{source}: a size limit cannot be negative, got {text}")
        return text
    value = str(text).strip()
    if value.lower() in ("none", "unlimited", "inf"):
        return None
    try:
        return parse_size(value)
    except ValueError as err:
        raise ValueError(f"{source}: {err.args[0].removesuffix(')')}, or none)") from None


def default_cache_limit() -> int | None:
    """``$SEVILA_CACHE_LIMIT`` if set, else `DEFAULT_CACHE_LIMIT`."""
    value = os.environ.get(LIMIT_ENV)
    return DEFAULT_CACHE_LIMIT if not value else parse_cache_limit(value, f"${LIMIT_ENV}")


def format_bytes(size: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


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


def file_version(path: Path, info: os.stat_result | None = None) -> tuple[str, int, int]:
    """What identifies a version of a file within a process, for memoising work on it: the resolved path,
    the size and the modification time (``info``: its `os.stat` result when the caller has it)."""
    info = info or path.stat()
    return str(path.resolve()), info.st_size, info.st_mtime_ns


def file_fingerprint(path: str | Path) -> str:
    """SHA-256 of the file's bytes (memoised per path, size and modification time within a process).

    Only a regular file is hashed: a device (``/dev/zero``), a FIFO or a directory is a `ValueError` naming
    it (reading one would never end, or fail obscurely)."""
    path = Path(path)
    info = path.stat()
    if not stat.S_ISREG(info.st_mode):
        kind = (
            "a directory"
            if stat.S_ISDIR(info.st_mode)
            else "a FIFO (named pipe)"
            if stat.S_ISFIFO(info.st_mode)
            else "a device"
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
            else "not a regular file"
        )
        raise ValueError(f"{kind}, not a video file")
    memo = file_version(path, info)
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
def _checksum(tensors: Mapping[str, torch.Tensor]) -> str:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        tensor = tensors[key].detach().cpu().contiguous()
        digest.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class FeatureCache:
    """Visual tokens per (video, sampling, model) on disk; see the module's docstring.

    ``max_bytes``: the size limit in bytes, or a size such as ``"5GB"`` (a ``--cache-limit`` value passes
    straight through), or ``"none"`` for no limit; None (not given): ``$SEVILA_CACHE_LIMIT``, else
    `DEFAULT_CACHE_LIMIT`. The attribute ``max_bytes`` is the limit in bytes, None when there is none.
    """

    _RESCAN_EVERY = 64  # writes between two scans of the folder (other processes write to it too)

    def __init__(self, directory: str | Path | None = None, max_bytes: int | str | None = None):
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.max_bytes = default_cache_limit() if max_bytes is None else parse_cache_limit(max_bytes, "--cache-limit")
        self.hits = 0
        self.misses = 0
        self.writable = True  # False after a failed write: the run continues without caching
        self._size: int | None = None  # estimated total, rescanned now and then
        self._writes = 0

    @staticmethod
    def key(video: str, sampling: Mapping, model: str) -> str:
        blob = json.dumps({"v": _FORMAT_VERSION, "video": video, "sampling": sampling, "model": model}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str, device: torch.device | str = "cpu") -> VideoFeatures | None:
        """The entry, or None (a miss) when there is none, it cannot be read, or its bytes are damaged (then
        with a warning; the caller recomputes and overwrites it)."""
        from safetensors import safe_open

        path = self.path(key)
        try:
            present = path.is_file()
        except OSError:  # an unreadable cache folder is an empty one
            present = False
        if not present:
            self.misses += 1
            return None
        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                meta = json.loads(handle.metadata()["sevila"])
                tensors = {"answerer": handle.get_tensor("answerer"), "localizer": handle.get_tensor("localizer")}
            if meta.get("checksum") != _checksum(tensors):
                raise ValueError("its tensors do not match their checksum")
            value = VideoFeatures(
                FrameFeatures(tensors["answerer"].to(device), tensors["localizer"].to(device)),
                meta["indices"],
                meta["timestamps"],
                meta["fps"],
                meta["duration"],
            )
        except Exception as err:  # a damaged entry (a bad disk, a partial copy): recompute and overwrite it
            reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
            logger.warning("feature cache: damaged entry %s (%s); recomputing it", path, reason)
            self.misses += 1
            return None
        try:
            os.utime(path)  # mark as recently used for eviction
        except OSError:  # a read-only cache still serves its entries
            pass
        self.hits += 1
        return value

    def put(self, key: str, value: VideoFeatures) -> None:
        """Store an entry (atomically), then evict past the limit. A failure to write (read-only folder, full
        disk) is one warning, and later writes are skipped: caching never costs an answer."""
        from safetensors import SafetensorError
        from safetensors.torch import save_file

        if not self.writable:
            return
        path = self.path(key)
        tensors = {
            "answerer": value.features.answerer.detach().cpu().contiguous(),
            "localizer": value.features.localizer.detach().cpu().contiguous(),
        }
        meta = {
            "indices": value.indices,
            "timestamps": value.timestamps,
            "fps": value.fps,
            "duration": value.duration,
            "checksum": _checksum(tensors),
        }
        try:
            # Atomic: readers (other processes sharing the cache) never see a half-written entry.
            atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"sevila": json.dumps(meta)}))
            if self.max_bytes is not None:
                self._after_write(path)
        except (OSError, SafetensorError) as err:  # SafetensorError wraps the I/O error of a full disk
            self.writable = False
            reason = getattr(err, "strerror", None) or (str(err).strip().splitlines() or [""])[0]
            logger.warning(
                "feature cache: cannot write to %s (%s: %s); continuing without caching",
                self.directory,
                type(err).__name__,
                reason,
            )

    def _after_write(self, path: Path) -> None:
        self._writes += 1
        if self._size is None or self._writes % self._RESCAN_EVERY == 0:
            self._size = self.size_bytes()
        else:
            self._size += path.stat().st_size
        if self._size > self.max_bytes:
            self.evict(self.max_bytes)
            self._size = self.size_bytes()

    def entries(self) -> list[Path]:
        try:
            return sorted(self.directory.glob("*/*.safetensors")) if self.directory.is_dir() else []
        except OSError:
            return []

    @staticmethod
    def _stat(path: Path):
        try:
            return path.stat()
        except OSError:  # removed meanwhile by another process
            return None

    def size_bytes(self) -> int:
        return sum(info.st_size for info in map(self._stat, self.entries()) if info is not None)

    def evict(self, max_bytes: int) -> int:
        """Delete least recently used entries until the cache holds at most ``max_bytes``; returns how many
        were deleted."""
        stats = [(p, info) for p, info in ((p, self._stat(p)) for p in self.entries()) if info is not None]
        stats.sort(key=lambda item: item[1].st_mtime)
        total = sum(info.st_size for _, info in stats)
        removed = 0
        for entry, info in stats:
            if total <= max_bytes:
                break
            total -= info.st_size
            try:
                entry.unlink(missing_ok=True)
                removed += 1
            except OSError:
                pass
        return removed

    def clear(self) -> int:
        """Delete every entry (and temporary files of interrupted writes); returns how many entries."""
        removed = self.evict(0)
        if self.directory.is_dir():
            for leftover in self.directory.glob("*/.*.tmp"):
                leftover.unlink(missing_ok=True)
            for folder in self.directory.iterdir():
                if folder.is_dir() and len(folder.name) == 2:
                    try:
                        folder.rmdir()  # only when empty
                    except OSError:
                        pass
        return removed


# ---------------------------------------------------------------------------------------------- encoding videos
@dataclass
class DecodedVideo:
    """A video's sampled frames, decoded, waiting for the model (`finish_video`)."""

    frames: np.ndarray  # (frames, H, W, 3) uint8 RGB
    indices: list[int]
    timestamps: list[float]
    fps: float
    duration: float
    key: str | None  # its feature-cache key, when a cache is used


def prepare_video(
    model: SeViLA,
    path: str | Path,
    num_frames: int | None,
    clip: tuple[float, float] | None = None,
    backend: str = "pyav",
    cache: FeatureCache | None = None,
    rate: float | None = None,
) -> VideoFeatures | DecodedVideo:
    """Everything of `encode_video` but the model: the cached features, or the decoded frames. It runs no
    model, so it can run in a background thread (`VideoPrefetcher`) while the model works on other videos."""
    image_size = model.config.vision.image_size
    key = None
    if cache is not None:
        sampling = {
            **({"num_frames": num_frames} if rate is None else {"fps": rate}),
            "clip": list(clip) if clip else None,
            "image_size": image_size,
            "backend": backend,
            "rule": "uniform",
        }
        try:
            video_hash = file_fingerprint(path)
        except OSError as err:  # missing or unreadable: the same error the decoder would give
            raise VideoError(path, "file not found" if isinstance(err, FileNotFoundError) else str(err)) from None
        except ValueError as err:  # a device, FIFO or directory: never hashed (it could be endless)
            raise VideoError(path, str(err)) from None
        key = cache.key(video_hash, sampling, model_fingerprint(model))
        hit = cache.get(key, device=model.device)
        if hit is not None:
            return hit
    video = load_video(path, num_frames, "uniform", clip, image_size=image_size, backend=backend, rate=rate)
    return DecodedVideo(video.frames, list(video.indices), list(video.timestamps), video.fps, video.duration, key)


def finish_video(
    model: SeViLA, prepared: VideoFeatures | DecodedVideo, cache: FeatureCache | None = None
) -> VideoFeatures:
    """The model's part of `encode_video`: encode decoded frames (and store them in the cache)."""
    if isinstance(prepared, VideoFeatures):
        return prepared
    # Normalised here, not in the decoding thread: that thread then runs no torch work of its own, whose
    # intra-op thread pool would compete with the model's for the cores.
    frames = normalize(prepared.frames, model.config.image_mean, model.config.image_std)[None]
    with torch.no_grad():
        features = model.encode_frames(frames)
    result = VideoFeatures(features, prepared.indices, prepared.timestamps, prepared.fps, prepared.duration)
    if cache is not None and prepared.key is not None:
        cache.put(prepared.key, result)
    return result


def encode_video(
    model: SeViLA,
    path: str | Path,
    num_frames: int | None,
    clip: tuple[float, float] | None = None,
    backend: str = "pyav",
    cache: FeatureCache | None = None,
    rate: float | None = None,
) -> VideoFeatures:
    """Sample ``num_frames`` (or ``rate`` frames a second) uniformly, within ``clip`` seconds if given, decode
    and encode them, through the cache when one is given. Raises `sevila.video.VideoError` for an unreadable
    video. All frames are in memory at once: a long video goes through `encode_chunks` instead."""
    return finish_video(model, prepare_video(model, path, num_frames, clip, backend, cache, rate), cache)


class VideoPrefetcher:
    """Decodes videos (or reads their cached features) in one background thread, in the order asked, so
    the next videos are ready when the model gets to them: decoding overlaps the model's work on the
    current ones. PyAV and FFmpeg release the GIL while decoding, as torch does while computing.

    ``submit(key, path, num_frames, clip)`` queues a video (once per key); ``take(key)`` returns what
    `prepare_video` returned for it, waiting if needed, and raises its error (a `VideoError`) if it failed.
    Use it as a context manager (or call ``close``) so the thread ends; pending work is cancelled.
    """

    def __init__(self, model: SeViLA, backend: str = "pyav", cache: FeatureCache | None = None):
        self.model, self.backend, self.cache = model, backend, cache
        if cache is not None:
            model_fingerprint(model)  # memoised here, before the thread reads the weights
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sevila-decode")
        self._pending: dict = {}
        self.waited = 0.0  # seconds `take` spent waiting for the thread: decoding the model did not hide

    def submit(
        self,
        key,
        path: str | Path,
        num_frames: int | None,
        clip: tuple[float, float] | None = None,
        rate: float | None = None,
    ) -> None:
        if key not in self._pending:
            self._pending[key] = self._pool.submit(
                prepare_video, self.model, path, num_frames, clip, self.backend, self.cache, rate
            )

    def __contains__(self, key) -> bool:
        return key in self._pending

    def take(self, key) -> VideoFeatures | DecodedVideo:
        future = self._pending.pop(key)
        start = time.perf_counter()
        try:
            return future.result()
        finally:
            self.waited += time.perf_counter() - start

    def close(self) -> None:
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        self._pool.shutdown(wait=True)

    def __enter__(self) -> VideoPrefetcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- long videos
class TruncatedVideo(UserWarning):
    """Frames past some point of a long video could not be decoded; the frames before it are used."""


@dataclass(frozen=True)
class VideoPlan:
    """The frames to sample from one video, decided before any is decoded (`sevila.streaming.plan_video`)."""

    path: Path
    indices: list[int]  # frame numbers, in time order, each once
    fps: float
    duration: float


def _chunk_key(cache: FeatureCache, model: SeViLA, video_hash: str, indices: Sequence[int], backend: str) -> str:
    # A chunk's tokens depend on which frames it holds, not on the rule that chose them, so chunks of runs at
    # different rates or windows that happen to hold the same frames share an entry.
    sampling = {"indices": list(indices), "image_size": model.config.vision.image_size, "backend": backend}
    return cache.key(video_hash, {"rule": "chunk", **sampling}, model_fingerprint(model))


def _decode_what_decodes(reader, indices: Sequence[int], image_size: int) -> tuple[np.ndarray, str | None]:
    """The chunk's frames, or (when the chunk fails) those before its first frame that does not decode, with
    the decoder's reason."""
    try:
        return reader.read(indices), None
    except VideoError as err:
        reason = err.reason
    frames = []
    for index in indices:
        try:
            frames.append(reader.read([index])[0])
        except VideoError:
            break
    return (np.stack(frames) if frames else np.zeros((0, image_size, image_size, 3), np.uint8)), reason


def _libc_malloc_trim():
    """glibc's ``malloc_trim``, or None elsewhere (macOS, musl, Windows)."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _libc_malloc_trim()


def release_freed_memory() -> None:
    """Hand memory freed inside the process back to the system. glibc keeps freed buffers of a few megabytes
    (a chunk's frames and tokens) in its heap for reuse, and over an hour of chunks the heap fragments: without
    this the process grows by about the size of every frame's tokens (the mid-size model over a 60-minute video
    at 1 fps: 1.45x the peak memory of a 32-frame question, 1.33x with it; docs/long-videos.md)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def encode_chunks(
    model: SeViLA,
    plan: VideoPlan,
    chunk_frames: int,
    backend: str = "pyav",
    cache: FeatureCache | None = None,
    progress: bool = True,
) -> Iterator[VideoFeatures]:
    """The plan's frames encoded ``chunk_frames`` at a time, in time order: one `VideoFeatures` per chunk, so
    memory holds one chunk's frames and tokens however long the video. Each chunk is its own cache entry, so a
    second question about the video reads them instead of decoding and encoding again; while the model encodes
    one chunk, a background thread decodes the next.

    A chunk whose frames stop decoding (a corrupt or truncated tail) ends the video there: the frames before
    are used, and a `TruncatedVideo` warning names the file, the first frame lost and its time. When not even
    the first frame decodes, `VideoError`.
    """
    from tqdm.auto import tqdm

    chunks = [plan.indices[s : s + chunk_frames] for s in range(0, len(plan.indices), chunk_frames)]
    video_hash = file_fingerprint(plan.path) if cache is not None else None
    keys = [_chunk_key(cache, model, video_hash, c, backend) if cache else None for c in chunks]
    size = model.config.vision.image_size
    readers = []  # opened at the first chunk the cache misses: opening indexes every packet of the video

    def decode(indices: list[int]) -> tuple[np.ndarray, str | None]:
        if not readers:
            readers.append(open_video(plan.path, size, backend))
        return _decode_what_decodes(readers[0], indices, size)

    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sevila-decode") as pool:

            def fetch(n: int):
                if n >= len(chunks):
                    return None
                hit = cache.get(keys[n], device=model.device) if cache is not None else None
                return pool.submit(lambda: hit) if hit is not None else pool.submit(decode, chunks[n])

            bar = tqdm(
                total=len(plan.indices), desc="frames", unit="frame", disable=not progress or len(chunks) < 2 or None
            )
            pending = fetch(0)
            for n, indices in enumerate(chunks):
                done = pending.result()
                pending = fetch(n + 1)
                release_freed_memory()  # the previous chunk's frames and tokens are garbage by now
                if isinstance(done, VideoFeatures):
                    bar.update(len(indices))
                    yield done
                    continue
                frames, failure = done
                kept = indices[: len(frames)]
                if kept:
                    key = keys[n] if failure is None else None  # a partial chunk is not stored: the warning repeats
                    decoded = DecodedVideo(frames, kept, [i / plan.fps for i in kept], plan.fps, plan.duration, key)
                    bar.update(len(kept))
                    yield finish_video(model, decoded, cache)
                if failure is not None:
                    lost = plan.indices[n * chunk_frames + len(kept) :]
                    if n == 0 and not kept:
                        raise VideoError(plan.path, failure)
                    warnings.warn(
                        f"{plan.path}: frames from {lost[0]} ({lost[0] / plan.fps:.1f}s) on do not decode ({failure}); "
                        f"using the {len(plan.indices) - len(lost)} sampled frames before them and not the last "
                        f"{len(lost)}",
                        TruncatedVideo,
                        stacklevel=2,
                    )
                    break
            bar.close()
            if pending is not None:
                pending.cancel()
    finally:  # also when the caller stops early or a chunk fails
        for reader in readers:
            reader.close()
