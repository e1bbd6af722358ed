"""One recipe per training stage: what trains, on which records, with which loss, judged by which metric.

=====================  ==========  =========  ==============================================  ======================
stage                  branch      records    loss (`SeViLA` method)                          validation metric
=====================  ==========  =========  ==============================================  ======================
pretrain-localizer     localizer   moments    ``pretrain_localizer_loss`` (per-frame yes/no   frame yes/no accuracy
                                              labels from the relevant windows)
finetune-answerer      answerer    QA         ``answerer_loss_with_localizer`` (the frozen    QA accuracy of chained
                                              localizer picks the keyframes); with            inference (uniform
                                              ``uniform_frames``: ``answerer_loss_uniform``   frames: no localizer)
refine-localizer       localizer   QA         ``refine_localizer_loss`` (pseudo-labels from   QA accuracy of chained
                                              the frozen answerer)                            inference
=====================  ==========  =========  ==============================================  ======================

The refined localizer is selected by downstream QA accuracy, as the original does (it has no localization
metric for QA datasets). A batch is the `sevila.data.collate` dict plus ``num_options`` per item.
`StageModel` is what the loop (and DDP) runs forward: the recipe's loss of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sevila.data.records import MomentRecord, QARecord
from sevila.model import SeViLA
from sevila.train.config import TrainConfig
from sevila.train.data import shared_option_count, split_by_options

Batch = dict[str, Any]


@dataclass
class Recipe:
    """A stage. ``num_keyframes`` and ``uniform_frames`` are the only options the losses and metrics read."""

    num_keyframes: int = 4
    uniform_frames: bool = False

    stage: ClassVar[str]
    branch: ClassVar[str]  # the one trainable branch
    record_type: ClassVar[type]
    metric: ClassVar[str]  # name of the validation metric in the logs

    def loss(self, model: SeViLA, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def score(self, model: SeViLA, batch: Batch) -> tuple[int, int]:
        """(correct, total) of the validation metric on one batch; call without gradients."""
        raise NotImplementedError


class PretrainLocalizer(Recipe):
    stage = "pretrain-localizer"
    branch = "localizer"
    record_type = MomentRecord
    metric = "val_top1_frame_hit"

    def loss(self, model: SeViLA, batch: Batch) -> torch.Tensor:
        return model.pretrain_localizer_loss(batch["frames"], batch["loc_prompt"], batch["frame_labels"]).loss

    def score(self, model: SeViLA, batch: Batch) -> tuple[int, int]:
        """Queries whose highest-scoring frame (by the "yes" logit, what keyframe selection ranks) lies in a
        relevant window. The original selected by frame-level yes/no accuracy, which is degenerate when most
        frames are "no": a localizer that always says "no" scores the share of "no" frames at every epoch,
        and the first epoch stays "best". Queries without a relevant frame among the sampled ones are skipped.
        """
        features = model.encode_frames(batch["frames"])
        scores = model.frame_scores(features.localizer, batch["loc_prompt"]).cpu()
        labels = batch["frame_labels"]
        has_positive = labels.any(dim=1)
        top = scores.argmax(dim=1)
        hits = labels[torch.arange(len(top)), top] & has_positive
        return int(hits.sum()), int(has_positive.sum())


def by_option_count(batch: Batch, part_loss) -> torch.Tensor:
    """The batch loss when its questions have different option counts (the option-letter ids differ):
    each group's loss weighted by its share of the questions. Every row of a stage's targets has the same
    number of label tokens ("Option X</s>", or "yes</s>"/"no</s>" per frame), so this equals the token-mean
    over the whole batch that one T5 call would give; a batch with one count is one call, as before."""
    parts = split_by_options(batch)
    if len(parts) == 1:
        return part_loss(batch, shared_option_count(batch))
    total = len(batch["answer"])
    return sum(part_loss(part, shared_option_count(part)) * (len(part["answer"]) / total) for part in parts)


class QARecipe(Recipe):
    """The two stages trained on multiple-choice records and judged by chained-inference QA accuracy."""

    record_type = QARecord
    metric = "val_qa_accuracy"

    def score(self, model: SeViLA, batch: Batch) -> tuple[int, int]:
        correct = total = 0
        for part in split_by_options(batch):
            out = model.predict(
                part["frames"],
                part["qa_prompt"],
                shared_option_count(part),
                loc_prompts=part["loc_prompt"],
                num_keyframes=self.num_keyframes,
                use_localizer=not self.uniform_frames,
            )
            correct += int((out.prediction.cpu() == part["answer"]).sum())
            total += len(part["answer"])
        return correct, total


class FinetuneAnswerer(QARecipe):
    stage = "finetune-answerer"
    branch = "answerer"

    def loss(self, model: SeViLA, batch: Batch) -> torch.Tensor:
        def part_loss(part: Batch, options: int) -> torch.Tensor:
            if self.uniform_frames:
                return model.answerer_loss_uniform(part["frames"], part["qa_prompt"], part["answer"], options).loss
            return model.answerer_loss_with_localizer(
                part["frames"], part["qa_prompt"], part["loc_prompt"], part["answer"], options,
                num_keyframes=self.num_keyframes,
            ).loss

        return by_option_count(batch, part_loss)


class RefineLocalizer(QARecipe):
    stage = "refine-localizer"
    branch = "localizer"

    def loss(self, model: SeViLA, batch: Batch) -> torch.Tensor:
        return by_option_count(batch, lambda part, options: model.refine_localizer_loss(
            part["frames"], part["qa_prompt"], part["loc_prompt"], part["answer"], options
        ).loss)


RECIPES: dict[str, type[Recipe]] = {r.stage: r for r in (PretrainLocalizer, FinetuneAnswerer, RefineLocalizer)}


def build_recipe(stage: str, num_keyframes: int = 4, uniform_frames: bool = False) -> Recipe:
    try:
        return RECIPES[stage](num_keyframes=num_keyframes, uniform_frames=uniform_frames)
    except KeyError:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(RECIPES)}") from None


def recipe_for(config: TrainConfig) -> Recipe:
    return build_recipe(config.stage, config.num_keyframes, config.uniform_frames)


class StageModel(nn.Module):
    """``forward(batch) -> loss``: the module DDP wraps, so its gradient hooks see a forward pass.

    A None batch (every video of it failed to load) gives a zero loss that still reaches every trainable
    parameter, so the other processes' gradient all-reduce does not wait for this one forever.
    """

    def __init__(self, model: SeViLA, recipe: Recipe):
        super().__init__()
        self.model = model
        self.recipe = recipe

    def forward(self, batch: Batch | None) -> torch.Tensor:
        if batch is None:
            return sum(p.sum() for p in self.model.parameters() if p.requires_grad) * 0.0
        return self.recipe.loss(self.model, batch)


__all__ = [
    "RECIPES",
    "FinetuneAnswerer",
    "PretrainLocalizer",
    "Recipe",
    "RefineLocalizer",
    "StageModel",
    "build_recipe",
    "recipe_for",
]
