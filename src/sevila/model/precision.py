"""Per-part numeric precision: the dtypes each part's weights are stored in, and the dtypes each stage computes in.

Three named modes (`Precision.named`):

``reference`` — the original's inference precision (its ``generate``'s localizer branch; the default on CUDA):
    * ViT: Conv/Linear weights and biases fp16, its LayerNorms and class/position embeddings fp32 (the
      original's ``convert_weights_to_fp16``); run under fp16 autocast, so every matmul is fp16 while the
      residual stream, the LayerNorms and the output stay fp32;
    * localizer Q-Former, its LayerNorm and projection: fp32, autocast off;
    * answerer Q-Former, its LayerNorm and projection: fp32 weights under bf16 autocast (the original runs
      them inside the bf16 block of ``generate``'s localizer branch) — its visual tokens come out bf16;
    * Flan-T5: bf16 weights under bf16 autocast; its inputs are the *promoting* concatenation of the bf16
      token embeddings with the visual tokens, so the localizer's T5 encoder residual stream is fp32 and the
      answerer's bf16, exactly as in the original. Logits are bf16 values (returned as float32).
    On a CPU the same dtypes are emulated with CPU autocast (fp16 and bf16); CPU autocast keeps softmax in
    the input dtype where CUDA's runs it in fp32, so CPU numbers are close to, not equal to, a GPU's.
``bf16`` — everything that is frozen in bf16, no autocast: ViT bf16 (LayerNorms included), Q-Formers fp32,
    T5 bf16 with bf16 inputs. Faster and lighter; on a GPU without bf16 the ViT falls back to fp16 and T5
    to fp32. Allowed on a CPU too.
``fp32`` — everything float32, no autocast: the default on a CPU and the mode the parity tests check.

`Precision.for_device`: ``reference`` on CUDA, ``fp32`` elsewhere. T5 is never run with fp16 weights: its
activations overflow fp16's range.

The fields ``vision``, ``qformer`` and ``language_model`` are the *storage* dtypes of each part's weights
(`param_dtype` gives the exact dtype of every parameter by name, including the ViT parameters that stay
fp32); the ``*_autocast`` fields say how each stage computes (`autocast`).
"""

from __future__ import annotations

import re
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, fields

import torch

_NAMES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}

MODES = ("reference", "bf16", "fp32")
STAGES = ("vision", "localizer", "answerer", "language_model")
_HALF = (torch.float16, torch.bfloat16)

