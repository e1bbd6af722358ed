"""Sizes in bytes written the way people write them: ``10GB``, ``500MB``, ``2GiB`` or a number of bytes."""

from __future__ import annotations

import re

_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40})
EXAMPLES = "e.g. 10GB, 500MB, 2GiB, a number of bytes"


def parse_size(text: str) -> int:
    """Bytes of ``text``; a `ValueError` (``not a size: ...``) for anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)?\s*", str(text), flags=re.IGNORECASE)
    if not match:
        raise ValueError(f"not a size: {text!r} ({EXAMPLES})")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").upper()])
