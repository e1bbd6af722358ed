"""Where a stage starts: the starting model, then (``localizer_init``) BLIP-2's Q-Former in its localizer.

The original's self-refinement script (``nexqa_sr.sh``: task ``train_loc_freeze_qa_vid``, checkpoint
``sevila_pretrained.pth``) loads the checkpoint and then, because the task contains ``loc`` but not ``qvh``,
calls ``load_qformer_loc()`` (``sevila.py:L1009-L1013``, ``blip2.py:L105-L110``). That loads
``qformer_loc.pth`` — "a copy of the original BLIP-2 Q-former to initialize the localizer (with changed model
keys)" (README.md:L53) — over the model with ``strict=False``, so the checkpoint's QVHighlights-pretrained
localizer is replaced before refinement starts. `copy_blip2_localizer` does the same from a transformers
BLIP-2 (hub id or directory), copying the four parts of one SeViLA branch:

====================================  =======================  ==========================
BLIP-2 (transformers)                 original (``_loc``)      ours
====================================  =======================  ==========================
``vision_model.post_layernorm.*``     ``ln_vision_loc.*``      ``localizer.layernorm.*``
``query_tokens``                      ``query_tokens_loc``     ``localizer.query_tokens``
``qformer.*``                         ``Qformer_loc.*``        ``localizer.qformer.*``
``language_projection.*``             ``t5_proj_loc.*``        ``localizer.projection.*``
====================================  =======================  ==========================

(BLIP-2's ``post_layernorm`` is LAVIS's ``ln_vision``, ``language_projection`` its ``t5_proj``; the key map
is `sevila.convert.blip2.convert_blip2_state_dict`.) Nothing else changes: the answerer, the ViT and T5 keep
the starting model's weights. Only these tensors are read — from a sharded BLIP-2 only the shards that hold
them, and for a hub id only those shards are downloaded.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from sevila.convert import ConvertedState, convert_blip2_state_dict, load_converted
from sevila.hub import resolve_directory
from sevila.model.weights import CheckpointError, read_state_dict

logger = logging.getLogger(__name__)

BRANCH = "localizer"
# transformers BLIP-2 keys of the parts `copy_blip2_localizer` copies (after an optional "model." prefix).
BLIP2_BRANCH_KEYS = ("vision_model.post_layernorm.", "qformer.", "query_tokens", "language_projection.")
_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
_SINGLE_FILES = ("model.safetensors", "pytorch_model.bin")


def _branch_key(key: str) -> bool:
    key = key[len("model.") :] if key.startswith("model.") else key
    return key.startswith(BLIP2_BRANCH_KEYS)


def _weight_files(directory: Path, source: str) -> list[str]:
    """The files of a BLIP-2 directory that hold the branch's tensors (from the shard index if there is one)."""
    for name in _INDEXES:
        if (directory / name).is_file():
            try:
                weight_map = json.loads((directory / name).read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise CheckpointError(f"{directory / name}: not a shard index ({type(err).__name__}: {err})") from None
            files = sorted({file for key, file in weight_map.items() if _branch_key(key)})
            if not files:
                raise CheckpointError(f"{source}: its shard index lists no Q-Former weights; is it a BLIP-2?")
            return files
    for name in _SINGLE_FILES:
        if (directory / name).is_file():
            return [name]
    return [_SINGLE_FILES[0]]  # a hub snapshot that holds only the JSON files so far


def _read_branch_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path.parent}: no BLIP-2 weights ({', '.join(_SINGLE_FILES)} or a shard index)")
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {key: f.get_tensor(key) for key in f.keys() if _branch_key(key)}
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    return {key: value for key, value in read_state_dict(path).items() if _branch_key(key)}


def read_blip2_localizer(source: str) -> dict[str, torch.Tensor]:
    """BLIP-2's vision LayerNorm, query tokens, Q-Former and projection under our ``localizer.*`` names."""
    directory = resolve_directory(source, ["*.json"])  # a hub id: the config and shard index only
    config_path = directory / "config.json"
    try:
        model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
    except FileNotFoundError:
        raise CheckpointError(f"{directory}: no config.json; expected a transformers BLIP-2 directory") from None
    except (json.JSONDecodeError, AttributeError) as err:
        raise CheckpointError(f"{config_path}: not a JSON object ({err})") from None
    if model_type != "blip-2":
        raise CheckpointError(f"{directory}: not a transformers BLIP-2 (config.json model_type is {model_type!r})")
    files = _weight_files(directory, source)
    directory = resolve_directory(source, files)  # a hub id: now those shards too
    state: dict[str, torch.Tensor] = {}
    for name in files:
        state.update(_read_branch_tensors(directory / name))
    converted = convert_blip2_state_dict(state)
    return {key: value for key, value in converted.tensors.items() if key.startswith(BRANCH + ".")}


def copy_blip2_localizer(model: torch.nn.Module, source: str) -> list[str]:
    """Replace the localizer of ``model`` by BLIP-2's Q-Former (module docstring); returns the keys copied.

    Every localizer tensor must come from BLIP-2 (none is left as it was) and every shape must match.
    """
    tensors = read_blip2_localizer(source)
    own = [key for key in model.state_dict() if key.startswith(BRANCH + ".")]
    missing = sorted(set(own) - set(tensors))
    if missing:
        raise CheckpointError(
            f"{source}: lacks BLIP-2 weights for {len(missing)} localizer tensors, e.g. {', '.join(missing[:3])}"
        )
    report = load_converted(model, ConvertedState(tensors, [], []), source)
    if report.unexpected:  # a BLIP-2 Q-Former with more layers than the model's
        raise CheckpointError(
            f"{source}: Q-Former weights the model does not have, e.g. {', '.join(sorted(report.unexpected)[:3])}"
        )
    logger.info(
        "localizer replaced by BLIP-2's Q-Former from %s (%d tensors: vision LayerNorm, query tokens, "
        "Q-Former, projection)",
        source,
        len(report.loaded),
    )
    return report.loaded


__all__ = ["BLIP2_BRANCH_KEYS", "copy_blip2_localizer", "read_blip2_localizer"]
