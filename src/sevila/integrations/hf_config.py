"""transformers' ``AutoConfig`` knows ``model_type: "sevila"``: `SeViLATransformersConfig` reads a SeViLA
``config.json`` (as tools that only speak transformers do: the Hub's widgets, ``AutoConfig.from_pretrained``) and
`SeViLATransformersConfig.to_sevila_config` gives our `SeViLAConfig`.

`register_on_import` (called by ``import sevila``) registers it as soon as transformers' auto-config module is
imported — at once if it already is — so ``import sevila`` stays free of transformers (and torch).
"""

from __future__ import annotations

import dataclasses
import importlib.abc
import importlib.util
import sys

from sevila.config import SeViLAConfig

MODEL_TYPE = "sevila"
AUTO_CONFIG_MODULE = "transformers.models.auto.configuration_auto"


def config_class():
    """The ``PreTrainedConfig`` subclass of ``model_type`` ``sevila`` (built on first use: it needs transformers)."""
    global _CONFIG_CLASS
    if _CONFIG_CLASS is None:
        from transformers import configuration_utils

        base = getattr(configuration_utils, "PreTrainedConfig", None) or configuration_utils.PretrainedConfig

        class SeViLATransformersConfig(base):
            """A SeViLA ``config.json`` as transformers reads it: our fields kept as they are (nested dicts)."""

            model_type = MODEL_TYPE

            def to_sevila_config(self) -> SeViLAConfig:
                fields = {f.name for f in dataclasses.fields(SeViLAConfig)}
                return SeViLAConfig.from_dict({k: v for k, v in self.to_dict().items() if k in fields})

        SeViLATransformersConfig.__module__ = __name__
        _CONFIG_CLASS = SeViLATransformersConfig
    return _CONFIG_CLASS


_CONFIG_CLASS = None


def register(configuration_auto=None) -> None:
    """``AutoConfig.register("sevila", ...)`` (idempotent)."""
    if configuration_auto is None:
        configuration_auto = importlib.import_module(AUTO_CONFIG_MODULE)
    configuration_auto.CONFIG_MAPPING.register(MODEL_TYPE, config_class(), exist_ok=True)


class _RegisterAfterImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when transformers' auto-config module is about to be loaded, it wraps that
    module's loader so that `register` runs right after the module has executed."""

    def find_spec(self, name, path, target=None):
        if name != AUTO_CONFIG_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            register(module)

        spec.loader.exec_module = exec_module
        return spec


def register_on_import() -> None:
    """Register now if transformers' auto-config module is loaded, else as soon as it is."""
    if AUTO_CONFIG_MODULE in sys.modules:
        register(sys.modules[AUTO_CONFIG_MODULE])
    elif not any(isinstance(finder, _RegisterAfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterImport())


__all__ = ["MODEL_TYPE", "config_class", "register", "register_on_import"]
