"""Our weight format: saving and loading SeViLA models, tensor by tensor.

A model directory holds ``config.json`` (a `SeViLAConfig`), the weights — ``model.safetensors``, or shards
``model-0000i-of-0000N.safetensors`` listed in ``model.safetensors.index.json`` as transformers writes them,
with T5's tied input embeddings stored once — and the tokenizer in ``tokenizer/`` (its own folder, because
transformers' ``AutoTokenizer`` would otherwise read our ``config.json`` as its own). `save_pretrained` writes
one; `from_pretrained` loads one from a directory or a Hugging Face hub id (`sevila.hub`). Foreign formats
(transformers BLIP-2, the original LAVIS ``.pth`` files) are read by `sevila.convert`, with the readers and
`load_tensors` of this module; `sevila.loading.load_model` takes any of them.

Memory: nothing is held twice. Loading builds the model on the meta device, gives each parameter its storage
dtype (``precision``), allocates it once and copies the checkpoint in tensor by tensor, cast on the way: the
peak is the model in its target dtype plus one tensor. Safetensors files are read with plain ``readinto`` at
each tensor's offset (`SafetensorsFile`), not through a memory map, whose touched pages would count as the
process's memory until the whole file is closed. ``.pth``/``.bin`` files are memory-mapped
(``torch.load(mmap=True)``) when they are zip archives, and always read with ``weights_only=True``.

Partial state dicts are fine for `load_tensors` (the rest of the model keeps its weights); it returns a
`LoadReport` of what was loaded, missing, unexpected and ignored. A shape mismatch is an error naming the key
and both shapes.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from huggingface_hub.serialization import split_state_dict_into_shards_factory

from sevila.config import SeViLAConfig
from sevila.hub import MODEL_CARD_NAME, resolve_directory
from sevila.model.precision import Precision
from sevila.model.sevila import SeViLA, tie_input_embeddings
from sevila.model.text import load_tokenizer, tokenizer_from
from sevila.utils.errors import CheckpointError
from sevila.utils.io import atomic_write, atomic_write_text

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TOKENIZER_DIR = "tokenizer"
DEFAULT_MAX_SHARD_SIZE = 5 * 10**9  # bytes per safetensors file ("5GB", as transformers and the Hub's tools)


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
                shown = ", ".join(group_keys(keys)[:limit])
                more = len(group_keys(keys)) - limit
                lines.append(f"  {title}: {shown}" + (f", ... ({more} more groups)" if more > 0 else ""))
        return "\n".join(lines)


def group_keys(keys: Iterable[str]) -> list[str]:
    """Collapse layer numbers so a report stays readable: ``a.layer.{0..11}.b`` style groups."""
    groups: dict[str, int] = {}
    for key in keys:
        pattern = re.sub(r"\.\d+\.", ".*.", key)
        groups[pattern] = groups.get(pattern, 0) + 1
    return [f"{pattern} (x{count})" if count > 1 else pattern for pattern, count in sorted(groups.items())]


def require_complete(report: LoadReport) -> None:
    if report.missing:
        raise CheckpointError(
            f"{report.source}: the checkpoint lacks {len(report.missing)} weights of the model, e.g. "
            f"{', '.join(group_keys(report.missing)[:5])}"
        )


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


def read_json(path: Path) -> dict:
    """A model directory's JSON file (``config.json``), with one-line errors naming it."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.parent}: no {path.name}; is this a model directory?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    except IsADirectoryError:
        raise CheckpointError(f"{path}: a directory, expected a JSON file") from None
    if not isinstance(data, dict):
        kind = {list: "an array", str: "a string", type(None): "null"}.get(type(data), "a single value")
        raise CheckpointError(f"{path}: expected a JSON object of config fields, got {kind}")
    return data


class TensorRef:
    """One tensor of a checkpoint, read only when it is copied or written (`read`, `copy_to`)."""

    shape: tuple[int, ...]
    dtype: torch.dtype
    origin: str  # the file it comes from, for messages

    def read(self) -> torch.Tensor:
        raise NotImplementedError

    def copy_to(self, target: torch.Tensor) -> None:
        """Copy into ``target`` (same shape; cast to its dtype and moved to its device)."""
        with torch.no_grad():
            target.copy_(self.read())


class LoadedTensor(TensorRef):
    """A tensor already at hand (in memory, or memory-mapped by ``torch.load(mmap=True)``)."""

    def __init__(self, tensor: torch.Tensor, origin: str):
        self.tensor, self.origin = tensor, origin
        self.shape, self.dtype = tuple(tensor.shape), tensor.dtype

    def read(self) -> torch.Tensor:
        return self.tensor


