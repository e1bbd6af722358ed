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


def reader_class(backend: str) -> type[FrameReader]:
    """The reader class of the named backend; an unknown name is a `ValueError` listing the choices."""
    try:
        target = BACKENDS[backend]
    except (KeyError, TypeError):
        raise ValueError(f"unknown video backend {backend!r}; choose one of {sorted(BACKENDS)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)


def check_backend(backend: str) -> None:
    """Fail now, not at the first video, when the backend is unknown (`ValueError`) or its optional library
    is missing (`sevila.video.BackendUnavailable`, saying what to install)."""
    reader_class(backend).check_available()


def open_reader(path: str | Path, image_size: int, backend: str = "pyav") -> FrameReader:
    """Open `path` with the named backend; an unknown name is a `ValueError` listing the choices."""
    return reader_class(backend)(path, image_size)


__all__ = ["BACKENDS", "FrameReader", "check_backend", "open_reader", "reader_class"]
