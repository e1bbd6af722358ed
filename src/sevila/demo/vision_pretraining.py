"""Pre-training the toy ViT alone to tag what a frame shows: the stand-in for EVA-CLIP's image pre-training.

BLIP-2's image encoder arrives already able to see. A toy ViT trained only through the Q-Former and T5 did not
learn to: after thousands of frame-task steps it told colours apart but not shapes (as good as chance on "Is
there a red circle?" when a red square was there) and could not count, because those signals reach it only
through a few words of a caption or an option letter. Supervised directly, the same ViT learns shapes in a few
hundred steps. So before the frame tasks, the ViT and a linear probe over its mean token learn, per frame, which
looks (colour and shape) are present, which way a moving shape goes and how many white shapes there are. The
probe is then thrown away.
"""

from __future__ import annotations

import logging

import numpy as np
import torch
from tqdm.auto import tqdm

from sevila.demo.backbone import with_noise
from sevila.demo.frame_tasks import pick_frames, visible_objects
from sevila.model import SeViLA
from sevila.synth.world import COLOURS, COUNT_WORDS, DIRECTIONS, SHAPES, Scene
from sevila.video import normalize

logger = logging.getLogger(__name__)

LOOKS = tuple((colour, shape) for colour in (*COLOURS, "white") for shape in SHAPES)
WHITE_COUNTS = (0, 1, *COUNT_WORDS)
TAGS = len(LOOKS) + len(DIRECTIONS) + len(WHITE_COUNTS)
"""Binary tags per frame: each look present, each direction of a moving shape, each number of white shapes."""


def frame_tags(scene: Scene, frame: int) -> np.ndarray:
    """The `TAGS` binary tags (float 0/1) of ``frame`` of ``scene``."""
    objects = visible_objects(scene, frame)
    present = {(o.colour, o.shape) for o in objects}
    directions = {o.direction for o in objects}
    whites = sum(o.colour == "white" for o in objects)
    tags = [look in present for look in LOOKS] + [d in directions for d in DIRECTIONS]
    tags += [whites == n for n in WHITE_COUNTS]
    return np.array(tags, dtype=np.float32)


def pretrain_vision(
    model: SeViLA, scenes: list[Scene], frames: np.ndarray, steps: int = 1000, batch_size: int = 64,
    lr: float = 5e-4, seed: int = 0, progress: bool = True,
) -> tuple[list[float], float]:
    """Train ``model.vision`` to tag frames of ``scenes`` (rendered: ``frames[i]`` are those of ``scenes[i]``);
    returns the loss per step and the share (%) of frames whose every tag is right, on a last fresh batch."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    vision = model.vision
    vision.train()
    vision.requires_grad_(True)
    probe = torch.nn.Linear(vision.config.hidden_size, TAGS)
    params = [*vision.parameters(), *probe.parameters()]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        scene_ids = [int(rng.integers(len(scenes))) for _ in range(batch_size)]
        chosen = [(i, pick_frames(scenes[i], frames.shape[1], 1, rng)[0]) for i in scene_ids]
        pixels = with_noise(np.stack([frames[i, f] for i, f in chosen]), rng)
        tags = torch.from_numpy(np.stack([frame_tags(scenes[i], f) for i, f in chosen]))
        return normalize(pixels, model.config.image_mean, model.config.image_std), tags

    def logits(pixels: torch.Tensor) -> torch.Tensor:
        return probe(vision(pixel_values=pixels).last_hidden_state.mean(1))

    losses = []
    for step in tqdm(range(steps), desc="vision", disable=not progress or None):
        pixels, tags = batch()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits(pixels), tags)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            logger.info("vision step %d/%d: loss %.4f", step + 1, steps, sum(losses[-100:]) / 100)
    vision.eval()
    with torch.no_grad():
        pixels, tags = batch()
        exact = ((logits(pixels) > 0).float() == tags).all(1).float().mean().item()
    return losses, 100.0 * exact