_SAFETENSORS_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
for _name, _attr in (
    ("F8_E4M3", "float8_e4m3fn"),
    ("F8_E5M2", "float8_e5m2"),
    ("U16", "uint16"),
    ("U32", "uint32"),
    ("U64", "uint64"),
):
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
                    raise ValueError(
                        f"data offsets {[begin, end]} do not fit shape {list(shape)} {info['dtype']} "
                        f"in a {size}-byte file"
                    )
                self.tensors[key] = _SafetensorsTensor(self.path, key, start + begin, shape, dtype)
        except OSError:
            raise
        except Exception as err:  # malformed header: JSON, struct, missing fields, bad numbers
            where = f", {key}" if key and key != "__metadata__" else ""
            raise CheckpointError(
                f"{self.path}: not a readable safetensors file ({type(err).__name__}{where}: {err})"
            ) from None


def open_tensors(path: str | Path) -> dict[str, TensorRef]:
    """The tensors of one file, read lazily: a ``.safetensors`` tensor by tensor, a ``.pth``/``.bin`` mapped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return SafetensorsFile(path).tensors
    return {key: LoadedTensor(value, str(path)) for key, value in read_state_dict(path, mmap=True).items()}


def directory_tensors(directory: Path) -> tuple[dict[str, TensorRef], Path]:
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


# ---------------------------------------------------------------------------------------------- building
def resolve_precision(precision: Precision | None, device) -> Precision:
    """``precision``, or the device's default (`Precision.for_device`)."""
    return precision or Precision.for_device(torch.device(device or "cpu"))


def empty_model(config: SeViLAConfig, tokenizer, device: torch.device | str | None, precision=None) -> SeViLA:
    """The model with uninitialised weights, each parameter allocated once, in its storage dtype
    (``precision``; default: the device's), on ``device``: built on the meta device, where `apply_precision`
    only changes dtypes, then materialised. Every weight is loaded right after."""
    device = torch.device(device or "cpu")
    with torch.device("meta"):
        model = SeViLA(config)
    model.apply_precision(resolve_precision(precision, device))
    model.to_empty(device=device)  # torch.empty: no memory is touched until a weight is copied in
    tie_input_embeddings(model.language_model)
    if tokenizer is not None:  # after leaving the meta device: the tokenizer makes tensors of its own
        model.set_tokenizer(tokenizer)
    return model


def meta_model(config: SeViLAConfig) -> SeViLA:
    """The model's structure without any memory: its keys, shapes and tied aliases."""
    with torch.device("meta"):
        model = SeViLA(config)
    tie_input_embeddings(model.language_model)
    return model


def finish_loading(model: SeViLA, precision: Precision | None) -> SeViLA:
    """A loaded model ready for inference: eval mode, its precision's autocast settings."""
    model.eval()
    model.apply_precision(resolve_precision(precision, model.device))  # the dtypes are set already: no copies
    return model


def saved_tokenizer(directory: Path, config: SeViLAConfig):
    """The tokenizer saved with a model (our ``tokenizer/`` folder or a transformers directory's top
    level), else the one the config names."""
    for candidate in (directory / TOKENIZER_DIR, directory):
        if any((candidate / n).is_file() for n in ("tokenizer.json", "spiece.model", "tokenizer_config.json")):
            return load_tokenizer(candidate)
    try:
        return tokenizer_from(config.tokenizer_name)
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        raise CheckpointError(
            f"{directory}: no tokenizer in {TOKENIZER_DIR}/ (tokenizer.json, spiece.model or tokenizer_config.json), "
            f"and the one its config.json names (tokenizer_name {config.tokenizer_name!r}) could not be loaded: {err}"
        ) from None


# ---------------------------------------------------------------------------------------------- loading
def tied_aliases(model: torch.nn.Module) -> dict[str, str]:
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
    aliases = tied_aliases(model)
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


