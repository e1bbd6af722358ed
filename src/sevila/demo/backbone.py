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

from sevila.demo.frame_tasks import sample_tasks
from sevila.model import SeViLA, scoring
from sevila.synth.render import render
from sevila.synth.world import Scene
from sevila.video import normalize

logger = logging.getLogger(__name__)


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
    frames = np.stack([render(scene) for scene in scenes])
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
        images = normalize(pixels, model.config.image_mean, model.config.image_std)
        tokens = model.answerer(model.encode_vision(images))[:, None]  # (batch, 1 frame, Q, D)
        embeds, mask = model.frame_level_inputs(tokens, [task.prompt for _, task in batch])
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
