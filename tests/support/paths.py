"""Where the data the tests read lives: the shared folder next to the repository, and the parity fixture."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def shared_dir() -> Path:
    """The shared data folder: ``$SEVILA_SHARED_DIR``, else ``../shared`` next to the repository."""
    return Path(os.environ.get("SEVILA_SHARED_DIR") or REPO_ROOT.parent / "shared")


def parity_dir() -> Path:
    """The parity fixture (layout: ``../shared/parity/README.md``): ``$SEVILA_PARITY_DIR``, else
    ``../shared/parity`` next to the repository."""
    return Path(os.environ.get("SEVILA_PARITY_DIR") or REPO_ROOT.parent / "shared" / "parity").resolve()