def from_pretrained(
    name_or_path: str | Path,
    device=None,
    precision: Precision | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> SeViLA:
    """A model of our format, from a directory or a Hugging Face hub id (``revision`` pins a branch, tag or
    commit; ``token``, ``cache_dir``, ``force_download`` and ``local_files_only`` are the hub client's).

    Each part is allocated in its ``precision`` storage dtype (default: the device's) and the tensors are
    copied in one by one, so the peak memory is the model in that dtype plus about one tensor. A transformers
    BLIP-2 is not our format: `sevila.convert.from_blip2` or `sevila.loading.load_model` load it."""
    directory = resolve_directory(
        name_or_path,
        revision=revision,
        token=token,
        cache_dir=cache_dir,
        force_download=force_download,
        local_files_only=local_files_only,
    )
    raw = read_json(directory / CONFIG_NAME)
    if raw.get("model_type") == "blip-2":
        raise CheckpointError(
            f"{name_or_path}: a transformers BLIP-2, not a SeViLA model; load it with "
            "sevila.convert.from_blip2 or sevila.loading.load_model"
        )
    try:
        config = SeViLAConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {err}") from None
    tensors, weights = directory_tensors(directory)
    precision = resolve_precision(precision, device)
    model = empty_model(config, saved_tokenizer(directory, config), device, precision)
    report = load_tensors(model, tensors, str(weights))
    require_complete(report)
    if report.unexpected:
        raise CheckpointError(f"{weights}: unexpected weights {', '.join(group_keys(report.unexpected)[:5])}")
    card = directory / MODEL_CARD_NAME
    if card.is_file():  # kept so that `push_to_hub` publishes the card the model came with
        model.model_card_text = card.read_text(encoding="utf-8", errors="replace")
    return finish_loading(model, precision)


# ---------------------------------------------------------------------------------------------- writing
_SHARD_PATTERN = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")


def _write_safetensors(
    path: str | Path, tensors: Mapping[str, TensorRef], dtype_of: Callable[[TensorRef], torch.dtype]
):
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
        header[key] = {
            "dtype": _SAFETENSORS_NAMES[dtype],
            "shape": list(ref.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for key, ref in entries:
            tensor = ref.read()
            if tuple(tensor.shape) != tuple(ref.shape):
                raise CheckpointError(
                    f"{ref.origin}: {key} has shape {tuple(tensor.shape)}, its header says {ref.shape}"
                )
            tensor = tensor.detach().to(device="cpu", dtype=dtype_of(ref)).contiguous()
            if tensor.numel():
                f.write(_byte_view(tensor))
            del tensor


def save_tensors(
    directory: str | Path,
    tensors: Mapping[str, TensorRef],
    max_shard_size: int | str | None = None,
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

    # huggingface_hub plans the shards (transformers' names and index); the writing stays ours, tensor by
    # tensor, because its `save_torch_state_dict` holds each shard's bytes in memory at once.
    split = split_state_dict_into_shards_factory(
        dict(tensors),
        get_storage_size=lambda ref: math.prod(ref.shape) * dtype_of(ref).itemsize,
        filename_pattern=WEIGHTS_NAME.replace(".safetensors", "{suffix}.safetensors"),
        max_shard_size=max_shard_size or float("inf"),
    )
    old_shards = [p for p in directory.iterdir() if _SHARD_PATTERN.fullmatch(p.name)]
    names = list(split.filename_to_tensors)
    if not split.is_sharded:
        for stale in [directory / WEIGHTS_INDEX_NAME, *old_shards]:
            stale.unlink(missing_ok=True)
    else:
        (directory / WEIGHTS_NAME).unlink(missing_ok=True)
    for name, keys in split.filename_to_tensors.items():
        shard = {key: tensors[key] for key in keys}
        atomic_write(directory / name, lambda tmp, shard=shard: _write_safetensors(tmp, shard, dtype_of))
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        atomic_write_text(directory / WEIGHTS_INDEX_NAME, json.dumps(index, indent=2, sort_keys=True) + "\n")
        for stale in old_shards:
            if stale.name not in names:
                stale.unlink(missing_ok=True)
        names.append(WEIGHTS_INDEX_NAME)
    return names


def save_config_and_tokenizer(directory: str | Path, config: SeViLAConfig, tokenizer) -> None:
    """``config.json`` and, if there is one, the tokenizer in ``tokenizer/`` (beside the weights)."""
    directory = Path(directory)
    atomic_write_text(directory / CONFIG_NAME, config.to_json())
    if tokenizer is not None:
        # In its own folder: transformers' AutoTokenizer would otherwise read our config.json as its own.
        tokenizer.save_pretrained(str(directory / TOKENIZER_DIR))


def save_pretrained(
    model: SeViLA, directory: str | Path, max_shard_size: int | str | None = DEFAULT_MAX_SHARD_SIZE
) -> None:
    """Write ``config.json``, the weights (tied aliases stored once) and the tokenizer.

    The weights are ``model.safetensors``, or shards of at most ``max_shard_size`` (bytes or ``"5GB"``) with
    their index once the model is larger. Tensors are written one at a time (no copy of the whole model in
    memory). Every file is written atomically (`sevila.utils.io.atomic_write`): an interrupted save never
    leaves a half-written file under its final name, and the files get the usual permissions (0644 under the
    usual umask).
    """
    aliases = tied_aliases(model)
    tensors = {k: LoadedTensor(v, "model") for k, v in model.state_dict().items() if k not in aliases}
    save_tensors(directory, tensors, max_shard_size)
    save_config_and_tokenizer(directory, model.config, model.tokenizer)


__all__ = [
    "CONFIG_NAME",
    "DEFAULT_MAX_SHARD_SIZE",
    "TOKENIZER_DIR",
    "WEIGHTS_INDEX_NAME",
    "WEIGHTS_NAME",
    "CheckpointError",
    "LoadReport",
    "LoadedTensor",
    "SafetensorsFile",
    "TensorRef",
    "directory_tensors",
    "empty_model",
    "finish_loading",
    "from_pretrained",
    "group_keys",
    "load_tensors",
    "meta_model",
    "open_tensors",
    "read_json",
    "read_state_dict",
    "require_complete",
    "resolve_precision",
    "save_config_and_tokenizer",
    "save_pretrained",
    "save_tensors",
    "saved_tokenizer",
    "tied_aliases",
]
