"""sevila: SeViLA (Self-Chained Image-Language Model for Video Localization and Question Answering).

Heavy parts (torch, transformers) are imported lazily so that `import sevila` and the data tools stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sevila.config import SeViLAConfig

__version__ = "0.1.0"

if TYPE_CHECKING:  # pragma: no cover
    from sevila.model import SeViLA

__all__ = ["SeViLA", "SeViLAConfig", "__version__"]


def _register_with_transformers() -> None:
    from sevila.integrations.hf_config import register_on_import

    register_on_import()  # AutoConfig knows model_type "sevila", without importing transformers here


_register_with_transformers()


def __getattr__(name: str) -> Any:
    if name == "SeViLA":
        from sevila.model import SeViLA

        return SeViLA
    raise AttributeError(f"module 'sevila' has no attribute {name!r}")
