"""The one exception type of `sevila.video`.

Every failure to turn a file into frames — missing file, not a video, no video stream, no frames, corrupt or
truncated data, a clip window outside the video — is reported as `VideoError`, so callers (the dataset, the
CLI) need a single `except` and users never see a decoder library's own exception types. It subclasses
`ValueError` because in each case the *input* is bad, not the program.
"""

from __future__ import annotations

from pathlib import Path


class VideoError(ValueError):
    """A video could not be read or sampled; `path` names the file, `reason` says why.

    The arguments are kept as `args` (not pre-formatted) so the exception pickles across processes,
    e.g. from a DataLoader worker.
    """

    def __init__(self, path: str | Path | None, reason: str) -> None:
        super().__init__(None if path is None else str(path), reason)
        self.path = None if path is None else str(path)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason if self.path is None else f"{self.path}: {self.reason}"


class BackendUnavailable(ImportError):
    """A video backend's optional library is not installed; the message says what to install."""
