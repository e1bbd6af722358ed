"""Pre-training the toy model's backbone (ViT, one Q-Former, T5) on single frames of the synthetic world.

This plays the part of BLIP-2's pre-training: afterwards the ViT and T5 are frozen, and the Q-Former is
copied into both SeViLA branches (the paper's initialisation), exactly as with the real checkpoints.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from tqdm.auto import tqdm

from sevila.demo.frame_tasks import YES_NO, sample_tasks
from sevila.model import SeViLA, scoring
from sevila.synth.render import render
from sevila.synth.world import Scene
from sevila.video import normalize

logger = logging.getLogger(__name__)


def render_all(scenes: list[Scene]) -> np.ndarray:
    return np.stack([render(scene) for scene in scenes])


def _frame_inputs(model: SeViLA, pixels: np.ndarray, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """One T5 input row per (frame, prompt), through the answerer branch."""
    images = normalize(pixels, model.config.image_mean, model.config.image_std)
    tokens = model.answerer(model.encode_vision(images))[:, None]  # (batch, 1 frame, Q, D)
    return model.frame_level_inputs(tokens, prompts)


def copy_answerer_to_localizer(model: SeViLA) -> None:
    """Both branches start as the same pre-trained Q-Former (with its LayerNorm, queries and projection)."""
    model.localizer.load_state_dict(model.answerer.state_dict())


def pretrain_backbone(
    model: SeViLA,
    scenes: list[Scene],
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 5e-4,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """Train the ViT, the answerer branch and T5 on single-frame tasks; returns the loss per step.

    Frames are rendered (not compressed) with mild noise, so the model does not rely on exact pixel values.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    frames = render_all(scenes)
    model.train()
    model.vision.train()  # unlike in SeViLA's stages, the ViT learns here
    for module in (model.vision, model.answerer, model.language_model):
        module.requires_grad_(True)
    model.localizer.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    examples = sample_tasks(scenes, frames, steps * batch_size, rng)
    losses = []
    for step in tqdm(range(steps), desc="backbone", disable=not progress or None):
        batch = [next(examples) for _ in range(batch_size)]
        pixels = np.stack([frame for frame, _ in batch]).astype(np.float32)
        pixels = np.clip(pixels + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)
        embeds, mask = _frame_inputs(model, pixels, [task.prompt for _, task in batch])
        labels, decoder_mask = model.text.labels([task.target for _, task in batch])
        loss = scoring.sequence_loss(model.language_model, embeds, mask, labels, decoder_mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            logger.info("backbone step %d/%d: loss %.3f", step + 1, steps, sum(losses[-100:]) / 100)
    model.eval()
    model.set_trainable(("answerer", "localizer"))  # back to SeViLA's rule: ViT and T5 frozen
    copy_answerer_to_localizer(model)
    return losses


@torch.no_grad()
def frame_task_accuracy(model: SeViLA, scenes: list[Scene], count: int = 400, seed: int = 1) -> dict[str, float]:
    """Accuracy (%) on ``count`` closed single-frame tasks of ``scenes`` (captions skipped), by kind.

    Each choice is scored by its teacher-forced log-likelihood; the most likely one is the answer. This is
    the check that the backbone grounds what it says in what it sees before SeViLA's stages build on it.
    """
    model.eval()
    frames = render_all(scenes)
    hits: dict[str, list[bool]] = {"multiple choice": [], "yes/no": []}
    for frame, task in sample_tasks(scenes, frames, count, np.random.default_rng(seed)):
        if not task.choices:
            continue
        embeds, mask = _frame_inputs(model, frame[None], [task.prompt])
        rows = len(task.choices)
        labels, _ = model.text.labels(list(task.choices))
        logits = model.language_model(
            inputs_embeds=embeds.expand(rows, -1, -1), attention_mask=mask.expand(rows, -1), labels=labels
        ).logits
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
        best = task.choices[int(nll.sum(1).argmin())]
        hits["yes/no" if task.choices == YES_NO else "multiple choice"].append(best == task.target)
    return {kind: 100.0 * sum(v) / len(v) for kind, v in hits.items() if v}
