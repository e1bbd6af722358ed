"""Loading and saving SeViLA weights.

Three sources, one explicit key map each (our names are those of `SeViLA.state_dict()`):

1. **Our format** — a directory with ``config.json`` (a `SeViLAConfig`), the weights (``model.safetensors``, or
   shards listed in ``model.safetensors.index.json`` as `convert_original_checkpoint` writes them) and the
   tokenizer in ``tokenizer/``: `save_pretrained` / `from_pretrained` (directory or Hugging Face hub id).
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

Memory: nothing is held twice. `from_pretrained` / `from_blip2` build the model on the meta device, give each
parameter its storage dtype (``precision``), allocate it once and copy the checkpoint in tensor by tensor, cast
on the way: the peak is the model in its target dtype plus one tensor. Safetensors files are read with plain
``readinto`` at each tensor's offset (`SafetensorsFile`), not through a memory map, whose touched pages would
count as the process's memory until the whole file is closed. ``.pth``/``.bin`` files are memory-mapped
(``torch.load(mmap=True)``) when they are zip archives. `convert_original_checkpoint` builds no model at all:
it streams BLIP-2's and the LAVIS checkpoint's tensors, renamed, into safetensors shards (`save_tensors`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import struct
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sevila.config import LanguageModelConfig, QFormerConfig, SeViLAConfig, VisionConfig

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
DEFAULT_MAX_SHARD_SIZE = 5 * 10**9  # bytes per safetensors shard `convert_original_checkpoint` writes ("5GB")
BLIP2_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt"]  # what a BLIP-2 hub id needs downloaded
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
    # Where the loaded tensors came from when there is more than one source (a checkpoint over a base):
    # source -> count. Empty: all from ``source``.
    origins: dict[str, int] = field(default_factory=dict)

    def summary(self, limit: int = 8) -> str:
        if self.origins:
            where = "(" + ", ".join(f"{count} from {name}" for name, count in self.origins.items()) + ")"
        else:
            where = f"from {self.source}"
        lines = [
            f"loaded {len(self.loaded)} tensors {where}: "
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
def _torch_load(path: Path, mmap: bool):
    """``torch.load`` of a checkpoint, memory-mapped when asked and the file is a zip archive (torch's format
    since 1.6; older pickles cannot be mapped and are read whole)."""
    try:
        mmap = mmap and zipfile.is_zipfile(path)
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as err:  # pickle/zip errors of a corrupt or non-checkpoint file
        reason = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {reason})") from None


def read_state_dict(path: str | Path, mmap: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file or a ``.pth``/``.bin`` checkpoint (``ckpt["model"]`` if present).

    With ``mmap`` a ``.pth``/``.bin`` is memory-mapped: its tensors are read from the file when first used.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return {key: ref.read() for key, ref in SafetensorsFile(path).tensors.items()}
    data = _torch_load(path, mmap)
    if isinstance(data, Mapping) and "model" in data and isinstance(data["model"], Mapping):
        data = data["model"]
    if not isinstance(data, Mapping) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors) or a dict with 'model'")
    return dict(data)


class TensorRef:
    """One tensor of a checkpoint, read only when it is copied or written (`read`, `copy_to`)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    origin: str  # the file it comes from, for messages

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize

    def read(self) -> torch.Tensor:
        raise NotImplementedError

    def copy_to(self, target: torch.Tensor) -> None:
        """Copy into ``target`` (same shape; cast to its dtype and moved to its device)."""
        with torch.no_grad():
            target.copy_(self.read())


class _LoadedTensor(TensorRef):
    """A tensor already at hand (in memory, or memory-mapped by ``torch.load(mmap=True)``)."""

    def __init__(self, tensor: torch.Tensor, origin: str):
        self.tensor, self.origin = tensor, origin
        self.shape, self.dtype = tuple(tensor.shape), tensor.dtype

    def read(self) -> torch.Tensor:
        return self.tensor


_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (("F8_E4M3", "float8_e4m3fn"), ("F8_E5M2", "float8_e5m2"), ("U16", "uint16"),
                     ("U32", "uint32"), ("U64", "uint64")):
    if hasattr(torch, _attr):
        _SAFETENSORS_DTYPES[_name] = getattr(torch, _attr)
