"""Long videos: throughput of each stage, peak memory against a 32-frame run, and a second question's cost.

Generates a 10-minute and a 60-minute video (640x360 at 30 fps, H.264 with x264's default keyframe interval, so
sampling one frame a second decodes most of the video, as with camera footage) and asks two questions about
each at 1 frame a second, every run in a fresh process with an empty feature cache:

- frames/s of decoding (in the background thread), vision (ViT + both Q-Formers) and localizer scoring (T5),
  timed inside the first question;
- peak RSS of the process against the same process answering at 32 frames, and against all frames at once
  (``--chunk-frames`` as large as the video: what streaming saves);
- the first question (decode, encode, score) against the second (chunks read from the cache, T5 only).

Usage: python -m benchmarks.bench_long_video [--model demo|mid] [--minutes 10 60] [--workdir DIR]
(``mid``: the mid-size preset of benchmarks/bench_inference.py with random weights, 224-pixel frames.)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

QUESTIONS = [
    ("What colour was the shape that appeared?", ["red", "blue", "green", "yellow", "purple"]),
    ("What colour did the shape turn?", ["cyan", "green", "purple", "yellow", "blue"]),
]


def long_video(path: Path, minutes: float, fps: int = 30, width: int = 640, height: int = 360) -> Path:
    """``minutes`` of drifting gradients with a white square passing for 3 s of every 40; cached in ``path``.
    Camera-like: 640x360 at 30 fps, x264's default keyframe interval (250 frames)."""
    from sevila.video.encode import write_mp4

    if path.is_file():
        return path
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cycle = 300  # distinct backgrounds, drawn once (drawing each of 108,000 frames would take longer than coding)

    def background(t: int) -> np.ndarray:
        phase = 2 * np.pi * t / cycle
        channels = [np.sin(x / (37 + 11 * c) + phase * (c + 1)) + np.cos(y / (23 + 7 * c) - phase) for c in range(3)]
        return (np.stack(channels, axis=-1) * 50 + 128).clip(0, 230).astype(np.uint8)

    backgrounds = [background(t) for t in range(cycle)]

    def frame(t: int) -> np.ndarray:
        rgb = backgrounds[t % cycle]
        if (t // fps) % 40 < 3:
            rgb = rgb.copy()
            left = (t * 4) % (width - 80)
            rgb[140:220, left : left + 80] = 255
        return rgb

    tmp = path.with_suffix(".tmp.mp4")
    frames = int(minutes * 60 * fps)
    write_mp4(tmp, (frame(t) for t in range(frames)), fps=fps, codec_options={"preset": "veryfast"})
    tmp.rename(path)
    return path


def child(spec: dict) -> dict:
    """One measured run (in its own process): two questions, stage times of the first, peak RSS."""
    import torch

    import sevila.features as features
    from sevila.features import FeatureCache
    from sevila.inference import VideoQA

    torch.set_num_threads(spec["threads"])
    sampling = {"fps": spec["fps"]} if spec.get("fps") else {"num_frames": spec["frames"]}
    qa = VideoQA.load(
        spec["model"], device="cpu", cache=FeatureCache(spec["cache"]), chunk_frames=spec["chunk"], **sampling
    )
    spent = {"decode": 0.0, "vision": 0.0, "scoring": 0.0}

    def timing(stage, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[stage] += time.perf_counter() - start

        return timed

    features._decode_what_decodes = timing("decode", features._decode_what_decodes)
    features.load_video = timing("decode", features.load_video)
    qa.model.encode_frames = timing("vision", qa.model.encode_frames)
    qa.model.frame_scores = timing("scoring", qa.model.frame_scores)
    times = []
    for question, options in QUESTIONS:
        start = time.perf_counter()
        answer = qa.predict(spec["video"], question, options)
        times.append(time.perf_counter() - start)
        if len(times) == 1:
            first_split = dict(spent)
    return {
        "frames": len(answer.frame_indices),
        "first_s": times[0],
        "second_s": times[1],
        "split_first": first_split,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "keyframe_times": answer.keyframe_times,
    }


def run_child(spec: dict) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_long_video", "--child", json.dumps(spec)],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="demo", help="a model name or directory, or mid (a preset, random weights); default: demo"
    )
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 60])
    parser.add_argument("--fps", type=float, default=1.0, help="sampling rate of the long runs")
    parser.add_argument("--chunk-frames", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workdir", type=Path, default=None, help="keep the generated videos here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="sevila-long-"))
    workdir.mkdir(parents=True, exist_ok=True)
    model = args.model
    if model in ("mid", "paper"):  # a preset with random weights (benchmarks.bench_inference), saved once
        from benchmarks.bench_inference import build

        saved = workdir / f"{model}-model"
        if not (saved / "config.json").is_file():
            build(model, "cpu").save_pretrained(saved)
        model = str(saved)
    lines = []
    baseline = None
    for minutes in args.minutes:
        began = time.perf_counter()
        video = long_video(workdir / f"long-{minutes:g}min.mp4", minutes)
        print(f"{video.name}: {video.stat().st_size / 1e6:.1f} MB, made in {time.perf_counter() - began:.0f} s")
        base = dict(model=model, video=str(video), chunk=args.chunk_frames, threads=args.threads)
        runs = {}
        with tempfile.TemporaryDirectory() as cache:
            if baseline is None:
                baseline = run_child({**base, "frames": 32, "cache": cache + "/32"})
                print(f"  32 frames: peak RSS {baseline['peak_rss_mb']:.0f} MB, first {baseline['first_s']:.2f} s")
            runs["chunked"] = run_child({**base, "fps": args.fps, "cache": cache + "/chunked"})
            if minutes == min(args.minutes):
                runs["at once"] = run_child({**base, "fps": args.fps, "chunk": 10**7, "cache": cache + "/once"})
        r = runs["chunked"]
        split = r["split_first"]
        rates = {stage: r["frames"] / seconds for stage, seconds in split.items() if seconds > 0}
        line = (
            f"SUMMARY {args.model} {minutes:g} min at {args.fps:g} fps ({r['frames']} frames, chunks of {args.chunk_frames}): "
            f"decode {rates.get('decode', 0):.0f} frames/s, vision {rates.get('vision', 0):.0f} frames/s, "
            f"localizer scoring {rates.get('scoring', 0):.0f} frames/s; peak RSS {r['peak_rss_mb']:.0f} MB = "
            f"{r['peak_rss_mb'] / baseline['peak_rss_mb']:.2f}x the 32-frame run's {baseline['peak_rss_mb']:.0f} MB"
        )
        if "at once" in runs:
            once = runs["at once"]
            line += f" (all frames at once: {once['peak_rss_mb'] / baseline['peak_rss_mb']:.2f}x)"
            assert once["keyframe_times"] == r["keyframe_times"], "chunked and all-at-once keyframes differ"
        line += (
            f"; first question {r['first_s']:.1f} s, second (warm cache) {r['second_s']:.2f} s = "
            f"{r['first_s'] / r['second_s']:.1f}x faster"
        )
        print(line)
        lines.append(line)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
