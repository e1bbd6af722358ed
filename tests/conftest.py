import pytest

from tests.support.parity import Fixture
from tests.support.paths import parity_dir


@pytest.fixture(scope="session")
def parity() -> Fixture:
    root = parity_dir()
    if not (root / "outputs.safetensors").is_file():
        pytest.skip(f"parity fixture not found at {root} (set SEVILA_PARITY_DIR to a fixture directory)")
    return Fixture(root)


def pytest_collection_modifyitems(config, items):
    """A test that reads the parity fixture carries the `parity` marker, so that ``-m parity`` selects all of them."""
    unmarked = [
        item.nodeid for item in items if "parity" in item.fixturenames and not item.get_closest_marker("parity")
    ]
    if unmarked:
        raise pytest.UsageError("tests that use the parity fixture must be marked parity: " + ", ".join(unmarked))
