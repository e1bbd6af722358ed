"""AdamW with the original's two parameter groups, and its ``linear_warmup_cosine_lr`` schedule.

Parameter groups. The original (LAVIS ``runner_base``) decays a trainable parameter when ``ndim >= 2`` and
its name contains none of ``bias``, ``ln``, ``bn``; everything else gets no weight decay. On the original's
names that means: every weight matrix and ``query_tokens`` (1, 32, 768) decay; biases, every LayerNorm
(1-D, and ``ln_vision*`` also by name) do not. Our names differ (`sevila.convert.lavis` maps them): the
LayerNorms are ``layernorm`` / ``LayerNorm`` and none contains ``ln``, so the substring rule would be
meaningless here. We keep the rule's meaning instead — decay iff ``ndim >= 2`` and the name marks no bias
or norm (``bias``, ``layernorm``, ``LayerNorm``) — which puts exactly the same tensors in each group as the
original (tested against the original's names through the checkpoint key map).

Schedule (the original's, per data iteration in LAVIS; see `WarmupCosineSchedule` for ours): epoch 0 warms
up linearly from ``warmup_lr`` to ``lr`` over ``warmup_steps`` and then stays at ``lr`` for the rest of the
epoch (an epoch shorter than the warmup never finishes it); epoch ``e >= 1`` is constant at
``min_lr + (lr - min_lr) * (1 + cos(pi * e / epochs)) / 2``.

Where our optimisation differs from the original, and why:

1. Warmup counts optimizer steps by default (``optim.warmup_unit: optimizer_steps``); the original counts
   data iterations, so under accumulation its warmup ends after ``warmup_steps / accumulation`` updates.
   ``warmup_unit: iterations`` reproduces it exactly (the NExT-QA fine-tuning config uses it).
2. The lr is set once per optimizer step; the original sets it before every iteration, but only the value
   set before an update's last micro-batch is ever used, which is what ``iterations`` computes.
3. Micro-batch losses are divided by the accumulation count (``optim.scale_loss_by_accumulation``); the
   original sums them. AdamW is invariant to that constant factor except through ``eps``.
4. An epoch is a whole number of optimizer steps: the trailing micro-batches that cannot fill one are
   dropped; the original carries their gradient into the next epoch's first update. This keeps epoch
   boundaries clean for checkpoints and makes the data order independent of the previous epoch.
5. The optimizer holds only the trained branch; the original also held the frozen branch's projection and
   vision LayerNorm (its ``requires_grad`` bug), which never received gradients — same updates.
6. bf16 autocast without a GradScaler instead of fp16 autocast with one (see `sevila.train.loop`).
7. Optional gradient clipping (``optim.max_grad_norm``, off by default as in the original).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from sevila.train.config import OptimConfig

NO_DECAY_MARKERS = ("bias", "layernorm", "LayerNorm")


def decays(name: str, param: torch.Tensor) -> bool:
    """Whether a trainable parameter gets weight decay (the original's rule on our names; module docstring)."""
    return param.ndim >= 2 and not any(marker in name for marker in NO_DECAY_MARKERS)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """The trainable parameters (``requires_grad``) in two AdamW groups: decayed and not decayed.

    Each group also carries the parameter names (``names``) so a checkpoint can be checked against them.
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (decay if decays(name, param) else no_decay).append((name, param))
    return [
        {"params": [p for _, p in decay], "names": [n for n, _ in decay], "weight_decay": weight_decay},
        {"params": [p for _, p in no_decay], "names": [n for n, _ in no_decay], "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over the model's trainable parameters only (frozen parts never reach the optimizer)."""
    groups = [g for g in param_groups(model, config.weight_decay) if g["params"]]
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)


@dataclass
class WarmupCosineSchedule:
    """The original's ``linear_warmup_cosine_lr``, evaluated once per optimizer step.

    ``lr_at(epoch, step)`` is the learning rate of optimizer step ``step`` (0-based, within ``epoch``). With
    ``warmup_unit="optimizer_steps"`` warmup counts optimizer steps; with ``"iterations"`` it counts data
    iterations as the original, whose lr at an optimizer step is the one it set before that step's last
    micro-batch (iteration ``(step + 1) * accumulation - 1``). Without accumulation both are the same.

    The schedule is a pure function of the position, so its state is that position; `state_dict` holds the
    hyper-parameters too, so a resumed run can tell that its schedule changed.
    """

    lr: float
    min_lr: float
    warmup_lr: float
    warmup_steps: int
    epochs: int
    accumulation: int = 1
    warmup_unit: Literal["optimizer_steps", "iterations"] = "optimizer_steps"
    last_lr: float | None = None

    @classmethod
    def from_config(cls, config: OptimConfig, epochs: int, accumulation: int) -> WarmupCosineSchedule:
        return cls(
            config.lr, config.min_lr, config.warmup_lr, config.warmup_steps, epochs, accumulation, config.warmup_unit
        )

    def lr_at(self, epoch: int, step: int) -> float:
        if epoch == 0:
            progress = step if self.warmup_unit == "optimizer_steps" else (step + 1) * self.accumulation - 1
            return min(self.lr, self.warmup_lr + (self.lr - self.warmup_lr) * progress / max(self.warmup_steps, 1))
        return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * epoch / self.epochs))

    def apply(self, optimizer: torch.optim.Optimizer, epoch: int, step: int) -> float:
        """Set every group's lr for the coming optimizer step; returns it."""
        lr = self.lr_at(epoch, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.last_lr = lr
        return lr

    def state_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def load_state_dict(self, state: dict[str, Any]) -> list[str]:
        """Take the saved position; returns the hyper-parameters that differ from the saved ones (a resumed
        run may legitimately change e.g. ``epochs``, which reshapes the cosine from the next epoch on)."""
        self.last_lr = state.get("last_lr")
        return [k for k, v in state.items() if k != "last_lr" and getattr(self, k, v) != v]


__all__ = ["NO_DECAY_MARKERS", "WarmupCosineSchedule", "build_optimizer", "decays", "param_groups"]
