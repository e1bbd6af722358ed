"""Pre-training the toy model's backbone: first T5 alone on text, then (after the ViT's own pre-training,
`sevila_toy.demo.vision_pretraining`) one Q-Former and T5 on frames of the synthetic world, one at a time and
several at once, through the frozen ViT.

This plays the part of Flan-T5's and BLIP-2's pre-training: afterwards T5 is frozen too, and the
Q-Former is copied into both SeViLA branches (the paper's initialisation), exactly as with the real checkpoints.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from sevila.model import SeViLA, scoring
from sevila.model.sevila import build_language_model
from sevila.video import normalize
from sevila_toy.demo.frame_tasks import FrameTask, sample_tasks
from sevila_toy.demo.text_tasks import (
    MASTERY,
    MAX_OPTIONS,
    REVERSE_ONLY_STEPS,
    REVERSE_SHARE,
    option_task,
    options_at,
)
from sevila_toy.synth.render import render
from sevila_toy.synth.world import Scene

logger = logging.getLogger(__name__)


def render_all(scenes: list[Scene]) -> np.ndarray:
    return np.stack([render(scene) for scene in scenes])


def with_noise(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rendered (uncompressed) frames with mild noise, so training does not rely on exact pixel values."""
    return np.clip(pixels.astype(np.float32) + rng.normal(0, 3, pixels.shape), 0, 255).astype(np.uint8)


def _frame_inputs(model: SeViLA, pixels: np.ndarray, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """One T5 input row per (frames, prompt), through the answerer branch: ``pixels`` (rows, n, H, W, 3) in the
    single-frame layout ("Frame: ") when n is 1, else in the answerer's multi-frame one ("Frame 1: " ...)."""
    rows, num_frames = pixels.shape[:2]
    images = normalize(pixels.reshape(-1, *pixels.shape[2:]), model.config.image_mean, model.config.image_std)
    tokens = model.answerer(model.encode_vision(images))
    tokens = tokens.view(rows, num_frames, *tokens.shape[1:])
    if num_frames == 1:
        return model.frame_level_inputs(tokens, prompts)
    return model.video_level_inputs(tokens, prompts)


def _frame_loss(model: SeViLA, batch: list[tuple[np.ndarray, FrameTask]], rng: np.random.Generator) -> torch.Tensor:
    pixels = with_noise(np.stack([frames for frames, _ in batch]), rng)
    embeds, mask = _frame_inputs(model, pixels, [task.prompt for _, task in batch])
    labels, decoder_mask = model.text.labels([task.target for _, task in batch])
    return scoring.sequence_loss(model.language_model, embeds, mask, labels, decoder_mask)


def _text_loss(model: SeViLA, tasks: list[FrameTask]) -> torch.Tensor:
    encoded = model.text([task.prompt for task in tasks])
    labels, decoder_mask = model.text.labels([task.target for task in tasks])
    return scoring.sequence_loss(
        model.language_model, model.embed_tokens(encoded.ids), encoded.mask, labels, decoder_mask
    )


def pretrain_language_model(
    model: SeViLA,
    max_steps: int = 4000,
    batch_size: int = 64,
    lr: float = 1e-3,
    seed: int = 0,
    check_every: int = 200,
    progress: bool = True,
) -> tuple[list[float], float | None]:
    """Train T5 alone on the text option tasks (`sevila_toy.demo.text_tasks`); returns the loss per step and the
    last measured accuracy (%) of looking up a word's option (None if training ended before any check).

    The curriculum: reverse lookups only for `REVERSE_ONLY_STEPS`, then mostly forward lookups, starting with
    two options and one more every `STEPS_PER_EXTRA_OPTION` steps. Once at five, a check every
    ``check_every`` steps (on fresh tasks) ends training when the lookup reaches `MASTERY`. The learning rate
    stays constant: the curriculum, not a schedule, shapes this phase.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    t5 = model.language_model
    t5.requires_grad_(True)
    params = list(t5.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    losses: list[float] = []
    accuracy = None
    bar = tqdm(range(max_steps), desc="language model", disable=not progress or None)
    t5.train()
    for step in bar:
        reverse_share = 1.0 if step < REVERSE_ONLY_STEPS else REVERSE_SHARE
        options = options_at(step)
        loss = _text_loss(model, [option_task(rng, options, reverse_share) for _ in range(batch_size)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        losses.append(loss.item())
        if (step + 1) % check_every:
            continue
        accuracy = option_lookup_accuracy(model, options, count=150, seed=step)
        logger.info(
            "language model step %d: loss %.3f, lookup among %d options %.1f%%",
            step + 1,
            sum(losses[-check_every:]) / check_every,
            options,
            accuracy,
        )
        bar.set_postfix(options=options, lookup=f"{accuracy:.0f}%")
        if options == MAX_OPTIONS and accuracy >= MASTERY:
            break
        t5.train()  # the check left the model in eval mode
    t5.eval()
    return losses, accuracy


def pretrain_language_model_with_restarts(
    model: SeViLA,
    seeds: Sequence[int],
    max_steps: int,
    batch_size: int,
    check_every: int = 200,
    progress: bool = True,
) -> dict[int, dict[str, float | None]]:
    """`pretrain_language_model` from a fresh T5 for each seed in turn, until one reaches `MASTERY`.

    Whether a tiny T5 escapes the long chance-level plateau of the lookup within ``max_steps`` depends on its
    initialisation (docs/demo.md), so a run that stays at chance is restarted rather than trained on. Keeps
    the last T5 tried; returns what happened to every seed.
    """
    tried = {}
    for seed in seeds:
        torch.manual_seed(seed)
        model.language_model = build_language_model(model.config)
        losses, accuracy = pretrain_language_model(
            model, max_steps, batch_size, seed=seed, check_every=check_every, progress=progress
        )
        tried[seed] = {"steps": len(losses), "lookup_among_five": accuracy}
        logger.info("language model seed %d: %d steps, lookup %s%%", seed, len(losses), accuracy)
        if accuracy is not None and accuracy >= MASTERY:
            break
    return tried


def copy_answerer_to_localizer(model: SeViLA) -> None:
    """Both branches start as the same pre-trained Q-Former (with its LayerNorm, queries and projection)."""
    model.localizer.load_state_dict(model.answerer.state_dict())


def pretrain_backbone(
    model: SeViLA,
    scenes: list[Scene],
    frames: np.ndarray,
    steps: int = 1500,
    batch_size: int = 32,
    lr: float = 5e-4,
    seed: int = 0,
    progress: bool = True,
    text_batch_size: int = 16,
    multi_frame_batch_size: int = 16,
    frames_per_multi_task: int = 4,
) -> list[float]:
    """Train the answerer branch and T5 on frame tasks of ``scenes`` (rendered: ``frames[i]`` are those of
    ``scenes[i]``); returns the (frame) loss per step.

    The ViT stays frozen, as in BLIP-2's pre-training: it learned to see in `pretrain_vision`, and trained on
    here it loses what it read of shapes while the frame tasks' loss falls on what colour alone answers
    (docs/demo.md, "What it took").

    Each step takes ``batch_size`` single-frame tasks and ``multi_frame_batch_size`` tasks about
    ``frames_per_multi_task`` frames of a video in the answerer's "Frame i:" layout (the layout SeViLA's answerer
    then reads; without them the frozen T5 has only ever seen one frame at a time). Each step also takes
    ``text_batch_size`` text option tasks with up to five options, so T5 keeps the option lookup it learned in
    `pretrain_language_model` while it learns to read frames.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.train()
    model.set_trainable("answerer")
    model.language_model.requires_grad_(True)  # unlike in SeViLA's stages, T5 learns here
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / steps))
    )
    single = sample_tasks(scenes, frames, steps * batch_size, rng)
    multi = sample_tasks(scenes, frames, steps * multi_frame_batch_size, rng, frames_per_multi_task)
    losses = []
    for step in tqdm(range(steps), desc="backbone", disable=not progress or None):
        loss = _frame_loss(model, [next(single) for _ in range(batch_size)], rng)
        if multi_frame_batch_size:
            loss = loss + _frame_loss(model, [next(multi) for _ in range(multi_frame_batch_size)], rng)
        text_loss = _text_loss(model, [option_task(rng) for _ in range(text_batch_size)])
        optimizer.zero_grad(set_to_none=True)
        (loss + text_loss).backward()
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


