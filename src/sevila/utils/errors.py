"""Error types shared by rooms that cannot import each other."""

from __future__ import annotations


class CheckpointError(ValueError):
    """A model or checkpoint that cannot be found or used: names the file (or hub id) and, where it applies, the
    key and shapes.

    Raised by hub resolution (`sevila.hub`), our weight format (`sevila.model.weights`) and the foreign formats
    (`sevila.convert`); defined here because the hub sits below the model and both raise it.
    """
