"""Precision modes side by side: `reference`, `bf16` and `fp32` on the same weights and the same inputs.

For each model (a preset with random weights, ``demo``, or a model directory / hub id) and each mode
(`sevila.model.precision`), chained inference runs on the same frames; every mode is compared with the first
mode given (default ``fp32``):

* frame scores (the localizer's "yes" logits): max |difference| as a fraction of the baseline's range over
  the video's frames, and in logits;
* keyframes and answers: how many are identical;
* the answerer's greedy first token (``▁Option`` for a trained answerer): how many are identical — option
  scores are read after it, so where it differs they are not comparable;
* option scores (option-letter logits): max |difference| as a fraction of the baseline's range over options;
* speed: per question, the ViT + both Q-Formers on the video's frames and the T5 scoring (median of
  ``--repeats`` runs after a warm-up), and on CUDA the mode's peak memory (its weights and activations,
  beyond the fp32 master copy every mode is made from).

Random weights say little about decisions: their frame scores are nearly flat or chaotic and their greedy
first token is a near-tie over the whole vocabulary, so keyframe, first-token and answer flips between modes
are expected there; ``demo`` (a trained toy model, on its example video) and real checkpoints give
meaningful decisions. The presets are there for speed and memory.

Usage:
    python -m benchmarks.gpu_precision_check                       # CUDA: mid + demo, all three modes
    python -m benchmarks.gpu_precision_check --device cpu           # reduced: demo + mid, fp32 vs bf16
    python -m benchmarks.gpu_precision_check --model paper --videos 2   # full size, random weights
    python -m benchmarks.gpu_precision_check --model /path/to/sevila-model --video a.mp4 --video b.mp4
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sevila import prompts
from sevila.config import PRESETS, SeViLAConfig
from sevila.model import Precision, SeViLA
from sevila.model.precision import MODES
from tests.support.tiny import OPTIONS, QUESTION, tiny_tokenizer

DEMO_QUESTIONS = [
    ("What colour was the shape?", ["red", "green", "blue"]),
    ("How many shapes?", ["one", "two", "three"]),
]


@dataclass
class Item:
    """One question about one video's frames."""

    frames: torch.Tensor  # (1, frames, 3, H, W), normalised, on the CPU
    qa_prompt: str
    loc_prompt: str
    num_options: int


@dataclass
class ModeRun:
    mode: str
    describe: str
    frame_scores: list[torch.Tensor] = field(default_factory=list)
    keyframes: list[list[int]] = field(default_factory=list)
    predictions: list[int] = field(default_factory=list)
    first_tokens: list[int] = field(default_factory=list)
    option_scores: list[torch.Tensor] = field(default_factory=list)
    vision_ms: float = 0.0
    scoring_ms: float = 0.0
    peak_mib: float | None = None


# ---------------------------------------------------------------------------------------------- inputs
def load_master(name: str, device: str) -> SeViLA:
    """The fp32 model every mode starts from."""
    if name in PRESETS:
        torch.manual_seed(0)
        config = SeViLAConfig.preset(name)
        with torch.device(device):
            model = SeViLA(config, tokenizer=tiny_tokenizer())
            with torch.no_grad():
                for param in model.parameters():  # non-trivial values everywhere (LayerNorms 1/0, biases 0)
                    param.add_(torch.randn_like(param) * 0.02)
        return model.eval()
    from sevila.loading import load_model

    return load_model(name, device=device, precision=Precision.fp32())


def synthetic_items(model: SeViLA, videos: int) -> list[Item]:
    """Smooth random frames (a coarse noise field upsampled, plus a per-frame level), one question each."""
    config = model.config
    size, frames = config.vision.image_size, config.num_frames
    generator = torch.Generator().manual_seed(1)
    items = []
    for v in range(videos):
        coarse = torch.randn(frames, 3, 8, 8, generator=generator)
        levels = torch.linspace(-1.5, 1.5, frames)[torch.randperm(frames, generator=generator)]
        pixels = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        pixels = pixels + levels.view(frames, 1, 1, 1)
        options = OPTIONS[: 2 + v % 4]
        question = f"{QUESTION} {v}"
        items.append(
            Item(
                pixels[None], prompts.qa_prompt(question, options), prompts.loc_prompt(question, options), len(options)
            )
        )
    return items