_SAFETENSORS_NAMES = {dtype: name for name, dtype in _SAFETENSORS_DTYPES.items()}


def _byte_view(tensor: torch.Tensor) -> memoryview:
    """The bytes of a contiguous CPU tensor, sharing its memory."""
    return memoryview(tensor.detach().reshape(-1).view(torch.uint8).numpy())


class _SafetensorsTensor(TensorRef):
    def __init__(self, path: Path, key: str, offset: int, shape: tuple[int, ...], dtype: torch.dtype):
        self.path, self.key, self.offset = path, key, offset
        self.shape, self.dtype, self.origin = shape, dtype, str(path)

    def _fill(self, out: torch.Tensor) -> torch.Tensor:
        if out.numel() == 0:
            return out
        buffer = _byte_view(out)
        with open(self.path, "rb", buffering=0) as f:
            f.seek(self.offset)
            done = 0
            while done < len(buffer):
                count = f.readinto(buffer[done:])
                if not count:
                    raise CheckpointError(f"{self.path}: truncated file, {self.key} ends past its end")
                done += count
        return out

    def read(self) -> torch.Tensor:
        return self._fill(torch.empty(self.shape, dtype=self.dtype))

    def copy_to(self, target: torch.Tensor) -> None:
        if target.device.type == "cpu" and target.dtype == self.dtype and target.is_contiguous():
            self._fill(target.detach())  # straight into the parameter: no temporary at all
        else:
            super().copy_to(target)


class SafetensorsFile:
    """The tensors of a ``.safetensors`` file, each read on its own from its offset (no memory map)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.tensors: dict[str, TensorRef] = {}
        key = None
        try:
            with open(self.path, "rb") as f:
                size = os.fstat(f.fileno()).st_size
                head = f.read(8)
                if len(head) != 8:
                    raise ValueError("shorter than the 8-byte header length")
                (length,) = struct.unpack("<Q", head)
                if length > size - 8:
                    raise ValueError(f"header length {length} exceeds the file's {size} bytes")
                header = json.loads(f.read(length).decode("utf-8"))
            if not isinstance(header, dict):
                raise ValueError("its header is not a JSON object")
            start = 8 + length
            for key, info in header.items():
                if key == "__metadata__":
                    continue
                if info["dtype"] not in _SAFETENSORS_DTYPES:
                    raise ValueError(f"unsupported dtype {info['dtype']}")
                dtype = _SAFETENSORS_DTYPES[info["dtype"]]
                shape = tuple(int(n) for n in info["shape"])
                begin, end = (int(n) for n in info["data_offsets"])
                if end - begin != math.prod(shape) * dtype.itemsize or begin < 0 or start + end > size:
                    raise ValueError(f"data offsets {[begin, end]} do not fit shape {list(shape)} {info['dtype']} "
                                     f"in a {size}-byte file")
                self.tensors[key] = _SafetensorsTensor(self.path, key, start + begin, shape, dtype)
        except OSError:
            raise
        except Exception as err:  # malformed header: JSON, struct, missing fields, bad numbers
            where = f", {key}" if key and key != "__metadata__" else ""
            raise CheckpointError(f"{self.path}: not a readable safetensors file ({type(err).__name__}{where}: {err})") from None


def open_tensors(path: str | Path) -> dict[str, TensorRef]:
    """The tensors of one file, read lazily: a ``.safetensors`` tensor by tensor, a ``.pth``/``.bin`` mapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return SafetensorsFile(path).tensors
    return {key: _LoadedTensor(value, str(path)) for key, value in read_state_dict(path, mmap=True).items()}


