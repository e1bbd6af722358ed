"""Training with cached ViT states (`cache_vision_states`) vs. encoding every frame every step.

Measured in one run, on the same synthetic world and the same starting model: answerer fine-tuning on the
localizer's keyframes (32 frames a video, as the demo build), whole frames (``data.augment: false``) in both
runs, once encoding every frame through the frozen ViT at every step and once keeping each distinct frame's
ViT output. Prints the wall time of each, the ratio, and how far the two runs' losses are apart.

Usage: python -m benchmarks.bench_training_vision_cache [--videos 40] [--epochs 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from sevila.model import SeViLA
from sevila.train import train
from sevila.train.config import config_from_dict
from sevila.train.logs import read_metrics
from sevila_toy.demo.build import Settings, _stage_config, toy_tokenizer
from sevila_toy.preset import toy_config
from sevila_toy.synth import synthesize


def run(model: Path, data: Path, out: Path, epochs: int, cached: bool) -> tuple[float, list[float]]:
    """The build's answerer fine-tuning config (`sevila_toy.demo.build`), with the ViT cache on or off."""
    config = _stage_config(
        "finetune-answerer",
        str(model),
        out,
        data,
        Settings(),
        seed=0,
        epochs=epochs,
        lr=1e-4,
        train_frames=32,
        eval_frames=32,
    )
    config["cache_vision_states"] = cached
    config = config_from_dict(config)
    began = time.perf_counter()
    train(config)
    seconds = time.perf_counter() - began
    return seconds, [m["loss"] for m in read_metrics(out) if "loss" in m]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        synthesize(root / "data", args.videos, seed=0)
        torch.manual_seed(0)
        SeViLA(toy_config(), tokenizer=toy_tokenizer()).save_pretrained(root / "model")
        plain, plain_losses = run(root / "model", root / "data", root / "plain", args.epochs, cached=False)
        cached, cached_losses = run(root / "model", root / "data", root / "cached", args.epochs, cached=True)
    gap = max(abs(a - b) for a, b in zip(plain_losses, cached_losses, strict=True))
    print(
        f"answerer fine-tuning, toy model, {args.videos} videos, {args.epochs} epochs, 32 frames a video, "
        f"{args.threads} threads"
    )
    print(f"  every frame encoded every step: {plain:7.1f} s")
    print(f"  cached ViT states:              {cached:7.1f} s  ({plain / cached:.2f}x faster)")
    print(f"  largest difference between the two runs' logged losses: {gap:.2e}")


if __name__ == "__main__":
    main()
