"""Model configuration: every size of SeViLA's parts, frame counts and token roles.

`SeViLAConfig` is plain data (JSON round-trip, no torch import) so that tools which only read or write
configs stay light. The `to_hf_*` helpers build the transformers configs of the three borrowed blocks
(`Blip2VisionModel`, `Blip2QFormerModel`, `T5ForConditionalGeneration`); they import transformers lazily.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sevila.prompts import OPTION_LETTERS

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class VisionConfig:
    """EVA-style ViT as used by BLIP-2 (pre-norm blocks, q/v bias only, no final norm)."""

    image_size: int = 224
    patch_size: int = 14
    hidden_size: int = 1408
    num_hidden_layers: int = 39  # EVA-CLIP-g has 40 blocks; BLIP-2 keeps the first 39
    num_attention_heads: int = 16
    intermediate_size: int = 6144  # int(1408 * 4.3637)
    layer_norm_eps: float = 1e-6


@dataclass
class QFormerConfig:
    """BERT-style Q-Former restricted to its query stream (no word embeddings, no text feed-forward)."""

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    layer_norm_eps: float = 1e-12
    cross_attention_frequency: int = 2
    num_query_tokens: int = 32
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1


@dataclass
class LanguageModelConfig:
    """Flan-T5 sizes. `dense_act_fn="gelu"` is SeViLA's override of Flan-T5's tanh-approximated GELU."""

    vocab_size: int = 32128
    d_model: int = 2048
    d_kv: int = 64
    d_ff: int = 5120
    num_layers: int = 24
    num_decoder_layers: int = 24
    num_heads: int = 32
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    dropout_rate: float = 0.1
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "gated-gelu"
    dense_act_fn: str = "gelu"
    tie_word_embeddings: bool = False
    pad_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 0


@dataclass
class SeViLAConfig:
    vision: VisionConfig = field(default_factory=VisionConfig)
    qformer: QFormerConfig = field(default_factory=QFormerConfig)
    language_model: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    # The two LayerNorms on the raw ViT output (ln_vision, ln_vision_loc) use torch's default eps,
    # not the ViT's 1e-6.
    vision_layernorm_eps: float = 1e-5
    num_frames: int = 32  # candidate frames sampled uniformly from the video
    num_keyframes: int = 4  # frames the localizer keeps for the answerer
    max_text_length: int = 77  # prompts and targets are right-truncated to this many tokens (EOS kept)
    yes_word: str = "yes"
    no_word: str = "no"
    frame_prefix: str = "Frame: "  # single-frame layout
    keyframe_prefix: str = "Frame {i}: "  # multi-frame layout, i = 1..k in temporal order
    image_mean: tuple[float, float, float] = CLIP_MEAN
    image_std: tuple[float, float, float] = CLIP_STD
    # Where the tokenizer comes from when a model directory does not carry one.
    tokenizer_name: str = "google/flan-t5-xl"

    # ------------------------------------------------------------------ presets
    @classmethod
    def preset(cls, name: str) -> SeViLAConfig:
        try:
            factory = PRESETS[name]
        except KeyError:
            raise ValueError(f"unknown SeViLA preset {name!r}; choose one of {sorted(PRESETS)}") from None
        return factory()

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image_mean"] = list(self.image_mean)
        data["image_std"] = list(self.image_std)
        data["model_type"] = "sevila"
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SeViLAConfig:
        """A config from its JSON form; a wrong shape or type is a `ValueError` naming the field."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object of config fields, got {_json_kind(data)}")
        data = dict(data)
        model_type = data.pop("model_type", "sevila")
        if model_type != "sevila":
            raise ValueError(f"config has model_type {model_type!r}, expected 'sevila'")
        parts = {
            "vision": VisionConfig,
            "qformer": QFormerConfig,
            "language_model": LanguageModelConfig,
        }
        letters = data.pop("option_letters", OPTION_LETTERS)  # written by earlier versions
        if letters != OPTION_LETTERS:
            raise ValueError(
                f"option_letters {letters!r}: SeViLA's prompts and scored tokens use the letters {OPTION_LETTERS}"
            )
        kwargs: dict[str, Any] = {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown SeViLA config fields: {sorted(unknown)}")
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        for key, value in data.items():
            if key in parts:
                if not isinstance(value, dict):
                    raise ValueError(f"config.{key}: expected a JSON object, got {_json_kind(value)}")
                sub_types = {f.name: f.type for f in dataclasses.fields(parts[key])}
                sub_unknown = set(value) - set(sub_types)
                if sub_unknown:
                    raise ValueError(f"unknown fields in config.{key}: {sorted(sub_unknown)}")
                for name, item in value.items():
                    _check_type(f"config.{key}.{name}", item, sub_types[name])
                kwargs[key] = parts[key](**value)
            elif key in ("image_mean", "image_std"):
                _check_type(f"config.{key}", value, types[key])
                kwargs[key] = tuple(float(v) for v in value)
            else:
                _check_type(f"config.{key}", value, types[key])
                kwargs[key] = value
        return cls(**kwargs)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json(), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> SeViLAConfig:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        try:
            return cls.from_dict(data)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: {err}") from None

    # ------------------------------------------------------------------ derived values
    @property
    def option_letters(self) -> str:
        """The letters of the options, in prompts and as scored tokens (`sevila.prompts.OPTION_LETTERS`)."""
        return OPTION_LETTERS

    @property
    def num_options(self) -> int:
        return len(OPTION_LETTERS)

    def keyframe_prefixes(self, count: int) -> list[str]:
        return [self.keyframe_prefix.format(i=i + 1) for i in range(count)]

    # ------------------------------------------------------------------ transformers configs
    def to_hf_vision_config(self):
        from transformers import Blip2VisionConfig

        v = self.vision
        return Blip2VisionConfig(
            hidden_size=v.hidden_size,
            intermediate_size=v.intermediate_size,
            num_hidden_layers=v.num_hidden_layers,
            num_attention_heads=v.num_attention_heads,
            image_size=v.image_size,
            patch_size=v.patch_size,
            hidden_act="gelu",  # exact erf GELU, as EVA's nn.GELU
            layer_norm_eps=v.layer_norm_eps,
            attention_dropout=0.0,
            qkv_bias=True,
            # transformers' BLIP-2 vision default is 1e-10, which leaves a ViT trained from scratch all but
            # dead (patch embeddings ~0, gradients ~0). Loaded checkpoints overwrite it; from scratch, use
            # the usual ViT scale.
            initializer_range=0.02,
        )

    def to_hf_qformer_config(self):
        from transformers import Blip2QFormerConfig

        q = self.qformer
        return Blip2QFormerConfig(
            hidden_size=q.hidden_size,
            num_hidden_layers=q.num_hidden_layers,
            num_attention_heads=q.num_attention_heads,
            intermediate_size=q.intermediate_size,
            hidden_act="gelu",
            hidden_dropout_prob=q.hidden_dropout_prob,
            attention_probs_dropout_prob=q.attention_probs_dropout_prob,
            layer_norm_eps=q.layer_norm_eps,
            cross_attention_frequency=q.cross_attention_frequency,
            encoder_hidden_size=self.vision.hidden_size,
            use_qformer_text_input=False,
        )

    def to_hf_t5_config(self):
        from transformers import T5Config

        t = self.language_model
        config = T5Config(
            vocab_size=t.vocab_size,
            d_model=t.d_model,
            d_kv=t.d_kv,
            d_ff=t.d_ff,
            num_layers=t.num_layers,
            num_decoder_layers=t.num_decoder_layers,
            num_heads=t.num_heads,
            relative_attention_num_buckets=t.relative_attention_num_buckets,
            relative_attention_max_distance=t.relative_attention_max_distance,
            dropout_rate=t.dropout_rate,
            layer_norm_epsilon=t.layer_norm_epsilon,
            feed_forward_proj=t.feed_forward_proj,
            tie_word_embeddings=t.tie_word_embeddings,
            pad_token_id=t.pad_token_id,
            eos_token_id=t.eos_token_id,
            decoder_start_token_id=t.decoder_start_token_id,
        )
        # T5Config derives dense_act_fn from feed_forward_proj ("gated-gelu" -> "gelu_new", the tanh
        # approximation); SeViLA overrides it to exact GELU after building the config.
        config.dense_act_fn = t.dense_act_fn
        # Original T5 rescales the decoder output by d_model**-0.5 before its tied head; Flan-T5 (untied)
        # does not. transformers 5 keeps that as `scale_decoder_outputs`, derived from the constructor's
        # arguments in a way that differs between its releases (5.0 scales Flan-T5): set it explicitly.
        config.scale_decoder_outputs = t.tie_word_embeddings
        return config


def _json_kind(value: Any) -> str:
    """How JSON would name ``value``'s type, for messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def _short(value: Any, limit: int = 40) -> str:
    text = json.dumps(value) if not isinstance(value, tuple) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_type(name: str, value: Any, annotation: Any) -> None:
    """``value`` of a config field matches its annotation (``int``, ``float``, ``str``, ``bool`` or a tuple of
    three floats); else a one-line `ValueError` naming the field, what it expects and what it got."""
    annotation = str(annotation)
    if annotation == "bool":
        ok = isinstance(value, bool)
    elif annotation == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif annotation == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif annotation == "str":
        ok = isinstance(value, str)
    elif annotation.startswith("tuple["):
        ok = (
            isinstance(value, (list, tuple))
            and len(value) == annotation.count(",") + 1
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        )
        annotation = f"a list of {annotation.count(',') + 1} numbers"
    else:  # pragma: no cover - every field has one of the types above
        return
    if not ok:
        expected = {"bool": "true or false", "int": "an integer", "float": "a number", "str": "a string"}
        raise ValueError(
            f"{name}: expected {expected.get(annotation, annotation)}, got {_json_kind(value)} {_short(value)}"
        )


def paper_config() -> SeViLAConfig:
    """The paper's model: EVA ViT-g/14 @224 (39 blocks), BERT-base Q-Formers (32 queries), Flan-T5-XL."""
    return SeViLAConfig()


def tiny_config() -> SeViLAConfig:
    """A few-hundred-thousand-parameter model of the same structure, for tests."""
    return SeViLAConfig(
        vision=VisionConfig(
            image_size=56,
            patch_size=14,
            hidden_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=209,
        ),
        qformer=QFormerConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            num_query_tokens=16,
        ),
        language_model=LanguageModelConfig(
            vocab_size=4416,
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=2,
            num_decoder_layers=2,
            num_heads=4,
        ),
        num_frames=8,
        num_keyframes=4,
    )


def mid_config() -> SeViLAConfig:
    """A mid-size model (tens of millions of parameters) for benchmarks on a CPU."""
    return SeViLAConfig(
        vision=VisionConfig(
            image_size=224,
            patch_size=14,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=6,
            intermediate_size=1536,
        ),
        qformer=QFormerConfig(
            hidden_size=384,
            num_hidden_layers=4,
            num_attention_heads=6,
            intermediate_size=1536,
            num_query_tokens=32,
        ),
        language_model=LanguageModelConfig(
            vocab_size=32128,
            d_model=512,
            d_kv=64,
            d_ff=1024,
            num_layers=6,
            num_decoder_layers=6,
            num_heads=8,
        ),
    )


PRESETS = {"paper": paper_config, "tiny": tiny_config, "mid": mid_config}