def _directory_tensors(directory: Path) -> tuple[dict[str, TensorRef], Path]:
    """The tensors of a transformers-style directory (single file or sharded, safetensors or .bin), read
    lazily, and the file that lists them (for messages)."""
    for index_name in (WEIGHTS_INDEX_NAME, "pytorch_model.bin.index.json"):
        index = directory / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
                shards = sorted(set(weight_map.values()))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
                raise CheckpointError(f"{index}: not a shard index ({type(err).__name__}: {err})") from None
            tensors: dict[str, TensorRef] = {}
            for shard in shards:
                if not (directory / shard).is_file():
                    raise CheckpointError(f"{index}: lists shard {shard}, which is not in {directory}")
                tensors.update(open_tensors(directory / shard))
            absent = [key for key in weight_map if key not in tensors]
            if absent:
                raise CheckpointError(f"{index}: {absent[0]} is not in its shard {weight_map[absent[0]]}")
            return tensors, index
    for name in (WEIGHTS_NAME, "pytorch_model.bin"):
        if (directory / name).is_file():
            return open_tensors(directory / name), directory / name
    raise CheckpointError(f"{directory}: no model.safetensors, pytorch_model.bin or shard index found")


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


def blip2_key_map(keys: Iterable[str]) -> tuple[dict[str, str], list[str], list[str]]:
    """transformers' BLIP-2 names -> ours, by names only: (our key -> BLIP-2 key, unexpected, ignored).
    The Q-Former and its neighbours go to both branches."""
    mapping: dict[str, str] = {}
    unexpected: list[str] = []
    ignored: list[str] = []
    for original in keys:
        key = re.sub(r"^model\.", "", original)  # some exports nest everything under "model."
        if _matches(key, BLIP2_IGNORED):
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


def load_tensors(
    model: torch.nn.Module,
    tensors: Mapping[str, TensorRef],
    source: str,
    unexpected: Iterable[str] = (),
    ignored: Iterable[str] = (),
) -> LoadReport:
    """Copy lazily read tensors into ``model`` one at a time (cast to each parameter's dtype); every shape is
    checked before anything is read."""
    own = model.state_dict(keep_vars=True)
    aliases = _aliases(model)
    report = LoadReport(source=source, unexpected=list(unexpected), ignored=list(ignored))
    plan: list[tuple[TensorRef, torch.Tensor]] = []
    loaded: dict[str, None] = {}  # ordered set
    for key, ref in tensors.items():
        key = aliases.get(key, key)
        if key not in own:
            report.unexpected.append(key)
            continue
        target = own[key]
        if tuple(target.shape) != tuple(ref.shape):
            raise CheckpointError(
                f"{source}: shape mismatch for {key}: checkpoint has {tuple(ref.shape)}, "
                f"model expects {tuple(target.shape)}"
            )
        plan.append((ref, target))
        loaded[key] = None
    for ref, target in plan:
        ref.copy_to(target.data)
    report.loaded = list(loaded)
    report.missing = [k for k in own if k not in loaded and k not in aliases]
    return report


def load_converted(model: torch.nn.Module, converted: ConvertedState, source: str) -> LoadReport:
    """Copy converted tensors into ``model`` (cast to each parameter's dtype); shapes must match."""
    tensors = {key: _LoadedTensor(value, source) for key, value in converted.tensors.items()}
    return load_tensors(model, tensors, source, converted.unexpected, converted.ignored)


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


# ---------------------------------------------------------------------------------------------- hub / directories
_HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")


