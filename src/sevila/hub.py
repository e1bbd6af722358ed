"""Where a model comes from: short names, local directories and Hugging Face hub ids, resolved to a directory.

* `NAMED_MODELS` is the one registry of models known by a short name; ``demo`` is the tiny SeViLA of the
  synthetic world shipped as package data (``sevila/assets/demo/model``).
* `resolve_directory` takes a local directory as is and downloads a hub id (``owner/name``) into the
  Hugging Face cache, or takes it from there (offline too, once it is cached).

This room imports nothing of the model or the formats (the model's loaders import it), and no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sevila.utils.errors import CheckpointError

# The transformers BLIP-2 (EVA ViT-g + Flan-T5-XL) that the paper's model is built on.
BLIP2_HUB_ID = "Salesforce/blip2-flan-t5-xl"

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # a Hugging Face hub id, "owner/name"
CONFIG_NAME = "config.json"  # what makes a directory a model directory (ours and transformers')


def is_hub_id(name: str | Path) -> bool:
    """``owner/name`` that is not also a local path."""
    return bool(HUB_ID.fullmatch(str(name))) and not Path(name).exists()


def resolve_directory(name_or_path: str | Path, patterns: list[str] | None = None) -> Path:
    """A local directory as is; otherwise a Hugging Face hub id downloaded (or taken from the cache).

    ``patterns`` limits the download to the files matching them (``huggingface_hub``'s ``allow_patterns``).
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{name} is a file; expected a model directory or a Hugging Face hub id")
    if not HUB_ID.fullmatch(name):
        raise FileNotFoundError(f"model directory not found: {name} (nor is it a Hugging Face hub id 'owner/name')")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=name, allow_patterns=patterns))
    except Exception as err:  # offline, unknown repo, auth: one clear line instead of a network traceback
        reason = (str(err).strip().splitlines() or [""])[0]
        raise CheckpointError(
            f"could not get {name} from the Hugging Face Hub ({type(err).__name__}: {reason}); "
            "download it elsewhere and pass the local directory"
        ) from None


def hub_revision(directory: str | Path) -> str | None:
    """The commit of a Hugging Face cache snapshot (``.../snapshots/<commit>``), or None for any other directory."""
    parts = Path(directory).parts
    if len(parts) >= 2 and parts[-2] == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", parts[-1]):
        return parts[-1]
    return None


def package_version() -> str:
    """The installed sevila's version (read from its metadata: this room may not import the package root)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sevila")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        return "unknown"


def provenance(**fields) -> dict:
    """What produced an output and when: the sevila version, the UTC date, then ``fields`` (sources, settings).
    Written as ``provenance.json`` beside a converted model and into a training run's folder."""
    return {
        "producer": f"sevila {package_version()}",
        "sevila_version": package_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }


# ---------------------------------------------------------------------------------------------- named models
DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"  # the demo model and its example video


def demo_model_dir() -> Path:
    """The demo model shipped with the package (a tiny SeViLA of the synthetic world)."""
    path = DEMO_DIR / "model"
    if not (path / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"the demo model is not installed at {path}; build it with "
            "`python -m sevila_toy.demo.build --ship DIR` and copy DIR there (docs/demo.md)"
        )
    return path


# Models known by a short name -> a function giving their directory (called only when the name is used).
NAMED_MODELS: dict[str, Callable[[], Path]] = {"demo": demo_model_dir}


def resolve_name(name_or_path: str | Path) -> str | Path:
    """A short name of `NAMED_MODELS` -> its directory; anything else (a directory, a hub id) unchanged."""
    name = str(name_or_path)
    if name in NAMED_MODELS:
        return NAMED_MODELS[name]()
    return name_or_path


__all__ = [
    "DEMO_DIR",
    "HUB_ID",
    "NAMED_MODELS",
    "demo_model_dir",
    "hub_revision",
    "is_hub_id",
    "package_version",
    "provenance",
    "resolve_directory",
    "resolve_name",
]
