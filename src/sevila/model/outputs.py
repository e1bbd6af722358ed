"""Result types of the SeViLA module."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class FrameFeatures:
    """The question-independent part: visual tokens of every frame for both branches.

    Shapes (videos, frames, num_query_tokens, d_model). This is what the feature cache stores.
    """

    answerer: torch.Tensor
    localizer: torch.Tensor

    def to(self, device: torch.device | str) -> FrameFeatures:
        return FrameFeatures(self.answerer.to(device), self.localizer.to(device))

    def select(self, videos: torch.Tensor) -> FrameFeatures:
        """Rows for the given video indices (e.g. to ask several questions about one video)."""
        return FrameFeatures(self.answerer[videos], self.localizer[videos])


@dataclass
class AnswerOutput:
    option_scores: torch.Tensor  # (videos, options) logits of the option letters
    first_token: torch.Tensor  # (videos,) the greedy first decoded token

    @property
    def prediction(self) -> torch.Tensor:
        return self.option_scores.argmax(dim=-1)

    def chained(self, keyframes: torch.Tensor, frame_scores: torch.Tensor | None) -> Prediction:
        """This answer as the end of the chain that chose its ``keyframes`` from ``frame_scores``."""
        return Prediction(self.option_scores, self.prediction, keyframes, frame_scores, self.first_token)


@dataclass
class Prediction:
    """Chained inference: localizer frame scores -> keyframes -> answerer option scores."""

    option_scores: torch.Tensor  # (videos, options)
    prediction: torch.Tensor  # (videos,) argmax of option_scores (ties -> lowest index)
    keyframes: torch.Tensor  # (videos, k) indices into the sampled frames, ascending
    frame_scores: torch.Tensor | None  # (videos, frames) localizer "yes" logits; None without the localizer
    first_token: torch.Tensor  # (videos,)


@dataclass
class StageLoss:
    loss: torch.Tensor
    pseudo_labels: torch.Tensor | None = None  # (videos, frames) bool, localizer self-refinement only
    keyframes: torch.Tensor | None = None  # (videos, k), answerer training on localizer keyframes only
    frame_scores: torch.Tensor | None = None