def _chosen(model: SeViLA, embeds: torch.Tensor, mask: torch.Tensor, task: FrameTask) -> str:
    """The choice of a closed task with the highest teacher-forced log-likelihood."""
    rows = len(task.choices)
    labels, _ = model.text.labels(list(task.choices))
    logits = model.language_model(
        inputs_embeds=embeds.expand(rows, -1, -1), attention_mask=mask.expand(rows, -1), labels=labels
    ).logits
    nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")
    return task.choices[int(nll.sum(1).argmin())]


@torch.no_grad()
def frame_task_accuracy(
    model: SeViLA, scenes: list[Scene], count: int = 400, seed: int = 1, frames_per_task: Sequence[int] = (1, 4)
) -> dict[str, float]:
    """Accuracy (%) on closed frame tasks of ``scenes`` (captions skipped), by kind and number of frames:
    ``count`` tasks for each entry of ``frames_per_task``; keys like ``"colour, 1 frame"``.

    Each choice is scored by its teacher-forced log-likelihood; the most likely one is the answer. This is
    the check that the backbone grounds what it says in what it sees before SeViLA's stages build on it.
    """
    model.eval()
    frames = render_all(scenes)
    hits: dict[str, list[bool]] = {}
    for n in frames_per_task:
        rng = np.random.default_rng(seed)
        for pixels, task in sample_tasks(scenes, frames, count, rng, n):
            if not task.choices:
                continue
            embeds, mask = _frame_inputs(model, pixels[None], [task.prompt])
            key = f"{task.kind}, {n} frame" + ("s" if n > 1 else "")
            hits.setdefault(key, []).append(_chosen(model, embeds, mask, task) == task.target)
    return {kind: 100.0 * sum(v) / len(v) for kind, v in sorted(hits.items())}


@torch.no_grad()
def option_lookup_accuracy(model: SeViLA, max_options: int = MAX_OPTIONS, count: int = 300, seed: int = 1) -> float:
    """Accuracy (%) of T5 on ``count`` text-only "Which option is <word>?" lookups with up to ``max_options``
    options (the answer vocabularies have four to six words)."""
    model.eval()
    rng = np.random.default_rng(seed)
    tasks = [option_task(rng, max_options, reverse_share=0.0) for _ in range(count)]
    hits = []
    for task in tasks:
        encoded = model.text([task.prompt])
        hits.append(_chosen(model, model.embed_tokens(encoded.ids), encoded.mask, task) == task.target)
    return 100.0 * sum(hits) / len(hits)
