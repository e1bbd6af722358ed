"""Pre-training the toy ViT alone to read what a frame shows: the stand-in for EVA-CLIP's image pre-training.

BLIP-2's image encoder arrives already able to see. A toy ViT trained only through the Q-Former and T5 learns
colours but hardly shapes, counts or directions, because those signals reach it only through a few words of a
caption or an option letter; binary look tags taught it little more (docs/demo.md, "What it took" (c), (e)). So the
ViT learns each fact the questions need as its own classification: the colour and the shape of the coloured object,
the number of white shapes and the direction of a moving shape, each read by a learned query attending over the
ViT's tokens and a linear layer (the probes, thrown away afterwards), on frames of ever new scenes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from sevila.model import SeViLA
from sevila.video import normalize
from sevila_toy.demo.backbone import render_all, with_noise
from sevila_toy.demo.frame_tasks import pick_frames, visible_objects
from sevila_toy.synth.generate import plan_world
from sevila_toy.synth.world import COLOURS, DIRECTIONS, SHAPES, Scene

logger = logging.getLogger(__name__)

NONE = "none"
FACTS: dict[str, tuple] = {
    "colour": (NONE, *COLOURS),
    "shape": (NONE, *SHAPES),
    "white shapes": (0, 1, 2, 3, 4, 5),
    "direction": tuple(DIRECTIONS),
}
"""What the ViT learns to read from one frame, and each fact's classes. Colour and shape are those of the frame's
coloured (named-colour, not white) object; "direction" is that of a moving shape, asked only of frames that have
one (nine frames in ten have no moving shape, so with a "none" class among them "none" is all a ViT learns)."""
ABSENT = (NONE, 0)
"""The classes that say a fact is not there (no coloured object, no white shape)."""
VISION_WORLD_SEED = 30_000
"""Worlds drawn for the ViT's pre-training are planned from this seed on, apart from every other world's."""
UNKNOWN = -100
"""A fact a frame does not settle (colour and shape where two coloured objects show, direction where nothing moves):
left out of the loss."""


def frame_facts(scene: Scene, frame: int) -> dict[str, int]:
    """Each of `FACTS` for ``frame`` of ``scene``, as a class index (or `UNKNOWN`)."""
    objects = visible_objects(scene, frame)
    coloured = [o for o in objects if o.colour != "white"]
    moving = [o.direction for o in objects if o.direction is not None]
    whites = min(sum(o.colour == "white" for o in objects), FACTS["white shapes"][-1])
    facts = {
        "white shapes": FACTS["white shapes"].index(whites),
        "direction": FACTS["direction"].index(moving[0]) if moving else UNKNOWN,
    }
    if len(coloured) > 1:
        facts |= {"colour": UNKNOWN, "shape": UNKNOWN}
    else:
        facts |= {
            "colour": FACTS["colour"].index(coloured[0].colour if coloured else NONE),
            "shape": FACTS["shape"].index(coloured[0].shape if coloured else NONE),
        }
    return facts


class _Probes(torch.nn.Module):
    """Per fact, one learned query attending over the ViT's tokens and a linear read-out of what it gathers.

    Attention rather than the mean token, because the Q-Former that later reads the ViT attends too (and a 13-pixel
    object is a few of 64 patches, among grey background shapes that have shapes as well).
    """

    def __init__(self, width: int):
        super().__init__()
        self.queries = torch.nn.Parameter(torch.randn(len(FACTS), width) * width**-0.5)
        self.heads = torch.nn.ModuleDict(
            {_key(name): torch.nn.Linear(width, len(classes)) for name, classes in FACTS.items()}
        )

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        weights = torch.softmax(torch.einsum("fd,btd->bft", self.queries, tokens) * tokens.shape[-1] ** -0.5, -1)
        gathered = torch.einsum("bft,btd->bfd", weights, tokens)
        return {name: self.heads[_key(name)](gathered[:, i]) for i, name in enumerate(FACTS)}


def _key(name: str) -> str:
    return name.replace(" ", "_")  # ModuleDict keys cannot hold spaces


def _loss(logits: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed cross-entropy of the facts; a fact no frame of the batch settles adds nothing (its mean over no
    frames would be NaN)."""
    return sum(
        torch.nn.functional.cross_entropy(logits[n], targets[n], ignore_index=UNKNOWN)
        for n in FACTS
        if (targets[n] != UNKNOWN).any()
    )


