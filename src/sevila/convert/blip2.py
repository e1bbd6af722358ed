"""A transformers BLIP-2 (``Salesforce/blip2-flan-t5-xl`` or a local directory) as SeViLA: the paper's
initialisation.

======================================  ==========================================================
BLIP-2 (transformers) key               SeViLA key
======================================  ==========================================================
``vision_model.post_layernorm.*``       ``answerer.layernorm.*`` and ``localizer.layernorm.*``
``vision_model.<rest>``                 ``vision.<rest>``
``qformer.<rest>``                      ``answerer.qformer.<rest>`` and ``localizer.qformer.<rest>``
``query_tokens``                        ``answerer.query_tokens`` and ``localizer.query_tokens``
``language_projection.*``               ``answerer.projection.*`` and ``localizer.projection.*``
``language_model.<rest>``               ``language_model.<rest>``
======================================  ==========================================================

BLIP-2's single Q-Former is copied into both branches. Its ``post_layernorm`` becomes both branches'
LayerNorm; note that SeViLA runs those LayerNorms with eps 1e-5 where BLIP-2's config says 1e-6. Ignored,
because SeViLA never uses them: the Q-Former's embeddings, its layers' text feed-forward
(``intermediate.*`` / ``output.*``) and ``position_ids`` buffers. Some exports nest every key under
``model.``; that prefix is dropped.

`from_blip2` builds the model on the meta device and copies BLIP-2's tensors in one by one, each in its
part's storage dtype (`sevila.model.weights`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch

from sevila.config import LanguageModelConfig, QFormerConfig, SeViLAConfig, VisionConfig
from sevila.convert.common import BRANCH_PREFIXES, ConvertedState, matches
from sevila.hub import BLIP2_HUB_ID, is_hub_id, resolve_directory
from sevila.model import SeViLA
from sevila.model.weights import (
    CONFIG_NAME,
    CheckpointError,
    TensorRef,
    directory_tensors,
    empty_model,
    finish_loading,
    load_tensors,
    read_json,
    require_complete,
    resolve_precision,
    saved_tokenizer,
)

logger = logging.getLogger(__name__)

BLIP2_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt"]  # what a BLIP-2 hub id needs downloaded

BLIP2_IGNORED = [
    r"^qformer\.embeddings\.",
    r"^qformer\.encoder\.layer\.\d+\.(intermediate|output)\.",
    r"\.position_ids$",
]


# ---------------------------------------------------------------------------------------------- key map
def blip2_key_map(keys: Iterable[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """transformers' BLIP-2 names -> ours, by names only: (our key -> BLIP-2 key, unexpected, ignored).
    The Q-Former and its neighbours go to both branches."""
    mapping: dict[str, str] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    for original in keys:
        key = re.sub(r"^model\.", "", original)  # some exports nest everything under "model."
        if matches(key, BLIP2_IGNORED):
            ignored.append(key)
        elif key.startswith("vision_model.post_layernorm."):
            for branch in BRANCH_PREFIXES.values():
                mapping[key.replace("vision_model.post_layernorm.", f"{branch}.layernorm.")] = original
        elif key.startswith("vision_model."):
            mapping["vision." + key[len("vision_model.") :]] = original
        elif key.startswith("qformer.") or key == "query_tokens":
            for branch in BRANCH_PREFIXES.values():
                mapping[f"{branch}.{key}"] = original
        elif key.startswith("language_projection."):
            for branch in BRANCH_PREFIXES.values():
                mapping[key.replace("language_projection.", f"{branch}.projection.")] = original
        elif key.startswith("language_model."):
            mapping[key] = original
        else:
            unexpected.append(key)
    return mapping, unexpected, ignored


def convert_blip2_state_dict(state: Mapping[str, torch.Tensor]) -> ConvertedState:
    """transformers' BLIP-2 names -> ours (`blip2_key_map`) on a state dict."""
    mapping, unexpected, ignored = blip2_key_map(state.keys())
    return ConvertedState({ours: state[theirs] for ours, theirs in mapping.items()}, unexpected, ignored)


def blip2_tensors(directory: Path) -> tuple[dict[str, TensorRef], list[str], list[str]]:
    """A BLIP-2 directory's tensors under our names, read lazily; with its unexpected and ignored keys."""
    tensors, _ = directory_tensors(directory)
    mapping, unexpected, ignored = blip2_key_map(tensors)
    return {ours: tensors[theirs] for ours, theirs in mapping.items()}, unexpected, ignored


