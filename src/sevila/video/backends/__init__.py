"""Decoding backends, chosen by name; each module imports its library only when used.

`pyav` (default, a core dependency) is frame-exact and matches decord's frames; `decord` and `torchcodec`
are optional extras.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from sevila.video.backends.base import FrameReader

# name -> "module:class"; resolved lazily so an optional library is imported only when chosen.
BACKENDS: dict[str, str] = {
    "pyav": "sevila.video.backends.pyav_reader:PyAVReader",
    "decord": "sevila.video.backends.decord_reader:DecordReader",
    "torchcodec": "sevila.video.backends.torchcodec_reader:TorchCodecReader",
}


def open_reader(path: str | Path, image_size: int, backend: str = "pyav") -> FrameReader:
    """Open `path` with the named backend; an unknown name is a `ValueError` listing the choices."""
    try:
        target = BACKENDS[backend]
    except KeyError:
        raise ValueError(f"unknown video backend {backend!r}; choose one of {sorted(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    reader_class = getattr(importlib.import_module(module_name), class_name)
    return reader_class(path, image_size)


__all__ = ["BACKENDS", "FrameReader", "open_reader"]
