"""What the key maps share: the branch suffixes, the rule helpers and a converted state dict."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch

from sevila.model.weights import LoadedTensor, LoadReport, load_tensors

# The original's name suffix of each branch ("Qformer" / "Qformer_loc") -> ours.
BRANCH_PREFIXES = {"": "answerer", "_loc": "localizer"}


def matches(key: str, patterns: Iterable[str]) -> bool:
    """Whether any of the regular expressions ``patterns`` is found in ``key``."""
    return any(re.search(p, key) for p in patterns)


def apply_rules(key: str, rules: list[tuple[str, str]]) -> str | None:
    """``key`` renamed by the first rule (regular expression, replacement) that matches it; None if none does."""
    for pattern, replacement in rules:
        new, count = re.subn(pattern, replacement, key)
        if count:
            return new
    return None


@dataclass
class ConvertedState:
    """A foreign state dict under our names, with the keys that had no place in SeViLA."""

    tensors: dict[str, torch.Tensor]
    unexpected: list[str]
    ignored: list[str]


def load_converted(model: torch.nn.Module, converted: ConvertedState, source: str) -> LoadReport:
    """Copy converted tensors into ``model`` (cast to each parameter's dtype); shapes must match."""
    tensors = {key: LoadedTensor(value, source) for key, value in converted.tensors.items()}
    return load_tensors(model, tensors, source, converted.unexpected, converted.ignored)
