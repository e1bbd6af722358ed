"""Loading a parity fixture recorded from the original implementation (layout: ../shared/parity/README.md; where it
is: `tests.support.paths.parity_dir`).

Nothing here is tuned to one recording: sizes, frame counts, keyframe counts, option counts, prompts and
targets are all read from the fixture's own files, so the same tests check any fixture of that layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from safetensors.torch import load_file

from sevila import prompts
from sevila.config import LanguageModelConfig, QFormerConfig, SeViLAConfig, VisionConfig
from sevila.convert.lavis import lavis_key, load_lavis_checkpoint
from sevila.model import SeViLA
from sevila.model.text import load_tokenizer

ACT = dict(atol=1e-4, rtol=1e-4)  # activations, embeddings, logits (README "Tolerances")


def close(actual: torch.Tensor, expected: torch.Tensor, **tol):
    """Equal shapes, and values within ``tol`` (default `ACT`)."""
    assert tuple(actual.shape) == tuple(expected.shape), f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    torch.testing.assert_close(actual.float(), expected.float(), **(tol or ACT))


def config_from_fixture(raw: dict) -> SeViLAConfig:
    v, q, t = raw["vision"], raw["qformer"], raw["t5"]
    lm_fields = {f for f in LanguageModelConfig.__dataclass_fields__}
    return SeViLAConfig(
        vision=VisionConfig(
            image_size=v["image_size"],
            patch_size=v["patch_size"],
            hidden_size=v["hidden_size"],
            num_hidden_layers=v["num_hidden_layers"],
            num_attention_heads=v["num_attention_heads"],
            intermediate_size=v["intermediate_size"],
            layer_norm_eps=v["layer_norm_eps"],
        ),
        qformer=QFormerConfig(
            hidden_size=q["hidden_size"],
            num_hidden_layers=q["num_hidden_layers"],
            num_attention_heads=q["num_attention_heads"],
            intermediate_size=q["intermediate_size"],
            layer_norm_eps=q["layer_norm_eps"],
            cross_attention_frequency=q["cross_attention_freq"],
            num_query_tokens=q["num_query_token"],
        ),
        language_model=LanguageModelConfig(**{k: val for k, val in t.items() if k in lm_fields}),
        vision_layernorm_eps=raw["ln_vision"]["eps"],
        max_text_length=raw["max_txt_len"],
        frame_prefix=raw["frame_prefix"],
        image_mean=tuple(raw["image_mean"]),
        image_std=tuple(raw["image_std"]),
    )


def lavis_to_ours(key: str) -> str:
    new = lavis_key(key)
    assert new is not None, f"no key-map rule for {key}"
    return new


@dataclass
class Fixture:
    root: Path

    @cached_property
    def raw_config(self) -> dict:
        return json.loads((self.root / "config.json").read_text())

    @cached_property
    def summary(self) -> dict:
        return json.loads((self.root / "summary.json").read_text())

    @cached_property
    def annotations(self) -> dict:
        return json.loads((self.root / "annotations.json").read_text())

    @cached_property
    def outputs(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.root / "outputs.safetensors"))

    @cached_property
    def inputs(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.root / "inputs.safetensors"))

    @cached_property
    def config(self) -> SeViLAConfig:
        return config_from_fixture(self.raw_config)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(str(self.root / "tokenizer"))

    def model(self) -> SeViLA:
        """A fresh model with the fixture's weights, in eval mode (the fixture was recorded without dropout)."""
        model = SeViLA(self.config, tokenizer=self.tokenizer)
        report = load_lavis_checkpoint(model, self.root / "weights.pth", log=False)
        assert not report.missing and not report.unexpected, report.summary()
        return model.eval()

    # ------------------------------------------------------------------ records
    @property
    def qa_records(self) -> list[dict]:
        return self.annotations["nextqa_style"]

    @property
    def qvh_records(self) -> list[dict]:
        return self.annotations["qvhighlights_style"]

    @staticmethod
    def options(record: dict) -> list[str]:
        return [record[f"a{i}"] for i in range(record["num_option"])]

    @property
    def num_options(self) -> int:
        counts = {r["num_option"] for r in self.qa_records}
        assert len(counts) == 1, "a batch of one kind shares its option count"
        return counts.pop()

    @property
    def qa_prompts(self) -> list[str]:
        return [prompts.qa_prompt(r["question"], self.options(r)) for r in self.qa_records]

    @property
    def loc_prompts(self) -> list[str]:
        return [prompts.loc_prompt(r["question"], self.options(r)) for r in self.qa_records]

    @property
    def qvh_prompts(self) -> list[str]:
        return [prompts.qvhighlights_loc_prompt(r["query"]) for r in self.qvh_records]

    @property
    def answers(self) -> torch.Tensor:
        return torch.tensor([r["answer"] for r in self.qa_records])

    def frames(self, n: int, batch: int) -> torch.Tensor:
        """The fixture's batch video tensor: the n normalised frames stacked once per record."""
        return self.inputs[f"inputs.frames_{n}"][None].expand(batch, -1, -1, -1, -1).contiguous()

    def qvh_frame_labels(self, n: int) -> torch.Tensor:
        """Per-frame yes/no from the relevant windows: index / fps inside [start, end], both ends inclusive."""
        video = self.summary["video"][f"n_frms_{n}"]
        times = [i / video["fps"] for i in video["indices"]]
        return torch.tensor(
            [[any(s <= t <= e for s, e in r.get("relevant_windows", [])) for t in times] for r in self.qvh_records]
        )
