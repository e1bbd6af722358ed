"""The original LAVIS checkpoints as SeViLA: ``sevila_pretrained.pth`` (both branches), BLIP-2's
``blip2_pretrained_flant5xl.pth``, localizer-only stage checkpoints and ``eva_vit_g.pth`` (see `LAVIS_RULES`).

==================================================  ==================================================
LAVIS key                                           SeViLA key
==================================================  ==================================================
``visual_encoder.cls_token`` / ``.pos_embed``       ``vision.embeddings.class_embedding`` / ``.position_embedding``
``visual_encoder.patch_embed.proj.*``               ``vision.embeddings.patch_embedding.*``
``visual_encoder.blocks.i.norm{1,2}.*``             ``vision.encoder.layers.i.layer_norm{1,2}.*``
``visual_encoder.blocks.i.attn.qkv.weight``         ``vision.encoder.layers.i.self_attn.qkv.weight``
``visual_encoder.blocks.i.attn.{q,v}_bias``         ``vision.encoder.layers.i.self_attn.qkv.bias`` = [q, 0, v]
``visual_encoder.blocks.i.attn.proj.*``             ``vision.encoder.layers.i.self_attn.projection.*``
``visual_encoder.blocks.i.mlp.fc{1,2}.*``           ``vision.encoder.layers.i.mlp.fc{1,2}.*``
``ln_vision.*`` / ``ln_vision_loc.*``               ``answerer.layernorm.*`` / ``localizer.layernorm.*``
``query_tokens`` / ``query_tokens_loc``             ``answerer.query_tokens`` / ``localizer.query_tokens``
``Qformer.bert.embeddings.LayerNorm.*``             ``answerer.qformer.layernorm.*``
``Qformer.bert.encoder.layer.i.X.self.*``           ``answerer.qformer.encoder.layer.i.X.attention.*`` (X = attention, crossattention)
``Qformer.bert.encoder.layer.i.<rest>``             ``answerer.qformer.encoder.layer.i.<rest>``
``Qformer_loc.*``                                   the same under ``localizer.``
``t5_proj.*`` / ``t5_proj_loc.*``                   ``answerer.projection.*`` / ``localizer.projection.*``
``t5_model.<rest>``                                 ``language_model.<rest>``
==================================================  ==================================================

Ignored, because SeViLA never uses them: Q-Former ``position_ids`` buffers, ``cls.*`` LM heads, word and
position embeddings and the text feed-forward (``intermediate.*`` / ``output.*``) of the Q-Former layers,
and ViT blocks beyond the configured depth (EVA-CLIP-g's 40th block) or its final ``norm``/``head``.
``eva_vit_g.pth`` stores the ViT without the ``visual_encoder.`` prefix; it is recognised and prefixed.

Partial state dicts are fine: tensors a checkpoint does not cover keep their values, and the `LoadReport`
says what was loaded, missing, unexpected and ignored. `convert_original_checkpoint` builds no model at all:
it streams BLIP-2's and the LAVIS checkpoint's tensors, renamed, into safetensors shards
(`sevila.model.weights.save_tensors`).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from sevila.config import SeViLAConfig
from sevila.convert.blip2 import BLIP2_PATTERNS, blip2_tensors, config_from_blip2, tokenizer_name
from sevila.convert.common import BRANCH_PREFIXES, ConvertedState, apply_rules, load_converted, matches
from sevila.hub import (
    BLIP2_HUB_ID,
    MODEL_CARD_NAME,
    PAPER_CHECKPOINT,
    SEVILA_HUB_ID,
    hub_file,
    hub_revision,
    is_hub_id,
    model_card,
    provenance,
    resolve_directory,
)
from sevila.model.text import PromptTokenizer, tokenizer_from
from sevila.model.weights import (
    CONFIG_NAME,
    DEFAULT_MAX_SHARD_SIZE,
    CheckpointError,
    LoadedTensor,
    LoadReport,
    TensorRef,
    group_keys,
    meta_model,
    read_json,
    read_state_dict,
    require_complete,
    save_config_and_tokenizer,
    save_tensors,
    saved_tokenizer,
    tied_aliases,
)
from sevila.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

PROVENANCE_NAME = "provenance.json"  # beside a converted model: what produced it, from what, and when


# ---------------------------------------------------------------------------------------------- checks
class FiniteWatch(TensorRef):
    """A tensor whose reads are checked for NaN and infinite values (counted per key in ``found``), so a
    streamed conversion notices a damaged source without reading anything twice."""

    def __init__(self, ref: TensorRef, key: str, found: dict[str, int]):
        self.ref, self.key, self.found = ref, key, found
        self.shape, self.dtype, self.origin = ref.shape, ref.dtype, ref.origin

    def read(self) -> torch.Tensor:
        tensor = self.ref.read()
        if tensor.is_floating_point() and tensor.numel():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                self.found[self.key] = bad
        return tensor


def warn_nonfinite(found: Mapping[str, int], origin_of: Mapping[str, str], limit: int = 5) -> None:
    """One warning per tensor holding NaN or inf values (at most ``limit``, then a count of the rest)."""
    for key, count in list(found.items())[:limit]:
        logger.warning("%s: %s holds %d NaN or infinite values", origin_of.get(key, "?"), key, count)
    if len(found) > limit:
        logger.warning("... and %d more tensors with NaN or infinite values", len(found) - limit)


# ---------------------------------------------------------------------------------------------- key map
_QFORMER_LAYER = r"bert\.encoder\.layer\.(\d+)\."
LAVIS_RULES: list[tuple[str, str]] = [
    (r"^visual_encoder\.cls_token$", "vision.embeddings.class_embedding"),
    (r"^visual_encoder\.pos_embed$", "vision.embeddings.position_embedding"),
    (r"^visual_encoder\.patch_embed\.proj\.(weight|bias)$", r"vision.embeddings.patch_embedding.\1"),
    (r"^visual_encoder\.blocks\.(\d+)\.norm([12])\.", r"vision.encoder.layers.\1.layer_norm\2."),
    (r"^visual_encoder\.blocks\.(\d+)\.attn\.qkv\.weight$", r"vision.encoder.layers.\1.self_attn.qkv.weight"),
    (r"^visual_encoder\.blocks\.(\d+)\.attn\.proj\.", r"vision.encoder.layers.\1.self_attn.projection."),
    (r"^visual_encoder\.blocks\.(\d+)\.mlp\.(fc[12])\.", r"vision.encoder.layers.\1.mlp.\2."),
    (r"^ln_vision\.", "answerer.layernorm."),
    (r"^ln_vision_loc\.", "localizer.layernorm."),
    (r"^query_tokens$", "answerer.query_tokens"),
    (r"^query_tokens_loc$", "localizer.query_tokens"),
    (r"^t5_proj\.", "answerer.projection."),
    (r"^t5_proj_loc\.", "localizer.projection."),
    (r"^t5_model\.", "language_model."),
]
for _suffix, _branch in BRANCH_PREFIXES.items():
    _q = rf"^Qformer{_suffix}\."
    LAVIS_RULES += [
        (_q + r"bert\.embeddings\.LayerNorm\.", f"{_branch}.qformer.layernorm."),
        (
            _q + _QFORMER_LAYER + r"(attention|crossattention)\.self\.",
            rf"{_branch}.qformer.encoder.layer.\1.\2.attention.",
        ),
        (
            _q + _QFORMER_LAYER + r"(attention|crossattention)\.output\.",
            rf"{_branch}.qformer.encoder.layer.\1.\2.output.",
        ),
        (_q + _QFORMER_LAYER + r"(intermediate_query|output_query)\.", rf"{_branch}.qformer.encoder.layer.\1.\2."),
    ]

LAVIS_IGNORED = [
    r"\.position_ids$",
    r"^Qformer(_loc)?\.cls\.",
    r"^Qformer(_loc)?\.bert\.embeddings\.(word_embeddings|position_embeddings)\.",
    r"^Qformer(_loc)?\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.",
    r"^visual_encoder\.(norm|head|fc_norm)\.",
]


def lavis_key(key: str) -> str | None:
    """A LAVIS name -> ours by `LAVIS_RULES` (None when no rule covers it). The ViT's q/v biases are merged by
    `convert_lavis_state_dict`, not renamed one by one."""
    return apply_rules(key, LAVIS_RULES)


def convert_lavis_state_dict(state: Mapping[str, torch.Tensor], num_vision_layers: int) -> ConvertedState:
    """LAVIS (original SeViLA / BLIP-2) names -> ours. ``num_vision_layers`` drops EVA's extra blocks."""
    if any(k.startswith(("blocks.", "patch_embed.")) or k in ("cls_token", "pos_embed") for k in state):
        state = {f"visual_encoder.{k}": v for k, v in state.items()}  # eva_vit_g.pth has no prefix
    tensors: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    qv_bias: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        block = re.match(r"^visual_encoder\.blocks\.(\d+)\.", key)
        if matches(key, LAVIS_IGNORED) or (block and int(block.group(1)) >= num_vision_layers):
            ignored.append(key)
            continue
        bias = re.match(r"^visual_encoder\.blocks\.(\d+)\.attn\.([qv])_bias$", key)
        if bias:
            qv_bias.setdefault(int(bias.group(1)), {})[bias.group(2)] = value
            continue
        new = lavis_key(key)
        if new is None:
            unexpected.append(key)
        else:
            tensors[new] = value
    for layer, parts in qv_bias.items():
        if set(parts) != {"q", "v"}:
            raise CheckpointError(f"ViT block {layer} has only {sorted(parts)}_bias; q_bias and v_bias come together")
        # EVA has no key bias; transformers' fused qkv bias holds a zero segment in its place.
        tensors[f"vision.encoder.layers.{layer}.self_attn.qkv.bias"] = torch.cat(
            [parts["q"], torch.zeros_like(parts["q"]), parts["v"]]
        )
    return ConvertedState(tensors, unexpected, ignored)