# ViT parameters the original keeps in fp32 when the rest of the ViT is fp16 (everything that is not a
# Conv/Linear weight or bias): LayerNorms, the class token and the position embeddings.
_VISION_FP32 = re.compile(
    r"(^|\.)(layer_norm\d*|layernorm|post_layernorm)\.|(^|\.)(class_embedding|position_embedding)$"
)


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    if isinstance(value, torch.dtype):
        return value
    try:
        return _NAMES[value.lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {value!r}; use one of fp32, bf16, fp16") from None


@dataclass(frozen=True)
class Precision:
    # Storage dtypes of each part's weights.
    vision: torch.dtype = torch.float32
    qformer: torch.dtype = torch.float32  # Q-Formers, their LayerNorms, query tokens and projections
    language_model: torch.dtype = torch.float32
    # With a half-precision ``vision``: the ViT's LayerNorms and class/position embeddings stay fp32 and the
    # residual stream is fp32 (the original's fp16 ViT). Needs ``vision_autocast``.
    vision_fp32_norms: bool = False
    # Compute: the autocast dtype of each stage. None: no context of our own (whatever the caller set, e.g.
    # training's autocast); torch.float32: autocast switched off (the stage runs in its weights' dtype).
    vision_autocast: torch.dtype | None = None
    localizer_autocast: torch.dtype | None = None  # the localizer branch (LayerNorm, Q-Former, projection)
    answerer_autocast: torch.dtype | None = None  # the answerer branch
    language_model_autocast: torch.dtype | None = None  # T5 encoder and decoder
    # T5 inputs: True concatenates token embeddings and visual tokens with type promotion (fp32 visual tokens
    # make an fp32 encoder input, as the original's autocast ``torch.cat``); False casts the visual tokens
    # to the embeddings' dtype.
    promote_t5_inputs: bool = False

    def __post_init__(self) -> None:
        if self.language_model == torch.float16:
            raise ValueError("T5 must not run in float16 (its activations overflow); use bf16 or fp32")
        if self.language_model_autocast == torch.float16:
            raise ValueError("T5 must not run under float16 autocast (its activations overflow); use bf16")
        if self.vision_fp32_norms and self.vision in _HALF and self.vision_autocast not in _HALF:
            raise ValueError("a half-precision ViT with fp32 LayerNorms needs vision_autocast (fp16 or bf16)")

    # ------------------------------------------------------------------ named modes
    @classmethod
    def reference(cls) -> Precision:
        """The original's inference precision (see the module docstring)."""
        return cls(
            vision=torch.float16,
            qformer=torch.float32,
            language_model=torch.bfloat16,
            vision_fp32_norms=True,
            vision_autocast=torch.float16,
            localizer_autocast=torch.float32,
            answerer_autocast=torch.bfloat16,
            language_model_autocast=torch.bfloat16,
            promote_t5_inputs=True,
        )

    @classmethod
    def bf16(cls, device: torch.device | str = "cpu") -> Precision:
        """Frozen parts in bf16 without autocast; on a GPU without bf16: ViT fp16, T5 fp32."""
        device = torch.device(device)
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            return cls(vision=torch.float16, qformer=torch.float32, language_model=torch.float32)
        return cls(vision=torch.bfloat16, qformer=torch.float32, language_model=torch.bfloat16)

    @classmethod
    def fp32(cls) -> Precision:
        return cls()

    @classmethod
    def for_device(cls, device: torch.device | str) -> Precision:
        """The default: ``reference`` on CUDA, ``fp32`` elsewhere."""
        return cls.reference() if torch.device(device).type == "cuda" else cls.fp32()

    @classmethod
    def named(cls, name: str | Precision | None, device: torch.device | str = "cpu") -> Precision:
        """A mode by name (``reference``, ``bf16``, ``fp32``) for ``device``; None: the device's default."""
        if isinstance(name, Precision):
            return name
        if name is None:
            return cls.for_device(device)
        device = torch.device(device)
        key = str(name).strip().lower()
        if key not in MODES:
            raise ValueError(f"unknown precision {name!r}; choose one of {', '.join(MODES)}")
        if key != "fp32" and device.type not in ("cuda", "cpu"):
            raise ValueError(f"precision {key!r} runs on cuda or cpu, not {device.type}; use fp32 there")
        if key == "reference":
            return cls.reference()
        return cls.bf16(device) if key == "bf16" else cls.fp32()

    @property
    def name(self) -> str:
        """``reference``, ``bf16`` or ``fp32`` when this is one of the named modes, else ``custom``."""
        if self == Precision.reference():
            return "reference"
        if self == Precision.fp32():
            return "fp32"
        if self in (Precision.bf16("cpu"), Precision(vision=torch.float16, language_model=torch.float32)):
            return "bf16"
        return "custom"

    def describe(self) -> str:
        """One line: the mode's name and how each part is stored and computed."""

        def short(dtype: torch.dtype) -> str:
            return {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]

        def compute(dtype: torch.dtype | None) -> str:
            if dtype is None:
                return "no autocast"
            return "autocast off" if dtype == torch.float32 else f"{short(dtype)} autocast"

        vision = f"ViT {short(self.vision)}"
        if self.vision_fp32_norms and self.vision in _HALF:
            vision += " (LayerNorms, class/position embeddings fp32)"
        parts = [
            f"{vision}, {compute(self.vision_autocast)}",
            f"localizer {short(self.qformer)}, {compute(self.localizer_autocast)}",
            f"answerer {short(self.qformer)}, {compute(self.answerer_autocast)}",
            f"T5 {short(self.language_model)}, {compute(self.language_model_autocast)}, "
            + ("promoted inputs" if self.promote_t5_inputs else "inputs cast to its dtype"),
        ]
        return f"{self.name}: " + "; ".join(parts)

    @classmethod
    def parse(cls, vision: str, qformer: str, language_model: str) -> Precision:
        """Storage dtypes only, no autocast (a custom mode)."""
        return cls(parse_dtype(vision), parse_dtype(qformer), parse_dtype(language_model))

    # ------------------------------------------------------------------ storage
    def param_dtype(self, name: str) -> torch.dtype:
        """The storage dtype of a SeViLA parameter given its full name (``vision.encoder.layers.0.mlp.fc1.weight``,
        ``answerer.query_tokens``, ``language_model.shared.weight``, ...)."""
        part, _, rest = name.partition(".")
        if part == "vision":
            if self.vision_fp32_norms and _VISION_FP32.search(rest):
                return torch.float32
            return self.vision
        if part in ("answerer", "localizer"):
            return self.qformer
        if part == "language_model":
            return self.language_model
        raise ValueError(
            f"{name!r} is not a SeViLA parameter name (vision.*, answerer.*, localizer.*, language_model.*)"
        )

    # ------------------------------------------------------------------ compute
    def autocast(self, stage: str, device: torch.device | str) -> AbstractContextManager:
        """The context a stage (`STAGES`) runs in on ``device``."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; choose one of {STAGES}")
        dtype = getattr(self, f"{stage}_autocast")
        if dtype is None:
            return nullcontext()
        device_type = torch.device(device).type
        if dtype == torch.float32:
            return torch.autocast(device_type, enabled=False)
        return torch.autocast(device_type, dtype=dtype)

    def to_dict(self) -> dict[str, str | bool | None]:
        """JSON-friendly fields (dtypes as their short names), e.g. for a benchmark's or a run's record."""
        out: dict[str, str | bool | None] = {"name": self.name}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = str(value).removeprefix("torch.") if isinstance(value, torch.dtype) else value
        return out