def video_items(model: SeViLA, videos: list[Path], questions: list[tuple[str, list[str]]]) -> list[Item]:
    from sevila.video import load_video, normalize

    config = model.config
    items = []
    for path in videos:
        clip = load_video(path, config.num_frames, "uniform", None, image_size=config.vision.image_size)
        frames = normalize(clip.frames, config.image_mean, config.image_std)[None]
        for question, options in questions:
            items.append(
                Item(frames, prompts.qa_prompt(question, options), prompts.loc_prompt(question, options), len(options))
            )
    return items


def items_for(name: str, model: SeViLA, args) -> list[Item]:
    if args.video:
        questions = [(args.question or QUESTION, args.option or OPTIONS[:4])]
        return video_items(model, [Path(v) for v in args.video], questions)
    if name == "demo":
        from sevila.hub import DEMO_DIR

        example = json.loads((DEMO_DIR / "example.json").read_text())
        questions = [(example["question"], example["options"]), *DEMO_QUESTIONS]
        return video_items(model, [DEMO_DIR / example["video"]], questions)
    return synthetic_items(model, args.videos)


# ---------------------------------------------------------------------------------------------- running
def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def run_mode(master: SeViLA, mode: str, items: list[Item], device: str, repeats: int) -> ModeRun:
    precision = Precision.named(mode, device)
    cuda = torch.device(device).type == "cuda"
    if cuda:
        torch.cuda.empty_cache()
        resident = torch.cuda.memory_allocated()  # the fp32 master and anything else already there
    model = copy.deepcopy(master).apply_precision(precision).eval()
    if cuda:  # count from here: the fp32 copy made the cast above is gone
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    run = ModeRun(mode, precision.describe())
    vision_times, scoring_times = [], []
    with torch.no_grad():
        for index, item in enumerate(items):
            frames = item.frames.to(device)
            k = min(model.config.num_keyframes, frames.shape[1])
            if index == 0:  # warm-up (kernels, allocator)
                model.predict(
                    model.encode_frames(frames), [item.qa_prompt], item.num_options, [item.loc_prompt], num_keyframes=k
                )
            per_vision, per_scoring = [], []
            for _ in range(repeats):
                sync(device)
                start = time.perf_counter()
                features = model.encode_frames(frames)
                sync(device)
                middle = time.perf_counter()
                out = model.predict(features, [item.qa_prompt], item.num_options, [item.loc_prompt], num_keyframes=k)
                sync(device)
                per_vision.append(middle - start)
                per_scoring.append(time.perf_counter() - middle)
            vision_times.append(statistics.median(per_vision))
            scoring_times.append(statistics.median(per_scoring))
            run.frame_scores.append(out.frame_scores[0].float().cpu())
            run.keyframes.append(out.keyframes[0].tolist())
            run.predictions.append(int(out.prediction[0]))
            run.first_tokens.append(int(out.first_token[0]))
            run.option_scores.append(out.option_scores[0].float().cpu())
    run.vision_ms = 1e3 * statistics.mean(vision_times)
    run.scoring_ms = 1e3 * statistics.mean(scoring_times)
    if cuda:
        run.peak_mib = (torch.cuda.max_memory_allocated() - resident) / 2**20
    del model
    gc.collect()
    return run


def relative_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> tuple[float, float]:
    """(max over items of max|a-b| / range(b), max |a-b|)."""
    fractions, absolute = [], []
    for x, y in zip(a, b):
        diff = (x - y).abs().max().item()
        span = (y.max() - y.min()).item()
        fractions.append(diff / span if span > 0 else float("inf") if diff > 0 else 0.0)
        absolute.append(diff)
    return max(fractions), max(absolute)