# ---------------------------------------------------------------------------------------------- loading
def load_lavis_checkpoint(model, checkpoint: str | Path | Mapping[str, torch.Tensor], log: bool = True) -> LoadReport:
    """Load an original LAVIS-format checkpoint (a ``.pth`` path or its state dict: full, partial,
    branch-only, or EVA ViT-g) into ``model``; tensors it does not cover keep their values."""
    source = "state dict" if isinstance(checkpoint, Mapping) else str(checkpoint)
    state = checkpoint if isinstance(checkpoint, Mapping) else read_state_dict(checkpoint, mmap=True)
    converted = convert_lavis_state_dict(state, model.config.vision.num_hidden_layers)
    report = load_converted(model, converted, source)
    if not report.loaded:
        raise CheckpointError(
            f"{source}: none of its {len(state)} tensors is a SeViLA/BLIP-2 weight in LAVIS naming "
            f"(first keys: {list(state)[:3]}); is this the right checkpoint?"
        )
    if log:
        logger.info(report.summary())
    return report


# ---------------------------------------------------------------------------------------------- converting
def convert_original_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    base: str | Path | None = None,
    config: SeViLAConfig | None = None,
    tokenizer: str | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: int | None = DEFAULT_MAX_SHARD_SIZE,
    *,
    base_revision: str | None = None,
    token: str | bool | None = None,
    checkpoint_source: dict | None = None,
) -> LoadReport:
    """Turn an original LAVIS checkpoint into our format.

    With ``base`` (a BLIP-2 hub id or directory) the model starts from BLIP-2 (ViT, T5, Q-Former in both
    branches) and the checkpoint's tensors overwrite what they cover — the usual case, since SeViLA's own
    checkpoints hold only the two branches. Without it, the checkpoint must be complete and ``config``
    gives the sizes.

    No model is built: every tensor is read from its source (BLIP-2's safetensors one at a time, the
    checkpoint memory-mapped), renamed and written to safetensors shards of at most ``max_shard_size`` bytes,
    so the memory needed stays near the largest tensor (plus the pages of the checkpoint file it read).
    Tensors keep their stored dtype unless ``dtype`` is given. The report counts every weight written as
    loaded, with how many each source supplied.

    ``base_revision`` pins a hub id ``base``; ``checkpoint_source`` (``repo``, ``file``, ``revision``) says where
    the checkpoint was downloaded from, for the model card (``README.md``) and ``provenance.json`` written
    beside the weights.
    """
    if base is None and config is None:
        raise ValueError("converting without --base needs a config (a preset name or a config.json)")
    checkpoint = Path(checkpoint)
    state = read_state_dict(checkpoint, mmap=True)  # fail on a bad file before fetching anything else
    sources: list[tuple[str, str, dict[str, TensorRef]]] = []  # (name in the report, file for errors, tensors)
    unexpected: list[str] = []
    ignored: list[str] = []
    if base is not None:
        directory = resolve_directory(base, BLIP2_PATTERNS, revision=base_revision, token=token)
        blip2 = read_json(directory / CONFIG_NAME)
        config = config_from_blip2(blip2, tokenizer_name=tokenizer_name(base, blip2))
        text_tokenizer = saved_tokenizer(directory, config)
        base_tensors, base_unexpected, base_ignored = blip2_tensors(directory)
        sources.append((f"base {base}", str(directory), base_tensors))
        unexpected += base_unexpected
        ignored += base_ignored
    else:
        text_tokenizer = tokenizer_from(tokenizer or config.tokenizer_name)
    PromptTokenizer(text_tokenizer, config)  # the checks a model makes when given its tokenizer
    converted = convert_lavis_state_dict(state, config.vision.num_hidden_layers)
    ignored += converted.ignored
    unexpected += converted.unexpected
    sources.append(
        (
            str(checkpoint),
            str(checkpoint),
            {key: LoadedTensor(value, str(checkpoint)) for key, value in converted.tensors.items()},
        )
    )

    model = meta_model(config)
    own = {key: tuple(value.shape) for key, value in model.state_dict(keep_vars=True).items()}
    aliases = tied_aliases(model)
    plan: dict[str, tuple[TensorRef, str]] = {}
    for name, file, tensors in sources:  # later sources overwrite earlier ones
        for key, ref in tensors.items():
            key = aliases.get(key, key)
            if key not in own:
                unexpected.append(key)
                continue
            if own[key] != tuple(ref.shape):
                raise CheckpointError(
                    f"{file}: shape mismatch for {key}: checkpoint has {tuple(ref.shape)}, model expects {own[key]}"
                )
            plan[key] = (ref, name)
    if not any(name == str(checkpoint) for _, name in plan.values()):
        raise CheckpointError(
            f"{checkpoint}: none of its {len(state)} tensors is a SeViLA/BLIP-2 weight in LAVIS naming "
            f"(first keys: {list(state)[:3]}); is this the right checkpoint?"
        )
    loaded = [key for key in own if key in plan]
    origins: dict[str, int] = {}
    for name, _, _ in reversed(sources):
        origins[name] = sum(1 for key in loaded if plan[key][1] == name)
    report = LoadReport(
        source=str(checkpoint),
        loaded=loaded,
        missing=[k for k in own if k not in plan and k not in aliases],
        unexpected=unexpected,
        ignored=ignored,
        origins=origins if base is not None else {},
    )
    if report.missing:
        if base is not None:
            raise CheckpointError(
                f"{sources[0][1]}: the BLIP-2 base lacks {len(report.missing)} weights of the model, e.g. "
                f"{', '.join(group_keys(report.missing)[:5])}"
            )
        require_complete(report)
    nonfinite: dict[str, int] = {}
    watched = {key: FiniteWatch(plan[key][0], key, nonfinite) for key in loaded}
    save_tensors(output_dir, watched, max_shard_size, dtype)
    save_config_and_tokenizer(output_dir, config, text_tokenizer)
    if nonfinite:
        warn_nonfinite(nonfinite, {key: plan[key][0].origin for key in loaded})
    sources_record = [{"checkpoint": str(checkpoint.resolve()), "bytes": checkpoint.stat().st_size}]
    card_sources = [{"role": "both Q-Former branches", **(checkpoint_source or {"path": checkpoint.name})}]
    if checkpoint_source:
        sources_record[0].update(checkpoint_source)
    if base is not None:
        revision = hub_revision(directory)
        sources_record.append({"base": str(base), "directory": str(directory), "revision": revision})
        where = {"repo": str(base), "revision": revision} if is_hub_id(base) else {"path": Path(base).name}
        card_sources.append({"role": "EVA ViT-g, Flan-T5 and the rest", **where})
    record = provenance(
        command="convert",
        sources=sources_record,
        dtype=str(dtype).removeprefix("torch.") if dtype is not None else None,
        tensors_written=len(loaded),
        nonfinite_tensors=dict(nonfinite),
    )
    atomic_write_text(Path(output_dir) / PROVENANCE_NAME, json.dumps(record, indent=2) + "\n")
    paper = bool(checkpoint_source) and checkpoint_source.get("file") == PAPER_CHECKPOINT
    card = model_card(
        name=str(output_dir),
        sources=card_sources,
        paper=paper,
        num_frames=config.num_frames,
        num_keyframes=config.num_keyframes,
    )
    atomic_write_text(Path(output_dir) / MODEL_CARD_NAME, str(card))
    return report


