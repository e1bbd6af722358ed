"""`load_model`: any model by one name — a short name (`sevila.hub.NAMED_MODELS`), a directory or a hub id
of our format, or a transformers BLIP-2 — ready for inference.

It sits above the three rooms it joins, so none of them imports another the wrong way: `sevila.hub` resolves
names, `sevila.model.weights` reads our format, `sevila.convert.blip2` a BLIP-2.
"""

from __future__ import annotations

from pathlib import Path

from sevila.convert.blip2 import from_blip2, is_blip2
from sevila.hub import resolve_directory, resolve_name
from sevila.model import Precision, SeViLA
from sevila.model.weights import from_pretrained


def load_model(
    name_or_path: str | Path,
    device=None,
    precision: Precision | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> SeViLA:
    """A model by short name, directory or hub id (at ``revision``, with ``token`` for a private one), ready
    for inference (eval mode, ``precision``'s dtypes; default: the device's). A transformers BLIP-2 becomes
    SeViLA with its Q-Former in both branches."""
    source = resolve_name(name_or_path)
    directory = resolve_directory(source, revision=revision, token=token)
    if is_blip2(directory):
        # The snapshot already fetched, when pinned (from_blip2 would resolve the hub id's newest revision).
        return from_blip2(source if revision is None else directory, device=device, precision=precision)
    return from_pretrained(directory, device=device, precision=precision)


__all__ = ["load_model"]
