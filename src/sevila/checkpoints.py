"""Loading and saving SeViLA weights.

Three sources, one explicit key map each (our names are those of `SeViLA.state_dict()`):

1. **Our format** — a directory with ``config.json`` (a `SeViLAConfig`), ``model.safetensors`` and the tokenizer
   in ``tokenizer/``: `save_pretrained` / `from_pretrained` (directory or Hugging Face hub id).
2. **Hugging Face BLIP-2** (``Salesforce/blip2-flan-t5-xl`` or a local directory) — the paper's initialisation:

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
   LayerNorm; note that SeViLA runs those LayerNorms with eps 1e-5 where BLIP-2's config says 1e-6.
3. **The original LAVIS checkpoints** (``sevila_pretrained.pth`` with both branches, BLIP-2's
   ``blip2_pretrained_flant5xl.pth``, localizer-only stage checkpoints, ``eva_vit_g.pth``; see `LAVIS_RULES`):

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

Partial state dicts are fine (the rest of the model keeps its weights); every load returns a `LoadReport`
of what was loaded, missing, unexpected and ignored. A shape mismatch is an error naming the key and both
shapes. Every ``.pth``/``.bin`` is read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sevila.config import LanguageModelConfig, QFormerConfig, SeViLAConfig, VisionConfig

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
BLIP2_HUB_ID = "Salesforce/blip2-flan-t5-xl"
SEVILA_HUB_ID = "Shoubin/SeViLA"
SEVILA_CHECKPOINT_FILE = "sevila_pretrained.pth"
BRANCH_PREFIXES = {"": "answerer", "_loc": "localizer"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: names the file and, where it applies, the key and shapes."""


# ---------------------------------------------------------------------------------------------- reports
@dataclass
class LoadReport:
    source: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self, limit: int = 8) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors from {self.source}: "
            f"{len(self.missing)} missing, {len(self.unexpected)} unexpected, {len(self.ignored)} ignored (unused by SeViLA)"
        ]
        for title, keys in (("missing", self.missing), ("unexpected", self.unexpected), ("ignored", self.ignored)):
            if keys:
                shown = ", ".join(_group_keys(keys)[:limit])
                more = len(_group_keys(keys)) - limit
                lines.append(f"  {title}: {shown}" + (f", ... ({more} more groups)" if more > 0 else ""))
        return "\n".join(lines)


def _group_keys(keys: Iterable[str]) -> list[str]:
    """Collapse layer numbers so a report stays readable: ``a.layer.{0..11}.b`` style groups."""
    groups: dict[str, int] = {}
    for key in keys:
        pattern = re.sub(r"\.\d+\.", ".*.", key)
        groups[pattern] = groups.get(pattern, 0) + 1
    return [f"{pattern} (x{count})" if count > 1 else pattern for pattern, count in sorted(groups.items())]


# ---------------------------------------------------------------------------------------------- reading files
def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pth``/``.bin`` checkpoint (``ckpt["model"]`` if present)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of a corrupt or non-checkpoint file
        reason = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {reason})") from None
    if isinstance(data, Mapping) and "model" in data and isinstance(data["model"], Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors) or a dict with 'model'")
    return dict(data)


# ---------------------------------------------------------------------------------------------- key maps
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
        (_q + _QFORMER_LAYER + r"(attention|crossattention)\.self\.", rf"{_branch}.qformer.encoder.layer.\1.\2.attention."),
        (_q + _QFORMER_LAYER + r"(attention|crossattention)\.output\.", rf"{_branch}.qformer.encoder.layer.\1.\2.output."),
        (_q + _QFORMER_LAYER + r"(intermediate_query|output_query)\.", rf"{_branch}.qformer.encoder.layer.\1.\2."),
    ]

LAVIS_IGNORED = [
    r"\.position_ids$",
    r"^Qformer(_loc)?\.cls\.",
    r"^Qformer(_loc)?\.bert\.embeddings\.(word_embeddings|position_embeddings)\.",
    r"^Qformer(_loc)?\.bert\.encoder\.layer\.\d+\.(intermediate|output)\.",
    r"^visual_encoder\.(norm|head|fc_norm)\.",
]

BLIP2_IGNORED = [
    r"^qformer\.embeddings\.",
    r"^qformer\.encoder\.layer\.\d+\.(intermediate|output)\.",
    r"\.position_ids$",
]


