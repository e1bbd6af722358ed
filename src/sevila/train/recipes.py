"""One recipe per training stage: what trains, on which records, with which loss, judged by which metric.

=====================  ==========  =========  ==============================================  ======================
stage                  branch      records    loss (`SeViLA` method)                          validation metric
=====================  ==========  =========  ==============================================  ======================
pretrain-localizer     localizer   moments    ``pretrain_localizer_loss`` (per-frame yes/no   top-scored frame in a
                                              labels from the relevant windows)               relevant window
finetune-answerer      answerer    QA         ``answerer_loss_with_localizer`` (the frozen    QA accuracy of chained
                                              localizer picks the keyframes); with            inference (uniform
                                              ``uniform_frames``: ``answerer_loss_uniform``   frames: no localizer)
refine-localizer       localizer   QA         ``refine_localizer_loss`` (pseudo-labels from   QA accuracy of chained
                                              the frozen answerer)                            inference
=====================  ==========  =========  ==============================================  ======================

The refined localizer is selected by downstream QA accuracy, as the original does (it has no localization
metric for QA datasets). The QA stages also log ``val_star_mean_type_accuracy`` when the validation questions
cover STAR's four types — the unweighted mean of the four type accuracies, the original's STAR ``agg_metrics``
(``vqa.py:L494-L495``) — and ``select_by`` chooses which of the two picks the best epoch. A batch is the
`sevila.data.collate` dict plus ``num_options`` and ``question_type`` per item.
`StageModel` is what the loop (and DDP) runs forward: the recipe's loss of one batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from sevila.data.records import MomentRecord, QARecord, Record
from sevila.evaluate.metrics.qa import STAR_TYPES, question_type_of
from sevila.model import SeViLA
from sevila.train.config import FRAME_HIT, QA_ACCURACY, SELECTION_METRICS, STAR_MEAN, TrainConfig
from sevila.train.data import shared_option_count, split_by_options

Batch = dict[str, Any]


@dataclass
class Recipe:
    """A stage. ``num_keyframes`` and ``uniform_frames`` are the only options the losses and metrics read;
    ``select_by`` names the validation metric that picks the best epoch (None: the stage's own)."""

    num_keyframes: int = 4
    uniform_frames: bool = False
    select_by: str | None = None

    stage: ClassVar[str]
    branch: ClassVar[str]  # the one trainable branch
    record_type: ClassVar[type]
    count_names: ClassVar[tuple[str, ...]]  # what `score` counts; [0] / [1] is the stage's own metric

    @property
    def metric(self) -> str:
        """Name (in the logs) of the validation metric the best epoch is chosen by."""
        return self.select_by or SELECTION_METRICS[self.stage][0]

    def loss(self, model: SeViLA, batch: Batch) -> torch.Tensor:
        raise NotImplementedError

    def score(self, model: SeViLA, batch: Batch) -> tuple[int, ...]:
        """The counts named by `count_names` on one batch (summed over batches and processes, then turned into
        metrics by `metrics`); call without gradients."""
        raise NotImplementedError

    def metrics(self, counts) -> dict[str, float]:
        """The validation metrics (by log name) of the summed counts; ``counts[1]`` is positive."""
        raise NotImplementedError

    def check_validation(self, records: list[Record], source: str) -> None:
        """Refuse, before any training, a validation split the selection metric cannot be computed on."""


class PretrainLocalizer(Recipe):
    stage = "pretrain-localizer"
    branch = "localizer"
    record_type = MomentRecord
    count_names = ("hits", "queries")

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

    def metrics(self, counts) -> dict[str, float]:
        return {FRAME_HIT: float(counts[0] / counts[1])}


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
    """The two stages trained on multiple-choice records and judged by chained-inference QA accuracy, overall
    (``val_qa_accuracy``) and, on STAR, as the mean of the four type accuracies (``val_star_mean_type_accuracy``).

    A question's type is its record's ``question_type``, else the qid's prefix (``qid.split('_')[0]``), as in
    `sevila.evaluate.metrics.qa`. Both metrics are fractions; the original logs the STAR mean in percent.
    """

    record_type = QARecord
    count_names = ("correct", "questions") + tuple(f"{t}_{c}" for t in STAR_TYPES for c in ("correct", "questions"))

    def score(self, model: SeViLA, batch: Batch) -> tuple[int, ...]:
        counts = [0] * len(self.count_names)
        for part in split_by_options(batch):
            out = model.predict(
                part["frames"],
                part["qa_prompt"],
                shared_option_count(part),
                loc_prompts=part["loc_prompt"],
                num_keyframes=self.num_keyframes,
                use_localizer=not self.uniform_frames,
            )
            right = (out.prediction.cpu() == part["answer"]).tolist()
            types = part.get("question_type") or [None] * len(right)
            for ok, qtype, qid in zip(right, types, part["qid"]):
                counts[0] += int(ok)
                counts[1] += 1
                qtype = qtype or question_type_of(qid)
                if qtype in STAR_TYPES:
                    slot = 2 + 2 * STAR_TYPES.index(qtype)
                    counts[slot] += int(ok)
                    counts[slot + 1] += 1
        return tuple(counts)

    def metrics(self, counts) -> dict[str, float]:
        result = {QA_ACCURACY: float(counts[0] / counts[1])}
        per_type = [(counts[2 + 2 * i], counts[3 + 2 * i]) for i in range(len(STAR_TYPES))]
        if all(total > 0 for _, total in per_type):
            result[STAR_MEAN] = float(sum(correct / total for correct, total in per_type) / len(per_type))
        elif self.metric == STAR_MEAN:
            absent = [t for t, (_, total) in zip(STAR_TYPES, per_type) if not total > 0]
            raise ValueError(
                f"select_by {STAR_MEAN}: no validation question of type {', '.join(absent)} "
                "could be scored (their videos failed to load?)"
            )
        return result

    def check_validation(self, records: list[Record], source: str) -> None:
        if self.metric != STAR_MEAN:
            return
        present = {r.question_type or question_type_of(r.qid) for r in records if isinstance(r, QARecord)}
        absent = [t for t in STAR_TYPES if t not in present]
        if absent:
            raise ValueError(
                f"{source}: {STAR_MEAN} needs validation questions of all four STAR types "
                f"({', '.join(STAR_TYPES)}); none is of type {', '.join(absent)}"
            )


class FinetuneAnswerer(QARecipe):
    stage = "finetune-answerer"
    branch = "answerer"

    def loss(self, model: SeViLA, batch: Batch) -> torch.Tensor:
        def part_loss(part: Batch, options: int) -> torch.Tensor:
            if self.uniform_frames:
                return model.answerer_loss_uniform(part["frames"], part["qa_prompt"], part["answer"], options).loss
            return model.answerer_loss_with_localizer(
                part["frames"],
                part["qa_prompt"],
                part["loc_prompt"],
                part["answer"],
                options,
                num_keyframes=self.num_keyframes,
            ).loss

        return by_option_count(batch, part_loss)


class RefineLocalizer(QARecipe):
    stage = "refine-localizer"
    branch = "localizer"

    def loss(self, model: SeViLA, batch: Batch) -> torch.Tensor:
        return by_option_count(
            batch,
            lambda part, options: (
                model.refine_localizer_loss(
                    part["frames"], part["qa_prompt"], part["loc_prompt"], part["answer"], options
                ).loss
            ),
        )


RECIPES: dict[str, type[Recipe]] = {r.stage: r for r in (PretrainLocalizer, FinetuneAnswerer, RefineLocalizer)}


def build_recipe(
    stage: str, num_keyframes: int = 4, uniform_frames: bool = False, select_by: str | None = None
) -> Recipe:
    if stage not in RECIPES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {', '.join(RECIPES)}")
    if select_by is not None and select_by not in SELECTION_METRICS[stage]:
        raise ValueError(
            f"{stage} selects its best epoch by {' or '.join(SELECTION_METRICS[stage])}, not {select_by!r}"
        )
    return RECIPES[stage](num_keyframes=num_keyframes, uniform_frames=uniform_frames, select_by=select_by)


def recipe_for(config: TrainConfig) -> Recipe:
    return build_recipe(config.stage, config.num_keyframes, config.uniform_frames, config.select_by)


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
