"""Per-part numeric precision.

The reference runs the ViT in fp16, the Q-Formers in fp32 and Flan-T5 with bf16 weights. T5 is never
run in fp16: its activations overflow fp16's range. On a CPU everything runs in float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_NAMES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
          "fp16": torch.float16, "float16": torch.float16}


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    try:
        return _NAMES[value.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {value!r}; use one of fp32, bf16, fp16") from None


@dataclass(frozen=True)
class Precision:
    vision: torch.dtype = torch.float32
    qformer: torch.dtype = torch.float32  # Q-Formers, their LayerNorms, query tokens and projections
    language_model: torch.dtype = torch.float32

    def __post_init__(self) -> None:
        if self.language_model == torch.float16:
            raise ValueError("T5 must not run in float16 (its activations overflow); use bf16 or fp32")

    @classmethod
    def for_device(cls, device: torch.device | str) -> Precision:
        """Defaults: on CUDA, ViT bf16 (fp16 where bf16 is unsupported), Q-Formers fp32, T5 bf16; else fp32."""
        device = torch.device(device)
        if device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
            return cls(
                vision=torch.bfloat16 if bf16 else torch.float16,
                qformer=torch.float32,
                language_model=torch.bfloat16 if bf16 else torch.float32,
            )
        return cls()

    @classmethod
    def parse(cls, vision: str, qformer: str, language_model: str) -> Precision:
        return cls(parse_dtype(vision), parse_dtype(qformer), parse_dtype(language_model))