def convert_paper_model(
    output_dir: str | Path,
    *,
    revision: str | None = None,
    base_revision: str | None = None,
    token: str | bool | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: int | None = DEFAULT_MAX_SHARD_SIZE,
) -> LoadReport:
    """The paper's model, ready to load: the released ``sevila_pretrained.pth`` (`SEVILA_HUB_ID`, at
    ``revision``) over BLIP-2 (`BLIP2_HUB_ID`, at ``base_revision``), both taken from the Hugging Face cache or
    downloaded into it, converted into ``output_dir`` with a model card. The checkpoint (815 MB) is fetched
    before BLIP-2 (16 GB), so an unreachable hub fails before the long download."""
    path = hub_file(SEVILA_HUB_ID, PAPER_CHECKPOINT, revision=revision, token=token)
    source = {"repo": SEVILA_HUB_ID, "file": PAPER_CHECKPOINT, "revision": hub_revision(path.parent) or revision}
    return convert_original_checkpoint(
        path,
        output_dir,
        BLIP2_HUB_ID,
        dtype=dtype,
        max_shard_size=max_shard_size,
        base_revision=base_revision,
        token=token,
        checkpoint_source=source,
    )


__all__ = [
    "DEFAULT_MAX_SHARD_SIZE",
    "PROVENANCE_NAME",
    "FiniteWatch",
    "LAVIS_IGNORED",
    "LAVIS_RULES",
    "convert_lavis_state_dict",
    "convert_original_checkpoint",
    "convert_paper_model",
    "lavis_key",
    "load_lavis_checkpoint",
]
