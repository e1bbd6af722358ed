"""Atomic file writes: the one way sevila writes a file that another process (or a later run) may read.

`atomic_write` writes through a temporary file beside the target and renames it over the target, so a reader
never sees a half-written file and a crash or an error part-way leaves the previous file (or none), never a
truncated one. The file's data and then its directory entry are flushed to disk (``fsync``) before the call
returns, and the file gets a regular file's permissions, ``0o666 & ~umask`` (``mkstemp`` would leave it
0600).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def umask() -> int:
    """The process's file-creation mask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only for an instant)
    os.umask(mask)
    return mask


def _fsync_path(path: str | os.PathLike[str], directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:  # some systems (Windows) cannot open a directory; its entry is then flushed by the OS
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(target: str | os.PathLike[str], write: Callable[[Path], object]) -> None:
    """Create or replace ``target`` with what ``write(tmp)`` writes to the temporary path it is given.

    The parent folder is created if needed. On any error (or interrupt) the temporary file is removed and
    ``target`` is left as it was.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # The temporary name carries at most 100 characters of the target's, so a valid long name stays valid.
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:100]}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~umask())
        _fsync_path(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(target.parent, directory=True)


def atomic_write_text(target: str | os.PathLike[str], text: str) -> None:
    """`atomic_write` of a UTF-8 text, written as is (no newline translation)."""
    atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8", newline=""))


__all__ = ["atomic_write", "atomic_write_text", "umask"]
