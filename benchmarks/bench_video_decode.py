"""Time `load_video` (32 uniformly sampled frames, 224 px) per video and per available backend.

Usage: ``python -m benchmarks.bench_video_decode [VIDEO ...] [--frames 32] [--size 224] [--repeat 3]``.
Without paths it uses the shared demo videos (``../shared/videos`` from the repository root, or
``$SEVILA_SHARED_DIR/videos``). Prints the best of ``--repeat`` runs in seconds and each backend's time as a
ratio to PyAV's, all measured in this one run.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from sevila.video import BACKENDS, load_video
from tests.support.paths import shared_dir


def shared_videos() -> list[Path]:
    return sorted((shared_dir() / "videos").glob("*.mp4"))


def best_time(path: Path, backend: str, frames: int, size: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        load_video(path, frames, image_size=size, backend=backend)
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("videos", nargs="*", type=Path)
    parser.add_argument("--frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    videos = args.videos or shared_videos()
    if not videos:
        parser.error("no videos given and none found in the shared folder")

    print(f"{args.frames} frames, uniform, {args.size} px, best of {args.repeat}")
    print(f"{'video':<28} {'backend':<11} {'seconds':>8} {'vs pyav':>8}")
    for path in videos:
        reference = None
        for backend in BACKENDS:
            try:
                seconds = best_time(path, backend, args.frames, args.size, args.repeat)
            except ImportError as exc:
                print(f"{path.name:<28} {backend:<11} unavailable: {str(exc).splitlines()[0][:80]}")
                continue
            if backend == "pyav":  # the first backend: the reference of the ratios
                reference = seconds
            ratio = f"{seconds / reference:7.2f}x" if reference else "       -"
            print(f"{path.name:<28} {backend:<11} {seconds:8.3f} {ratio:>8}")


if __name__ == "__main__":
    main()