def compare(runs: list[ModeRun]) -> list[dict]:
    base = runs[0]
    rows = []
    for run in runs:
        frame_frac, frame_abs = relative_diff(run.frame_scores, base.frame_scores)
        option_frac, option_abs = relative_diff(run.option_scores, base.option_scores)
        rows.append(
            {
                "mode": run.mode,
                "precision": run.describe,
                "frame_scores_max_diff_over_range": frame_frac,
                "frame_scores_max_abs_diff": frame_abs,
                "keyframes_same": sum(a == b for a, b in zip(run.keyframes, base.keyframes)),
                "answers_same": sum(a == b for a, b in zip(run.predictions, base.predictions)),
                "first_tokens_same": sum(a == b for a, b in zip(run.first_tokens, base.first_tokens)),
                "option_scores_max_diff_over_range": option_frac,
                "option_scores_max_abs_diff": option_abs,
                "questions": len(run.predictions),
                "vision_ms_per_question": run.vision_ms,
                "scoring_ms_per_question": run.scoring_ms,
                "peak_cuda_mib": run.peak_mib,
            }
        )
    return rows


def print_table(name: str, rows: list[dict], baseline: str) -> None:
    n = rows[0]["questions"]
    print(f"\n{name}: {n} questions, compared with {baseline}")
    header = (
        f"{'mode':10s} {'frame Δ/range':>13s} {'frame |Δ|':>9s} {'keyframes':>9s} {'answers':>7s} "
        f"{'1st token':>9s} {'option Δ/range':>14s} {'option |Δ|':>10s} "
        f"{'ViT+QF ms/q':>11s} {'T5 ms/q':>8s} {'peak MiB':>8s}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        peak = f"{r['peak_cuda_mib']:8.0f}" if r["peak_cuda_mib"] is not None else f"{'-':>8s}"
        print(
            f"{r['mode']:10s} {r['frame_scores_max_diff_over_range']:13.2%} {r['frame_scores_max_abs_diff']:9.4f} "
            f"{r['keyframes_same']:>4d}/{n:<4d} {r['answers_same']:>3d}/{n:<3d} "
            f"{r['first_tokens_same']:>4d}/{n:<4d} "
            f"{r['option_scores_max_diff_over_range']:14.2%} {r['option_scores_max_abs_diff']:10.4f} "
            f"{r['vision_ms_per_question']:11.1f} {r['scoring_ms_per_question']:8.1f} {peak}"
        )
    for r in rows:
        print(f"  {r['precision']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--model",
        action="append",
        help="preset (mid, paper, tiny: random weights), 'demo', or a model directory / hub id; "
        "repeat for several (default: mid and demo)",
    )
    parser.add_argument(
        "--modes",
        default=None,
        help=f"comma-separated, the first is the baseline (default: fp32,bf16,reference on CUDA, "
        f"fp32,bf16 on CPU); from {','.join(MODES)}",
    )
    parser.add_argument(
        "--videos", type=int, default=None, help="synthetic videos per preset (default 8 on CUDA, 2 on CPU)"
    )
    parser.add_argument("--video", action="append", help="a video file to use instead (repeat)")
    parser.add_argument("--question", help="the question about --video files")
    parser.add_argument("--option", action="append", help="an option for --question (repeat)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)

    cuda = torch.device(args.device).type == "cuda"
    modes = (args.modes or ("fp32,bf16,reference" if cuda else "fp32,bf16")).split(",")
    for mode in modes:
        Precision.named(mode, args.device)  # a bad name fails before any work
    args.videos = args.videos or (8 if cuda else 2)
    names = args.model or ["mid", "demo"]
    print(
        f"device {args.device}"
        + (f" ({torch.cuda.get_device_name(torch.device(args.device))})" if cuda else "")
        + f", torch {torch.__version__}, {torch.get_num_threads()} threads, modes {', '.join(modes)}"
    )
    report = {}
    for name in names:
        start = time.perf_counter()
        master = load_master(name, args.device)
        items = items_for(name, master, args)
        runs = [run_mode(master, mode, items, args.device, args.repeats) for mode in modes]
        rows = compare(runs)
        params = sum(p.numel() for p in master.parameters()) / 1e6
        print_table(f"{name} ({params:.1f} M params, {time.perf_counter() - start:.0f} s)", rows, modes[0])
        report[name] = rows
        del master
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()
    if args.json:
        args.json.write_text(
            json.dumps({"device": args.device, "torch": torch.__version__, "models": report}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