def _matches(key: str, patterns: Iterable[str]) -> bool:
    return any(re.search(p, key) for p in patterns)


def _apply_rules(key: str, rules: list[tuple[str, str]]) -> str | None:
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return None


@dataclass
class ConvertedState:
    tensors: dict[str, torch.Tensor]
    unexpected: list[str]
    ignored: list[str]


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
        if _matches(key, LAVIS_IGNORED) or (block and int(block.group(1)) >= num_vision_layers):
            ignored.append(key)
            continue
        bias = re.match(r"^visual_encoder\.blocks\.(\d+)\.attn\.([qv])_bias$", key)
        if bias:
            qv_bias.setdefault(int(bias.group(1)), {})[bias.group(2)] = value
            continue
        new = _apply_rules(key, LAVIS_RULES)
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


def convert_blip2_state_dict(state: Mapping[str, torch.Tensor]) -> ConvertedState:
    """transformers' BLIP-2 names -> ours; the Q-Former and its neighbours go to both branches."""
    tensors: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    for key, value in state.items():
        key = re.sub(r"^model\.", "", key)  # some exports nest everything under "model."
        if _matches(key, BLIP2_IGNORED):
            ignored.append(key)
        elif key.startswith("vision_model.post_layernorm."):
            for branch in BRANCH_PREFIXES.values():
                tensors[key.replace("vision_model.post_layernorm.", f"{branch}.layernorm.")] = value
        elif key.startswith("vision_model."):
            tensors["vision." + key[len("vision_model.") :]] = value
        elif key.startswith("qformer.") or key == "query_tokens":
            for branch in BRANCH_PREFIXES.values():
                tensors[f"{branch}.{key}"] = value
        elif key.startswith("language_projection."):
            for branch in BRANCH_PREFIXES.values():
                tensors[key.replace("language_projection.", f"{branch}.projection.")] = value
        elif key.startswith("language_model."):
            tensors[key] = value
        else:
            unexpected.append(key)
    return ConvertedState(tensors, unexpected, ignored)


# ---------------------------------------------------------------------------------------------- loading into a model
def _aliases(model: torch.nn.Module) -> dict[str, str]:
    """Keys that are the same tensor as an earlier key (T5's tied input embeddings) -> that key."""
    first: dict[int, str] = {}
    aliases: dict[str, str] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        ptr = tensor.data_ptr() if tensor.device.type != "meta" else id(tensor)
        if ptr in first:
            aliases[key] = first[ptr]
        else:
            first[ptr] = key
    return aliases


def load_converted(model: torch.nn.Module, converted: ConvertedState, source: str) -> LoadReport:
    """Copy converted tensors into ``model`` (cast to each parameter's dtype); shapes must match."""
    own = model.state_dict(keep_vars=True)
    aliases = _aliases(model)
    report = LoadReport(source=source, unexpected=list(converted.unexpected), ignored=list(converted.ignored))
    for key, value in converted.tensors.items():
        key = aliases.get(key, key)
        if key not in own:
            report.unexpected.append(key)
            continue
        target = own[key]
        if tuple(target.shape) != tuple(value.shape):
            raise CheckpointError(
                f"{source}: shape mismatch for {key}: checkpoint has {tuple(value.shape)}, "
                f"model expects {tuple(target.shape)}"
            )
        with torch.no_grad():
            target.data.copy_(value.to(dtype=target.dtype))
        if key not in report.loaded:
            report.loaded.append(key)
    loaded = set(report.loaded)
    report.missing = [k for k in own if k not in loaded and k not in aliases]
    return report


def load_lavis_checkpoint(model, checkpoint: str | Path | Mapping[str, torch.Tensor], log: bool = True) -> LoadReport:
    """Load an original LAVIS-format checkpoint (a ``.pth`` path or its state dict: full, partial,
    branch-only, or EVA ViT-g) into ``model``; tensors it does not cover keep their values."""
    source = "state dict" if isinstance(checkpoint, Mapping) else str(checkpoint)
    state = checkpoint if isinstance(checkpoint, Mapping) else read_state_dict(checkpoint)
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