def resolve_directory(name_or_path: str | Path, patterns: list[str] | None = None) -> Path:
    """A local directory as is; otherwise a Hugging Face hub id downloaded (or taken from the cache)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{name} is a file; expected a model directory or a Hugging Face hub id")
    if not _HUB_ID.fullmatch(name):
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
    return tokenizer_from(config.tokenizer_name)


TOKENIZER_PATTERNS = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]


def tokenizer_from(name_or_path: str | Path):
    """A tokenizer from a local directory or a hub id (only its tokenizer files are downloaded)."""
    from sevila.model.text import load_tokenizer

    return load_tokenizer(resolve_directory(name_or_path, TOKENIZER_PATTERNS))


def _tokenizer_name(base: str | Path, blip2: Mapping) -> str:
    """The tokenizer name a model made from the BLIP-2 ``base`` records in its config: the hub id when ``base``
    is one, else the name BLIP-2's text config was made from (``google/flan-t5-xl``) or our default — never a
    local path (the tokenizer itself is saved with the model, in ``tokenizer/``)."""
    name = str(base)
    if _HUB_ID.fullmatch(name) and not Path(name).exists():
        return name
    text = blip2.get("text_config") or {}
    recorded = str(text.get("_name_or_path") or "") if isinstance(text, Mapping) else ""
    if _HUB_ID.fullmatch(recorded) and not Path(recorded).exists():
        return recorded
    return SeViLAConfig().tokenizer_name


def _precision(precision, device):
    from sevila.model.precision import Precision

    return precision or Precision.for_device(torch.device(device or "cpu"))


def _build(config: SeViLAConfig, tokenizer, device: torch.device | str | None, precision=None):
    """The model with uninitialised weights, each parameter allocated once, in its storage dtype
    (``precision``; default: the device's), on ``device``: built on the meta device, where `apply_precision`
    only changes dtypes, then materialised. Every weight is loaded right after."""
    from sevila.model import SeViLA
    from sevila.model.sevila import tie_input_embeddings

    device = torch.device(device or "cpu")
    with torch.device("meta"):
        model = SeViLA(config)
    model.apply_precision(_precision(precision, device))
    model.to_empty(device=device)  # torch.empty: no memory is touched until a weight is copied in
    tie_input_embeddings(model.language_model)
    if tokenizer is not None:  # after leaving the meta device: the tokenizer makes tensors of its own
        model.set_tokenizer(tokenizer)
    return model


def _meta_model(config: SeViLAConfig):
    """The model's structure without any memory: its keys, shapes and tied aliases."""
    from sevila.model import SeViLA
    from sevila.model.sevila import tie_input_embeddings

    with torch.device("meta"):
        model = SeViLA(config)
    tie_input_embeddings(model.language_model)
    return model


def _require_complete(report: LoadReport) -> None:
    if report.missing:
        raise CheckpointError(
            f"{report.source}: the checkpoint lacks {len(report.missing)} weights of the model, e.g. "
            f"{', '.join(_group_keys(report.missing)[:5])}"
        )


def _blip2_tensors(directory: Path) -> tuple[dict[str, TensorRef], list[str], list[str]]:
    """A BLIP-2 directory's tensors under our names, read lazily; with its unexpected and ignored keys."""
    tensors, _ = _directory_tensors(directory)
    mapping, unexpected, ignored = blip2_key_map(tensors)
    return {ours: tensors[theirs] for ours, theirs in mapping.items()}, unexpected, ignored


def from_blip2(name_or_path: str | Path = BLIP2_HUB_ID, device=None, precision=None, log: bool = True):
    """SeViLA initialised from a transformers BLIP-2 (hub id or directory): the Q-Former in both branches.

    Each part is allocated in its ``precision`` storage dtype and BLIP-2's tensors are copied in one by one."""
    directory = resolve_directory(name_or_path, BLIP2_PATTERNS)
    raw = _read_json(directory / CONFIG_NAME)
    config = config_from_blip2(raw, tokenizer_name=_tokenizer_name(name_or_path, raw))
    tensors, unexpected, ignored = _blip2_tensors(directory)
    precision = _precision(precision, device)
    model = _build(config, _tokenizer_for(directory, config), device, precision)
    report = load_tensors(model, tensors, str(directory), unexpected, ignored)
    _require_complete(report)
    if log:
        logger.info(report.summary())
    return _finish(model, precision)


def from_pretrained(name_or_path: str | Path, device=None, precision=None):
    """Our format (directory or hub id); a BLIP-2 directory or hub id is accepted too (see `from_blip2`).

    Each part is allocated in its ``precision`` storage dtype and the tensors are copied in one by one, so the
    peak memory is the model in that dtype plus about one tensor."""
    directory = resolve_directory(name_or_path)
    raw = _read_json(directory / CONFIG_NAME)
    if raw.get("model_type") == "blip-2":
        return from_blip2(name_or_path, device=device, precision=precision)
    try:
        config = SeViLAConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {err}") from None
    tensors, weights = _directory_tensors(directory)
    precision = _precision(precision, device)
    model = _build(config, _tokenizer_for(directory, config), device, precision)
    report = load_tensors(model, tensors, str(weights))
    _require_complete(report)
    if report.unexpected:
        raise CheckpointError(f"{weights}: unexpected weights {', '.join(_group_keys(report.unexpected)[:5])}")
    return _finish(model, precision)


def _finish(model, precision):
    model.eval()
    model.apply_precision(_precision(precision, model.device))  # the dtypes are set already: no copies
    return model


# ---------------------------------------------------------------------------------------------- writing
_SHARD_PATTERN = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def _write_safetensors(path: str | Path, tensors: Mapping[str, TensorRef], dtype_of: Callable[[TensorRef], torch.dtype]):
    """One safetensors file, written tensor by tensor (each read just before it is written). Tensors are laid
    out by decreasing element size, as safetensors itself does, so every one starts aligned."""
    entries = sorted(tensors.items(), key=lambda item: -dtype_of(item[1]).itemsize)  # stable: keeps key order
    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, ref in entries:
        dtype = dtype_of(ref)
        if dtype not in _SAFETENSORS_NAMES:
            raise CheckpointError(f"{ref.origin}: {key} has dtype {dtype}, which safetensors cannot store")
        size = math.prod(ref.shape) * dtype.itemsize
        header[key] = {"dtype": _SAFETENSORS_NAMES[dtype], "shape": list(ref.shape), "data_offsets": [offset, offset + size]}
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for key, ref in entries:
            tensor = ref.read()
            if tuple(tensor.shape) != tuple(ref.shape):
                raise CheckpointError(f"{ref.origin}: {key} has shape {tuple(tensor.shape)}, its header says {ref.shape}")
            tensor = tensor.detach().to(device="cpu", dtype=dtype_of(ref)).contiguous()
            if tensor.numel():
                f.write(_byte_view(tensor))
            del tensor


def save_tensors(
    directory: str | Path,
    tensors: Mapping[str, TensorRef],
    max_shard_size: int | None = None,
    dtype: torch.dtype | None = None,
) -> list[str]:
    """Write ``tensors`` into ``directory`` one at a time; returns the file names written.

    One ``model.safetensors``, or — when they exceed ``max_shard_size`` bytes — shards
    ``model-00001-of-0000N.safetensors`` listed in ``model.safetensors.index.json``, as transformers'
    ``save_pretrained`` writes them. ``dtype`` casts the floating-point tensors; by default each keeps its own.
    Weight files of an earlier save in ``directory`` are removed: the other layout's before writing (a broken
    write never leaves stale weights that would load), left-over shards after.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)

    def dtype_of(ref: TensorRef) -> torch.dtype:
        return dtype if dtype is not None and ref.dtype.is_floating_point else ref.dtype

    shards: list[dict[str, TensorRef]] = [{}]
    size = total = 0
    for key, ref in tensors.items():
        nbytes = math.prod(ref.shape) * dtype_of(ref).itemsize
        if max_shard_size and shards[-1] and size + nbytes > max_shard_size:
            shards.append({})
            size = 0
        shards[-1][key] = ref
        size += nbytes
        total += nbytes
    old_shards = [p for p in directory.iterdir() if _SHARD_PATTERN.fullmatch(p.name)]
    if len(shards) == 1:
        names = [WEIGHTS_NAME]
        for stale in [directory / WEIGHTS_INDEX_NAME, *old_shards]:
            stale.unlink(missing_ok=True)
    else:
        names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        (directory / WEIGHTS_NAME).unlink(missing_ok=True)
    for name, shard in zip(names, shards):
        _atomic_write(directory / name, lambda tmp, shard=shard: _write_safetensors(tmp, shard, dtype_of))
    if len(shards) > 1:
        index = {"metadata": {"total_size": total},
                 "weight_map": {key: name for name, shard in zip(names, shards) for key in shard}}
        text = json.dumps(index, indent=2, sort_keys=True) + "\n"
        _atomic_write(directory / WEIGHTS_INDEX_NAME, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
        for stale in old_shards:
            if stale.name not in names:
                stale.unlink(missing_ok=True)
        names.append(WEIGHTS_INDEX_NAME)
    return names


def save_pretrained(model, directory: str | Path) -> None:
    """Write ``config.json``, ``model.safetensors`` (tied aliases stored once) and the tokenizer.

    Tensors are written one at a time (no copy of the whole model in memory). Files are written to a
    temporary name first and renamed, so an interrupted save never leaves a half-written checkpoint under
    the final name; they get the usual permissions (0644 under the usual umask).
    """
    directory = Path(directory)
    aliases = _aliases(model)
    tensors = {k: _LoadedTensor(v, "model") for k, v in model.state_dict().items() if k not in aliases}
    save_tensors(directory, tensors)
    _atomic_write(directory / CONFIG_NAME, lambda tmp: Path(tmp).write_text(model.config.to_json(), encoding="utf-8"))
    if model.tokenizer is not None:
        # In its own folder: transformers' AutoTokenizer would otherwise read our config.json as its own.
        model.tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))


def _umask() -> int:
    try:  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(target: Path, write: Callable[[str], None]) -> None:
    """``write`` a temporary file beside ``target``, give it a regular file's permissions (``mkstemp`` makes
    it 0600) and rename it to ``target``."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------- converting
