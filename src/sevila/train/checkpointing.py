"""Resumable training checkpoints and the best model, written so that a crash never leaves a torn one.

A run directory holds:

* ``checkpoint/`` — what resuming needs: ``trainable.safetensors`` (the trained branch only; the frozen
  parts come again from the run's starting model), ``optimizer.pt`` (AdamW moments and step counts),
  ``state.json`` (the data position — epoch, optimizer step within the epoch, global step — the sampler's
  permutation seed, the schedule's state, best-so-far, counters, and the facts a resumed run must share)
  and ``rng-<rank>.pt`` per process (python, numpy, torch CPU and CUDA generator states). There is no
  GradScaler state because fp16 is never used (bf16 needs no loss scaling). Written only at optimizer-step
  boundaries, so no partial gradient accumulation is ever lost.
* ``best/`` — a complete model directory (`SeViLA.save_pretrained`): ``SeViLA.from_pretrained(run_dir /
  "best")`` loads it. For the paper's model that is ~8.5 GB per run (ViT-g and Flan-T5-XL in bf16, the
  Q-Formers in fp32) against ~1.3 GB for the resume checkpoint (one 107M-parameter branch plus two Adam
  moments). Saving only the branch with a reference to its base would need `from_pretrained` to follow
  such a reference; it does not, so the best model is written whole.

Directories are replaced atomically enough to survive a kill at any moment: the new one is written under
``<name>.tmp``, renamed to ``<name>.new`` once complete, then ``<name>`` → ``<name>.old``,
``<name>.new`` → ``<name>``, and ``<name>.old`` is deleted. `recover_dir` finishes an interrupted swap.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from sevila.utils.io import atomic_write, atomic_write_text

TRAINABLE_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
STATE_NAME = "state.json"
CHECKPOINT_DIR = "checkpoint"
BEST_DIR = "best"


@dataclass
class Progress:
    """Where a run is and what it has seen; everything a resumed run needs besides tensors."""

    epoch: int = 0  # current epoch (the next one to run after an epoch-end checkpoint)
    step_in_epoch: int = 0  # optimizer steps done within `epoch`
    global_step: int = 0  # optimizer steps done in total
    best_metric: float | None = None
    best_epoch: int | None = None
    skipped_batches: int = 0  # batches whose every video failed to load
    pending_loss: list[float] = field(default_factory=lambda: [0.0, 0.0])  # loss sum, batches since the last log
    metrics_lines: int = 0  # lines of metrics.jsonl written up to this point
    schedule: dict[str, Any] = field(default_factory=dict)
    # Facts a resumed run must share (it refuses otherwise): the data order depends on all of them.
    run: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------- directories
def _sibling(target: Path, suffix: str) -> Path:
    return target.with_name(target.name + suffix)


def fresh_tmp_dir(target: Path) -> Path:
    """An empty ``<target>.tmp`` (a stale one from a crash is removed)."""
    tmp = _sibling(target, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_dir(tmp: Path, target: Path) -> None:
    """Put the completed ``tmp`` directory in place of ``target`` (see the module docstring)."""
    new, old = _sibling(target, ".new"), _sibling(target, ".old")
    shutil.rmtree(new, ignore_errors=True)
    os.replace(tmp, new)
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_dir(target: Path) -> None:
    """Finish a swap a crash interrupted: a complete ``.new`` wins over ``.old``; a ``.tmp`` is never used."""
    new, old = _sibling(target, ".new"), _sibling(target, ".old")
    if not target.exists():
        for candidate in (new, old):
            if candidate.exists():
                os.replace(candidate, target)
                break
    shutil.rmtree(new, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)


def link_or_copy_tree(source: Path, target: Path) -> None:
    """Make ``target`` a copy of the model directory ``source`` (hard links where the filesystem allows:
    files are only ever replaced, never modified in place), atomically as above."""
    tmp = _sibling(target, ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, tmp, copy_function=link)
    commit_dir(tmp, target)


# ---------------------------------------------------------------------------------------------- tensors
def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in model.named_parameters() if p.requires_grad}


def save_trainable(model: nn.Module, path: Path) -> None:
    tensors = trainable_state(model)
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))


def load_trainable(model: nn.Module, path: Path) -> None:
    """Copy the saved branch into ``model``; the saved and the trainable names must agree exactly."""
    tensors = load_file(str(path))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if set(tensors) != set(params):
        missing, extra = sorted(set(params) - set(tensors)), sorted(set(tensors) - set(params))
        raise ValueError(
            f"{path}: holds other weights than this stage trains (missing {missing[:3]}, unexpected {extra[:3]})"
        )
    with torch.no_grad():
        for name, param in params.items():
            param.copy_(tensors[name])


def rng_state() -> dict[str, Any]:
    """Every global generator a training step may draw from (dropout, augmentation, shuffling)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": pos,
            "has_gauss": has_gauss,
            "gauss": gauss,
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------------- checkpoint
def write_checkpoint_files(
    directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, progress: Progress
) -> None:
    """The process-independent part (written by the main process only)."""
    save_trainable(model, directory / TRAINABLE_NAME)
    atomic_write(directory / OPTIMIZER_NAME, lambda tmp: torch.save(optimizer.state_dict(), tmp))
    atomic_write_text(directory / STATE_NAME, json.dumps(asdict(progress), indent=2, sort_keys=True) + "\n")


def write_rng(directory: Path, rank: int) -> None:
    state = rng_state()
    atomic_write(directory / f"rng-{rank}.pt", lambda tmp: torch.save(state, tmp))


def read_progress(directory: Path) -> Progress:
    path = directory / STATE_NAME
    if not path.is_file():
        raise FileNotFoundError(f"not a training checkpoint (no {STATE_NAME}): {directory}")
    return Progress(**json.loads(path.read_text(encoding="utf-8")))


def restore(directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, rank: int) -> Progress:
    """Load weights, optimizer and this process's generators from a checkpoint; returns its progress."""
    progress = read_progress(directory)
    load_trainable(model, directory / TRAINABLE_NAME)
    optimizer.load_state_dict(torch.load(directory / OPTIMIZER_NAME, map_location="cpu", weights_only=True))
    rng_file = directory / f"rng-{rank}.pt"
    if not rng_file.is_file():
        raise FileNotFoundError(f"{directory}: no generator states for process {rank} ({rng_file.name})")
    set_rng_state(torch.load(rng_file, weights_only=True))
    return progress


def check_same_run(saved: dict[str, Any], current: dict[str, Any], directory: Path) -> None:
    """A resumed run must keep what decides its data order and step arithmetic."""
    for key, value in current.items():
        if key in saved and saved[key] != value:
            raise ValueError(
                f"cannot resume from {directory}: it was written with {key}={saved[key]!r}, this run has {value!r}"
            )


__all__ = [
    "BEST_DIR",
    "CHECKPOINT_DIR",
    "Progress",
    "check_same_run",
    "commit_dir",
    "fresh_tmp_dir",
    "link_or_copy_tree",
    "load_trainable",
    "read_progress",
    "recover_dir",
    "restore",
    "rng_state",
    "save_trainable",
    "set_rng_state",
    "write_checkpoint_files",
    "write_rng",
]
