"""Tiny SeViLA models, tokenizers and BLIP-2 directories that tests build themselves (no download, no shared
files)."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

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


def write_tiny_blip2(directory: Path, config: SeViLAConfig, shards: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    """A transformers BLIP-2 (Flan-T5 style, untied LM head) directory as the hub serves it."""
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    torch.manual_seed(seed)
    blip2_config = Blip2Config(
        vision_config=config.to_hf_vision_config().to_dict(),
        qformer_config=config.to_hf_qformer_config().to_dict(),
        text_config=config.to_hf_t5_config().to_dict(),
        num_query_tokens=config.qformer.num_query_tokens,
    )
    model = Blip2ForConditionalGeneration(blip2_config)
    state = {
        k: v.detach().clone() + 0.01 * torch.randn_like(v)
        for k, v in model.state_dict().items()
        if not k.endswith(("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"))
    }
    state["language_model.lm_head.weight"] = torch.randn_like(state["language_model.shared.weight"])
    directory.mkdir(parents=True, exist_ok=True)
    blip2_config.save_pretrained(directory)
    tiny_tokenizer().save_pretrained(directory)
    keys = sorted(state)
    if shards == 1:
        save_file(state, directory / "model.safetensors")
    else:
        weight_map = {}
        for i in range(shards):
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {k: state[k] for k in keys[i::shards]}
            save_file(part, directory / name)
            weight_map.update({k: name for k in part})
        (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return state


def grounded_qa_records(videos: list[tuple[str, str]]):
    """NExT-GQA-style records, one per (question type, video) pair: question i asks the tiny model's question
    with options A-D, answer ``i % 4`` and evidence at 0.5-1.5 s of a 3 s, 8 fps video."""
    from sevila.data import QARecord

    return [
        QARecord(
            qid=f"{t}_{v}_{i}",
            video=v,
            dataset="nextgqa",
            question=f"{QUESTION} {i}",
            options=OPTIONS[:4],
            answer=i % 4,
            question_type=t,
            extra={"grounding_windows": [[0.5, 1.5]], "duration": 3.0, "fps": 8},
        )
        for i, (t, v) in enumerate(videos)
    ]
