"""Splitting a batch into sub-batches that share a key (T5 scores one option count per pass)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable


def positions_by_key(keys: Iterable[Hashable]) -> dict[Hashable, list[int]]:
    """The positions of each distinct key, keys in order of first appearance: ``[5, 4, 5]`` -> ``{5: [0, 2], 4: [1]}``."""
    groups: dict[Hashable, list[int]] = {}
    for position, key in enumerate(keys):
        groups.setdefault(key, []).append(position)
    return groups
