"""Helpers for the training tests: tiny videos, records, a tiny model directory, configs, one thread."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from sevila.config import SeViLAConfig
from sevila.data import MomentRecord, QARecord, write_records
from sevila.train.config import config_from_dict
from sevila.video.encode import write_mp4
from tests.support.tiny import OPTIONS, QUESTION, tiny_model

FPS, FRAMES, SIZE = 8, 16, 32


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy 2-core machine OpenMP's spinning makes
    them ten times slower; import this fixture (it is autouse) into a test module to run it single-threaded."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


VIDEOS = ("v0", "v1", "v2", "v3")


def encode(path: Path, shade: int) -> None:
    """A short mp4 whose frames differ in grey level and in a moving bright square."""

    def frame(i: int) -> np.ndarray:
        image = np.full((SIZE, SIZE, 3), (shade + 12 * i) % 256, dtype=np.uint8)
        image[i : i + 8, i : i + 8] = 255
        return image

    write_mp4(path, (frame(i) for i in range(FRAMES)), FPS)


def make_videos(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(VIDEOS):
        encode(root / f"{name}.mp4", 40 * i)
    return root


def qa_records(count: int, prefix: str, options: int = 5) -> list[QARecord]:
    return [
        QARecord(
            qid=f"CW_{prefix}_{i}",
            video=VIDEOS[i % len(VIDEOS)],
            dataset="nextqa",
            question=QUESTION,
            options=OPTIONS[:options],
            answer=i % options,
            question_type="CW",
        )
        for i in range(count)
    ]


def moment_records(count: int, prefix: str) -> list[MomentRecord]:
    duration = FRAMES / FPS
    return [
        MomentRecord(
            qid=f"QVHighlight_{prefix}{i}",
            video=VIDEOS[i % len(VIDEOS)],
            query="a man walks his dog",
            duration=duration,
            relevant_windows=[[0.25 * (i % 3), 0.25 * (i % 3) + 0.8]],
        )
        for i in range(count)
    ]


def no_dropout_config() -> SeViLAConfig:
    config = SeViLAConfig.preset("tiny")
    config.qformer.hidden_dropout_prob = config.qformer.attention_probs_dropout_prob = 0.0
    config.language_model.dropout_rate = 0.0
    return config


def save_tiny_model(directory: Path, dropout: bool = True) -> Path:
    tiny_model(config=None if dropout else no_dropout_config()).save_pretrained(directory)
    return directory


def write_splits(root: Path, kind: str, train: int = 8, val: int = 3) -> tuple[Path, Path]:
    """Train and val JSONL records of a kind ("qa" or "moment") under root."""
    make = qa_records if kind == "qa" else moment_records
    paths = root / f"{kind}-train.jsonl", root / f"{kind}-val.jsonl"
    write_records(paths[0], make(train, "t"))
    write_records(paths[1], make(val, "v"))
    return paths


def train_world(root: Path, moments: bool = True) -> dict[str, Any]:
    """Videos, a saved tiny model and small QA (and moment) splits under ``root``: what a training test runs on."""
    world = {
        "root": root,
        "videos": make_videos(root / "videos"),
        "model": save_tiny_model(root / "model"),
        "qa": write_splits(root, "qa", train=4, val=2),
    }
    if moments:
        world["moment"] = write_splits(root, "moment", train=4, val=2)
    return world


def run_config(
    stage: str, model: Path, videos: Path, splits: tuple[Path, Path], output: Path, **overrides: Any
) -> dict[str, Any]:
    """A tiny run's config as a dict (nested keys for data/optim given as data__x / optim__x)."""
    config: dict[str, Any] = {
        "stage": stage,
        "model": str(model),
        "output_dir": str(output),
        "epochs": 2,
        "batch_size": 2,
        "eval_batch_size": 2,
        "num_keyframes": 2,
        "log_every_steps": 1,
        "checkpoint_every_steps": 0,
        "tensorboard": False,
        "data": {
            "train": str(splits[0]),
            "val": str(splits[1]),
            "video_root": str(videos),
            "train_frames": 4,
            "eval_frames": 4,
            "image_size": 56,
            "num_workers": 0,
        },
        "optim": {"lr": 1e-3, "warmup_steps": 2},
    }
    for key, value in overrides.items():
        section, _, name = key.partition("__")
        if name:
            config[section][name] = value
        else:
            config[key] = value
    return config


def tiny_run(stage: str, model: Path, videos: Path, splits: tuple[Path, Path], output: Path, **overrides: Any):
    return config_from_dict(run_config(stage, model, videos, splits, output, **overrides))
