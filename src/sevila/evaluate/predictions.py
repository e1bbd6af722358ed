"""Prediction files: one JSON line per question, appended as results come, readable after any interruption.

A run that is killed can leave at most one incomplete last line; `read_prediction_rows` drops it (and
`truncate_partial_line` removes it from the file before a resumed run appends), so a resumed run loses
nothing that was written completely and never duplicates a question.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from sevila.utils.io import atomic_write


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


class PredictionWriter:
    """Appends rows and flushes them to disk after every batch."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        truncate_partial_line(path)
        self._handle: IO[str] = path.open("a", encoding="utf-8")

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        for row in rows:
            self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()

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