# ---------------------------------------------------------------------------------------------- config
def config_from_blip2(blip2: Mapping, tokenizer_name: str = BLIP2_HUB_ID) -> SeViLAConfig:
    """A SeViLA config with the sizes of a transformers BLIP-2 (Flan-T5) ``config.json``."""
    if blip2.get("model_type") != "blip-2":
        raise CheckpointError(f"expected a BLIP-2 config (model_type 'blip-2'), got {blip2.get('model_type')!r}")
    v, q, t = blip2.get("vision_config", {}), blip2.get("qformer_config", {}), blip2.get("text_config", {})
    if t.get("model_type", "t5") != "t5":
        raise CheckpointError(f"SeViLA needs a BLIP-2 with a T5 language model, this one has {t.get('model_type')!r}")

    def pick(cls, source: Mapping, names: dict[str, str]):
        defaults = cls()
        return cls(**{ours: source.get(theirs, getattr(defaults, ours)) for ours, theirs in names.items()})

    vision = pick(
        VisionConfig,
        v,
        {
            n: n
            for n in (
                "image_size",
                "patch_size",
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "layer_norm_eps",
            )
        },
    )
    qformer = pick(
        QFormerConfig,
        q,
        {
            n: n
            for n in (
                "hidden_size",
                "num_hidden_layers",
                "num_attention_heads",
                "intermediate_size",
                "layer_norm_eps",
                "cross_attention_frequency",
                "hidden_dropout_prob",
                "attention_probs_dropout_prob",
            )
        },
    )
    qformer.num_query_tokens = blip2.get("num_query_tokens", qformer.num_query_tokens)
    language = pick(
        LanguageModelConfig,
        t,
        {
            n: n
            for n in (
                "vocab_size",
                "d_model",
                "d_kv",
                "d_ff",
                "num_layers",
                "num_decoder_layers",
                "num_heads",
                "relative_attention_num_buckets",
                "relative_attention_max_distance",
                "dropout_rate",
                "layer_norm_epsilon",
                "feed_forward_proj",
                "pad_token_id",
                "eos_token_id",
                "decoder_start_token_id",
            )
        },
    )
    if language.num_decoder_layers is None:
        language.num_decoder_layers = language.num_layers
    language.dense_act_fn = "gelu"  # SeViLA's exact-GELU override, whatever the checkpoint says
    language.tie_word_embeddings = False
    return SeViLAConfig(vision=vision, qformer=qformer, language_model=language, tokenizer_name=tokenizer_name)


def tokenizer_name(base: str | Path, blip2: Mapping) -> str:
    """The tokenizer name a model made from the BLIP-2 ``base`` records in its config: the hub id when ``base``
    is one, else the name BLIP-2's text config was made from (``google/flan-t5-xl``) or our default — never a
    local path (the tokenizer itself is saved with the model, in ``tokenizer/``)."""
    if is_hub_id(base):
        return str(base)
    text = blip2.get("text_config") or {}
    recorded = str(text.get("_name_or_path") or "") if isinstance(text, Mapping) else ""
    if is_hub_id(recorded):
        return recorded
    return SeViLAConfig().tokenizer_name


def is_blip2(directory: Path) -> bool:
    """Whether a model directory holds a transformers BLIP-2 (its ``config.json`` says ``model_type: blip-2``)."""
    return read_json(directory / CONFIG_NAME).get("model_type") == "blip-2"


# ---------------------------------------------------------------------------------------------- loading
def from_blip2(name_or_path: str | Path = BLIP2_HUB_ID, device=None, precision=None, log: bool = True) -> SeViLA:
    """SeViLA initialised from a transformers BLIP-2 (hub id or directory): the Q-Former in both branches.

    Each part is allocated in its ``precision`` storage dtype and BLIP-2's tensors are copied in one by one."""
    directory = resolve_directory(name_or_path, BLIP2_PATTERNS)
    raw = read_json(directory / CONFIG_NAME)
    config = config_from_blip2(raw, tokenizer_name=tokenizer_name(name_or_path, raw))
    tensors, unexpected, ignored = blip2_tensors(directory)
    precision = resolve_precision(precision, device)
    model = empty_model(config, saved_tokenizer(directory, config), device, precision)
    report = load_tensors(model, tensors, str(directory), unexpected, ignored)
    require_complete(report)
    if log:
        logger.info(report.summary())
    return finish_loading(model, precision)


__all__ = [
    "BLIP2_HUB_ID",
    "BLIP2_PATTERNS",
    "blip2_key_map",
    "blip2_tensors",
    "config_from_blip2",
    "convert_blip2_state_dict",
    "from_blip2",
    "is_blip2",
    "tokenizer_name",
]
