"""Tiny SeViLA models and tokenizers that tests build themselves (no download, no shared files)."""

from __future__ import annotations

import torch

from sevila import prompts
from sevila.config import SeViLAConfig
from sevila.model import SeViLA, build_word_tokenizer

QUESTION = "what is the man holding in his hand at the start?"
OPTIONS = ["a red cup.", "a blue phone.", "a green book.", "a white towel.", "a small flag."]


def tiny_tokenizer():
    words = " ".join(
        [
            prompts.qa_prompt(QUESTION, OPTIONS),
            prompts.loc_prompt(QUESTION, OPTIONS),
            prompts.vlep_loc_prompt(OPTIONS[:2]),
            prompts.qvhighlights_loc_prompt("a man walks his dog"),
            "Frame 1 2 3 4 5 6 7 8 9 yes no A B C D E",
        ]
    ).split()
    return build_word_tokenizer(words)


def tiny_model(seed: int = 0, config: SeViLAConfig | None = None) -> SeViLA:
    torch.manual_seed(seed)
    model = SeViLA(config or SeViLAConfig.preset("tiny"), tokenizer=tiny_tokenizer())
    # Non-trivial values everywhere (transformers initialises LayerNorms to 1/0 and biases to 0).
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def random_frames(videos: int, frames: int, config: SeViLAConfig, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = config.vision.image_size
    return torch.randn(videos, frames, 3, size, size, generator=generator)
