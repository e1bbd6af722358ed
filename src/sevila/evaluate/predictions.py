"""Prediction files: one JSON line per question, appended as results come, readable after any interruption.

A run that is killed can leave at most one incomplete last line; `read_prediction_rows` drops it (and
`truncate_partial_line` removes it from the file before a resumed run appends), so a resumed run loses
nothing that was written completely and never duplicates a question.

Beside ``PRED.jsonl`` (so that the file itself stays plain rows that any JSON-lines reader, the QVHighlights
evaluator included, accepts):

* ``PRED.jsonl.meta.json`` — the header: what produced the rows and when (`make_header`). Its ``settings``
  decide whether a rerun may resume the file (`settings_difference`).
* ``PRED.jsonl.lock`` — held (``flock``) by the one process writing the file (`OutputLock`); the kernel drops
  the lock when that process ends, however it ends, so a killed run never blocks the next.
* ``PRED.jsonl.metrics.json`` — the metrics ``sevila eval`` computed, with their provenance.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from sevila.data.sources import os_problem
from sevila.utils.io import atomic_write, atomic_write_text

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock (documented)
    fcntl = None  # type: ignore[assignment]

HEADER_FORMAT = "sevila-predictions/1"


def header_path(output: Path) -> Path:
    """``PRED.jsonl.meta.json``: what produced ``PRED.jsonl`` and when."""
    return output.with_name(output.name + ".meta.json")


def lock_path(output: Path) -> Path:
    return output.with_name(output.name + ".lock")


def metrics_path(output: Path) -> Path:
    return output.with_name(output.name + ".metrics.json")


def now() -> str:
    """The current time, UTC, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def package_version() -> str:
    """sevila's version as installed (the layering keeps this package from importing `sevila` itself)."""
    try:
        return importlib.metadata.version("sevila")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a source tree
        return "unknown"


def environment() -> dict[str, str]:
    """Versions of the package and of what computes with it."""
    info = {"sevila": package_version(), "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return info


def make_header(settings: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The header of a prediction file: ``settings`` (compared on resume), ``info`` (recorded only), the
    versions and the date."""
    return {"format": HEADER_FORMAT, "created": now(), "versions": environment(), "settings": settings, **info}


def read_header(output: Path) -> dict[str, Any] | None:
    """The header beside ``output``, or None when there is none."""
    path = header_path(output)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read: {err}") from None
    try:
        header = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err.msg}); --overwrite to start again") from None
    if not isinstance(header, dict) or not isinstance(header.get("settings"), dict):
        raise ValueError(f"{path}, field 'settings': missing, or not an object; --overwrite to start again")
    return header


def write_header(output: Path, header: dict[str, Any]) -> None:
    atomic_write_text(header_path(output), json.dumps(header, indent=2, ensure_ascii=False) + "\n")


def settings_difference(recorded: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """The first setting (in ``wanted``'s order) whose value differs: (name, recorded, wanted), or None."""
    for key, value in wanted.items():
        if recorded.get(key, "(not recorded)") != value:
            return key, recorded.get(key, "(not recorded)"), value
    return None


class OutputBusy(ValueError):
    """Another process holds an output's lock."""


class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``PRED.jsonl.lock`` for as long as a run writes ``PRED.jsonl``.

    A second process is refused at once (`OutputBusy`, naming the holder's pid). The lock file is removed on
    release; a process that is killed leaves it behind, but its lock dies with it, so the next run takes it.
    Folders that had to be created for the lock and are still empty at release are removed again (a refused
    run leaves nothing behind).
    """

    def __init__(self, output: Path):
        self.output = output
        self.path = lock_path(output)
        self._handle: IO[str] | None = None
        self._created: list[Path] = []

    def __enter__(self) -> OutputLock:
        missing = []
        parent = self.path.parent
        while not parent.exists() and parent != parent.parent:
            missing.append(parent)
            parent = parent.parent
        if self.output.is_dir():
            raise ValueError(f"{self.output}: is a directory, expected a predictions file (--output)")
        self._created = missing  # innermost first
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if fcntl is None:  # pragma: no cover
                return self
            return self._lock()
        except OSError as err:
            self._remove_created()
            raise ValueError(f"{self.path}: cannot create the output's lock file: {os_problem(err)}") from None

    def _lock(self) -> OutputLock:
        while True:
            handle = self.path.open("a+", encoding="utf-8")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.seek(0)
                holder = handle.read().strip()
                handle.close()
                who = f"process {holder}" if holder.isdigit() else "another process"
                self._remove_created()
                raise OutputBusy(
                    f"{self.output} is being written by {who} (lock {self.path.name} held); wait for it to finish, "
                    "or choose another --output"
                ) from None
            # The holder before us may have removed the file between our open and our lock: lock the file that
            # is at the path now, or two processes would each hold a lock on a different file.
            try:
                same = os.path.samestat(os.fstat(handle.fileno()), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            handle.close()
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._handle = handle
        return self

    def _remove_created(self) -> None:
        for folder in self._created:
            with contextlib.suppress(OSError):
                folder.rmdir()

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()  # while still locked: no one else can be holding this file
            self._handle.close()
            self._handle = None
        elif fcntl is None:  # pragma: no cover
            pass
        self._remove_created()


def truncate_partial_line(path: Path) -> None:
    """Cut an unterminated last line (a write interrupted mid-way) off the file."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with path.open("r+b") as handle:
            handle.truncate(keep)


def read_prediction_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a run's prediction file as written, for resuming and merging: complete lines only (an
    unterminated last line is ignored); errors name the line. `sevila.evaluate.metrics.read_predictions`
    parses finished files (ours or the original's result lists) into typed predictions for scoring."""
    if not path.is_file():
        return []
    rows = []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if not text.endswith("\n"):
        lines = lines[:-1]  # interrupted write
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not valid JSON ({err.msg})") from None
        qid = row.get("qid") if isinstance(row, dict) else None
        if not isinstance(qid, (str, int)) or isinstance(qid, bool):
            raise ValueError(f"{path}, line {number}, field 'qid': missing, or not a string or an integer")
        rows.append(row)
    return rows


def best_rows(rows: Iterable[dict[str, Any]], keys: set[str], *, keep_failed: bool) -> dict[str, dict[str, Any]]:
    """One row per qid (text) in ``keys``, in first-seen order: the first answered row, else (with
    ``keep_failed``) the last failed one. Rows of other qids are dropped."""
    best: dict[str, dict[str, Any]] = {}
    for row in rows:
        key = str(row["qid"])
        if key not in keys:
            continue
        if "error" in row:
            if keep_failed and (key not in best or "error" in best[key]):
                best[key] = row
        elif key not in best or "error" in best[key]:
            best[key] = row
    return best


class PredictionWriter:
    """Appends rows and flushes them to disk after every batch.

    The file is opened at the first write (after ``before_first_write``, e.g. writing the header), so a run
    that fails before it has a row to write leaves no file behind.
    """

    def __init__(self, path: Path, before_first_write: Callable[[], None] | None = None):
        self.path = path
        self._before = before_first_write
        self._handle: IO[str] | None = None

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        if self._handle is None:
            if self._before is not None:
                self._before()
            self.path.parent.mkdir(parents=True, exist_ok=True)
            truncate_partial_line(self.path)
            self._handle = self.path.open("a", encoding="utf-8")
        for row in rows:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> PredictionWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def write_predictions_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace ``path`` with these rows as JSONL, atomically (`sevila.utils.io.atomic_write`)."""

    def write(tmp: Path) -> None:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")

    atomic_write(path, write)
