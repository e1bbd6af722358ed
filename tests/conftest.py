import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from parity_support import Fixture, parity_dir  # noqa: E402


@pytest.fixture(scope="session")
def parity() -> Fixture:
    root = parity_dir()
    if not (root / "outputs.safetensors").is_file():
        pytest.skip(f"parity fixture not found at {root} (set SEVILA_PARITY_DIR to a fixture directory)")
    return Fixture(root)