# ---------------------------------------------------------------------------------------------- hub / directories
def resolve_directory(name_or_path: str | Path, patterns: list[str] | None = None) -> Path:
    """A local directory as is; otherwise a Hugging Face hub id downloaded (or taken from the cache)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{name} is a file; expected a model directory or a Hugging Face hub id")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", name):
        raise FileNotFoundError(f"model directory not found: {name} (nor is it a Hugging Face hub id 'owner/name')")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=patterns))
    except Exception as err:  # offline, unknown repo, auth: one clear line instead of a network traceback
        raise CheckpointError(
            f"could not get {name} from the Hugging Face Hub ({type(err).__name__}: {err}); "
            "download it elsewhere and pass the local directory"
        ) from None


def hub_file(repo_id: str, filename: str) -> Path:
    """One file of a hub repository (e.g. ``Shoubin/SeViLA`` / ``sevila_pretrained.pth``)."""
    from huggingface_hub import hf_hub_download

    try:
        return Path(hf_hub_download(repo_id=repo_id, filename=filename))
    except Exception as err:
        raise CheckpointError(
            f"could not get {filename} from {repo_id} on the Hugging Face Hub ({type(err).__name__}: {err})"
        ) from None


def _read_directory_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a transformers-style directory (single file or sharded, safetensors or .bin)."""
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(read_state_dict(directory / shard))
            return state
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (directory / name).is_file():
            return read_state_dict(directory / name)
    raise CheckpointError(f"{directory}: no model.safetensors, pytorch_model.bin or shard index found")


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: no {path.name}; is this a model directory?") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None


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

    vision = pick(VisionConfig, v, {n: n for n in ("image_size", "patch_size", "hidden_size", "num_hidden_layers",
                                                   "num_attention_heads", "intermediate_size", "layer_norm_eps")})
    qformer = pick(QFormerConfig, q, {n: n for n in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                     "intermediate_size", "layer_norm_eps",
                                                     "cross_attention_frequency", "hidden_dropout_prob",
                                                     "attention_probs_dropout_prob")})
    qformer.num_query_tokens = blip2.get("num_query_tokens", qformer.num_query_tokens)
    language = pick(LanguageModelConfig, t, {n: n for n in ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers",
                                                            "num_decoder_layers", "num_heads",
                                                            "relative_attention_num_buckets",
                                                            "relative_attention_max_distance", "dropout_rate",
                                                            "layer_norm_epsilon", "feed_forward_proj",
                                                            "pad_token_id", "eos_token_id",
                                                            "decoder_start_token_id")})
    if language.num_decoder_layers is None:
        language.num_decoder_layers = language.num_layers
    language.dense_act_fn = "gelu"  # SeViLA's exact-GELU override, whatever the checkpoint says
    language.tie_word_embeddings = False
    return SeViLAConfig(vision=vision, qformer=qformer, language_model=language, tokenizer_name=tokenizer_name)


TOKENIZER_DIR = "tokenizer"


def _tokenizer_for(directory: Path, config: SeViLAConfig):
    """The tokenizer saved with a model (our ``tokenizer/`` folder or a transformers directory's top
    level), else the one the config names."""
    from sevila.model.text import load_tokenizer

    for candidate in (directory / TOKENIZER_DIR, directory):
        if any((candidate / n).is_file() for n in ("tokenizer.json", "spiece.model", "tokenizer_config.json")):
            return load_tokenizer(candidate)
    return load_tokenizer(config.tokenizer_name)


def _build(config: SeViLAConfig, tokenizer, device: torch.device | str | None):
    """Construct without spending time on random initialisation: every weight is loaded right after."""
    from sevila.model import SeViLA
    from sevila.model.sevila import tie_input_embeddings

    with torch.device("meta"):
        model = SeViLA(config)
    model.to_empty(device=device or "cpu")
    tie_input_embeddings(model.language_model)
    if tokenizer is not None:  # after leaving the meta device: the tokenizer makes tensors of its own
        model.set_tokenizer(tokenizer)
    return model


def _require_complete(report: LoadReport) -> None:
    if report.missing:
        raise CheckpointError(
            f"{report.source}: the checkpoint lacks {len(report.missing)} weights of the model, e.g. "
            f"{', '.join(_group_keys(report.missing)[:5])}"
        )