def _batch(
    model: SeViLA, scenes: list[Scene], frames: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    scene_ids = [int(rng.integers(len(scenes))) for _ in range(size)]
    chosen = [(i, pick_frames(scenes[i], frames.shape[1], 1, rng)[0]) for i in scene_ids]
    pixels = with_noise(np.stack([frames[i, f] for i, f in chosen]), rng)
    facts = [frame_facts(scenes[i], f) for i, f in chosen]
    targets = {name: torch.tensor([f[name] for f in facts]) for name in FACTS}
    return normalize(pixels, model.config.image_mean, model.config.image_std), targets


def pretrain_vision(
    model: SeViLA,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 5e-4,
    seed: int = 0,
    progress: bool = True,
    scenes_per_draw: int = 300,
    steps_per_draw: int = 100,
    held_out: tuple[Sequence[Scene], np.ndarray] | None = None,
    check_frames: int = 512,
) -> tuple[list[float], dict[str, float]]:
    """Train ``model.vision`` to read `FACTS` from frames of scenes it draws itself: ``scenes_per_draw`` new
    scenes every ``steps_per_draw`` steps. Fresh scenes, not a fixed set: on a fixed set (a thousand or so
    coloured objects) the ViT learns those objects rather than what shapes look like (docs/demo.md, "What it
    took" (e)).

    Returns the summed loss per step and, per fact, the probes' accuracy (%) on ``check_frames`` frames of
    ``held_out`` (scenes and their rendered frames; a last fresh draw when None), counting only frames where the
    fact is present (a coloured object, white shapes, a moving shape)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    vision = model.vision
    vision.train()
    vision.requires_grad_(True)
    probes = _Probes(vision.config.hidden_size)
    params = [*vision.parameters(), *probes.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    def draw(index: int) -> tuple[list[Scene], np.ndarray]:
        scenes = [v.scene for v in plan_world(scenes_per_draw, seed=VISION_WORLD_SEED + 1000 * seed + index)]
        return scenes, render_all(scenes)

    losses = []
    for step in tqdm(range(steps), desc="vision", disable=not progress or None):
        if step % steps_per_draw == 0:
            scenes, frames = draw(step // steps_per_draw)
        pixels, targets = _batch(model, scenes, frames, batch_size, rng)
        logits = probes(vision(pixel_values=pixels).last_hidden_state)
        loss = _loss(logits, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            logger.info("vision step %d/%d: loss %.4f", step + 1, steps, sum(losses[-100:]) / 100)
    vision.eval()
    check_scenes, check_pixels = held_out if held_out is not None else draw(-1)
    return losses, _probe_accuracy(model, probes, list(check_scenes), check_pixels, check_frames, seed + 1)


@torch.no_grad()
def _probe_accuracy(
    model: SeViLA, probes: _Probes, scenes: list[Scene], frames: np.ndarray, count: int, seed: int
) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    right = {name: 0 for name in FACTS}
    seen = {name: 0 for name in FACTS}
    absent = {name: torch.tensor([c in ABSENT for c in classes]) for name, classes in FACTS.items()}
    for start in range(0, count, 64):
        pixels, targets = _batch(model, scenes, frames, min(64, count - start), rng)
        logits = probes(model.vision(pixel_values=pixels).last_hidden_state)
        for name in FACTS:
            known = targets[name] != UNKNOWN
            present = known & ~absent[name][targets[name].clamp(min=0)]
            right[name] += int((logits[name].argmax(1) == targets[name])[present].sum())
            seen[name] += int(present.sum())
    return {name: 100.0 * right[name] / max(seen[name], 1) for name in FACTS}