def convert_original_checkpoint(
    checkpoint: str | Path,
    output_dir: str | Path,
    base: str | Path | None = None,
    config: SeViLAConfig | None = None,
    tokenizer: str | None = None,
    dtype: torch.dtype | None = None,
    max_shard_size: int | None = DEFAULT_MAX_SHARD_SIZE,
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
    """
    from sevila.model.text import PromptTokenizer

    if base is None and config is None:
        raise ValueError("converting without --base needs a config (a preset name or a config.json)")
    checkpoint = Path(checkpoint)
    state = read_state_dict(checkpoint, mmap=True)  # fail on a bad file before fetching anything else
    sources: list[tuple[str, str, dict[str, TensorRef]]] = []  # (name in the report, file for errors, tensors)
    unexpected: list[str] = []
    ignored: list[str] = []
    if base is not None:
        directory = resolve_directory(base, BLIP2_PATTERNS)
        blip2 = _read_json(directory / CONFIG_NAME)
        config = config_from_blip2(blip2, tokenizer_name=_tokenizer_name(base, blip2))
        text_tokenizer = _tokenizer_for(directory, config)
        base_tensors, base_unexpected, base_ignored = _blip2_tensors(directory)
        sources.append((f"base {base}", str(directory), base_tensors))
        unexpected += base_unexpected
        ignored += base_ignored
    else:
        text_tokenizer = tokenizer_from(tokenizer or config.tokenizer_name)
    PromptTokenizer(text_tokenizer, config)  # the checks a model makes when given its tokenizer
    converted = convert_lavis_state_dict(state, config.vision.num_hidden_layers)
    ignored += converted.ignored
    unexpected += converted.unexpected
    sources.append((str(checkpoint), str(checkpoint),
                    {key: _LoadedTensor(value, str(checkpoint)) for key, value in converted.tensors.items()}))

    model = _meta_model(config)
    own = {key: tuple(value.shape) for key, value in model.state_dict(keep_vars=True).items()}
    aliases = _aliases(model)
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
        source=str(checkpoint), loaded=loaded, missing=[k for k in own if k not in plan and k not in aliases],
        unexpected=unexpected, ignored=ignored, origins=origins if base is not None else {},
    )
    if report.missing:
        if base is not None:
            raise CheckpointError(
                f"{sources[0][1]}: the BLIP-2 base lacks {len(report.missing)} weights of the model, e.g. "
                f"{', '.join(_group_keys(report.missing)[:5])}"
            )
        _require_complete(report)
    output_dir = Path(output_dir)
    save_tensors(output_dir, {key: plan[key][0] for key in loaded}, max_shard_size, dtype)
    _atomic_write(output_dir / CONFIG_NAME, lambda tmp: Path(tmp).write_text(config.to_json(), encoding="utf-8"))
    text_tokenizer.save_pretrained(str(output_dir / TOKENIZER_DIR))
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
