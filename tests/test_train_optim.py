"""Parameter groups (the original's decay rule) and the warmup + cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from sevila.model.sevila import BRANCHES
from sevila.train.config import OptimConfig
from sevila.train.optim import WarmupCosineSchedule, build_optimizer, decays, param_groups
from tests.support.parity import lavis_to_ours
from tests.support.tiny import tiny_model


def original_decays(lavis_name: str, tensor: torch.Tensor) -> bool:
    """LAVIS runner_base: decay unless ndim < 2 or the name contains bias, ln or bn."""
    return not (tensor.ndim < 2 or "bias" in lavis_name or "ln" in lavis_name or "bn" in lavis_name)


@pytest.mark.parity
def test_decay_groups_equal_the_originals_on_its_own_names(parity):
    state = torch.load(parity.root / "weights.pth", map_location="cpu", weights_only=True)["model"]
    branch_keys = [k for k in state if not k.startswith(("visual_encoder.", "t5_model.")) and "position_ids" not in k]
    assert len(branch_keys) > 50
    for key in branch_keys:
        assert decays(lavis_to_ours(key), state[key]) == original_decays(key, state[key]), key


def test_groups_hold_only_the_trained_branch():
    model = tiny_model()
    model.set_trainable("localizer")
    decay, no_decay = param_groups(model, 0.05)
    assert (decay["weight_decay"], no_decay["weight_decay"]) == (0.05, 0.0)
    names = decay["names"] + no_decay["names"]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters() if n.startswith("localizer."))
    assert "localizer.query_tokens" in decay["names"]  # (1, Q, D): decayed, as in the original
    assert all("layernorm" in n or "LayerNorm" in n or n.endswith("bias") for n in no_decay["names"])
    optimizer = build_optimizer(model, OptimConfig(lr=1e-4))
    assert optimizer.defaults["betas"] == (0.9, 0.999)
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.localizer.parameters()}


def test_every_branch_parameter_is_grouped():
    model = tiny_model()
    model.set_trainable(BRANCHES)
    decay, no_decay = param_groups(model, 0.05)
    assert len(decay["params"]) + len(no_decay["params"]) == sum(1 for p in model.parameters() if p.requires_grad)


def test_schedule_warms_up_in_epoch_zero_then_follows_a_per_epoch_cosine():
    s = WarmupCosineSchedule(lr=1e-4, min_lr=0.0, warmup_lr=1e-8, warmup_steps=10, epochs=4)
    assert s.lr_at(0, 0) == pytest.approx(1e-8)
    assert s.lr_at(0, 5) == pytest.approx(1e-8 + (1e-4 - 1e-8) * 0.5)
    assert s.lr_at(0, 10) == s.lr_at(0, 500) == pytest.approx(1e-4)
    for epoch in (1, 2, 3):
        expected = 1e-4 * 0.5 * (1 + math.cos(math.pi * epoch / 4))
        assert s.lr_at(epoch, 0) == s.lr_at(epoch, 99) == pytest.approx(expected)


def test_iteration_warmup_counts_micro_batches_like_the_original():
    steps = WarmupCosineSchedule(1e-4, 0.0, 1e-8, 10, 2, accumulation=2)
    iterations = WarmupCosineSchedule(1e-4, 0.0, 1e-8, 10, 2, accumulation=2, warmup_unit="iterations")
    # Optimizer step 2 ends on micro-batch 5: the original set the lr of iteration 5 before it.
    assert iterations.lr_at(0, 2) == pytest.approx(steps.lr_at(0, 5))
    assert iterations.lr_at(0, 5) == pytest.approx(1e-4) and steps.lr_at(0, 5) < 1e-4


def test_apply_sets_every_group():
    model = tiny_model()
    model.set_trainable("answerer")
    optimizer = build_optimizer(model, OptimConfig(lr=1e-3))
    s = WarmupCosineSchedule(1e-3, 0.0, 1e-8, 4, 2)
    assert s.apply(optimizer, 0, 2) == pytest.approx(s.lr_at(0, 2))
    assert {g["lr"] for g in optimizer.param_groups} == {s.last_lr}