def from_blip2(name_or_path: str | Path = BLIP2_HUB_ID, device=None, precision=None, log: bool = True):
    """SeViLA initialised from a transformers BLIP-2 (hub id or directory): the Q-Former in both branches."""
    directory = resolve_directory(name_or_path, ["*.json", "*.safetensors", "*.model", "*.txt"])
    config = config_from_blip2(_read_json(directory / CONFIG_NAME), tokenizer_name=str(name_or_path))
    model = _build(config, _tokenizer_for(directory, config), device)
    report = load_converted(model, convert_blip2_state_dict(_read_directory_weights(directory)), str(directory))
    _require_complete(report)
    if log:
        logger.info(report.summary())
    return _finish(model, precision)


def from_pretrained(name_or_path: str | Path, device=None, precision=None):
    """Our format (directory or hub id); a BLIP-2 directory or hub id is accepted too (see `from_blip2`)."""
    directory = resolve_directory(name_or_path)
    raw = _read_json(directory / CONFIG_NAME)
    if raw.get("model_type") == "blip-2":
        return from_blip2(directory, device=device, precision=precision)
    try:
        config = SeViLAConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {err}") from None
    weights = directory / WEIGHTS_NAME
    model = _build(config, _tokenizer_for(directory, config), device)
    report = load_converted(model, ConvertedState(read_state_dict(weights), [], []), str(weights))
    _require_complete(report)
    if report.unexpected:
        raise CheckpointError(f"{weights}: unexpected weights {', '.join(_group_keys(report.unexpected)[:5])}")
    return _finish(model, precision)


def _finish(model, precision):
    from sevila.model.precision import Precision

    model.eval()
    model.apply_precision(precision or Precision.for_device(model.device))
    return model


def save_pretrained(model, directory: str | Path) -> None:
    """Write ``config.json``, ``model.safetensors`` (tied aliases stored once) and the tokenizer.

    Files are written to a temporary name first and renamed, so an interrupted save never leaves a
    half-written checkpoint under the final name.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    aliases = _aliases(model)
    tensors = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items() if k not in aliases}
    _atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(tensors, tmp, metadata={"format": "pt"}))
    _atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(model.config.to_json(), encoding="utf-8"))
    if model.tokenizer is not None:
        # In its own folder: transformers' AutoTokenizer would otherwise read our config.json as its own.
        model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))


def _atomic_write(target: Path, write: Callable[[str], None]) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_original_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    base: str | Path | None = None,
    config: SeViLAConfig | None = None,
    tokenizer: str | None = None,
) -> LoadReport:
    """Turn an original LAVIS checkpoint into our format.

    With ``base`` (a BLIP-2 hub id or directory) the model starts from BLIP-2 (ViT, T5, Q-Former in both
    branches) and the checkpoint's tensors overwrite what they cover — the usual case, since SeViLA's own
    checkpoints hold only the two branches. Without it, the checkpoint must be complete and ``config``
    gives the sizes.
    """
    from sevila.model.precision import Precision
    from sevila.model.text import load_tokenizer

    if base is None and config is None:
        raise ValueError("converting without --base needs a config (a preset name or a config.json)")
    state = read_state_dict(checkpoint)  # fail on a bad file before fetching anything else
    if base is not None:
        model = from_blip2(base, precision=Precision())
    else:
        model = _build(config, load_tokenizer(tokenizer or config.tokenizer_name), None)
    report = load_lavis_checkpoint(model, state)
    report.source = str(checkpoint)
    if base is None:
        _require_complete(report)
    save_pretrained(model, output_dir)
    return report


DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"


def demo_model_dir() -> Path:
    """The demo model shipped with the package (a tiny SeViLA of the synthetic world, see `sevila.demo`)."""
    path = DEMO_DIR / "model"
    if not (path / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"the demo model is not installed at {path}; build it with `python -m sevila.demo.build --ship`"
        )
    return path


# Models known by a short name, resolved to a directory.
NAMED_MODELS: dict[str, Callable[[], Path]] = {"demo": demo_model_dir}


def load_model(name_or_path: str | Path, device=None, precision=None):
    """A model by short name (`NAMED_MODELS`), directory or hub id, ready for inference."""
    name = str(name_or_path)
    if name in NAMED_MODELS:
        name_or_path = NAMED_MODELS[name]()
    return from_pretrained(name_or_path, device=device, precision=precision)
