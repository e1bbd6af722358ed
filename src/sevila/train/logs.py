"""What a run reports: ``metrics.jsonl`` (one JSON object per logged step or validation) and TensorBoard
(optional: ``pip install 'sevila[tensorboard]'``; without it the run logs to ``metrics.jsonl`` alone and says so).

Only the main process writes. A resumed run first cuts ``metrics.jsonl`` back to the lines its checkpoint
had seen and tells TensorBoard to purge events after the checkpoint's step, so the logs of a killed and
resumed run read like those of an uninterrupted one. (Named ``logs`` rather than ``logging`` so that it
never shadows the standard library module.)
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

from sevila.utils.io import atomic_write_text

METRICS_NAME = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


TENSORBOARD_MISSING = (
    "TensorBoard logging is off: the tensorboard package is not installed; enable it with "
    "pip install 'sevila[tensorboard]', or set tensorboard=false to silence this (metrics.jsonl has every number)"
)


def _summary_writer(directory: Path, purge_step: int | None):
    """TensorBoard's writer, or None (with a warning saying how to enable it) when tensorboard is missing: a
    training run is not worth failing for an optional logger."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn(TENSORBOARD_MISSING, stacklevel=3)
        return None
    return SummaryWriter(log_dir=str(directory), purge_step=purge_step)


def truncate_lines(path: Path, keep: int) -> None:
    """Keep the first ``keep`` lines of a JSONL file (those a checkpoint had seen)."""
    if not path.is_file():
        return
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    atomic_write_text(path, "".join(lines[:keep]))  # a crash here never loses the lines kept


class RunLog:
    """Append-only metrics of one run directory; a no-op on processes other than the main one."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool,
        tensorboard: bool,
        resume_lines: int | None = None,
        purge_step: int | None = None,
    ):
        self.enabled = enabled
        self.lines = resume_lines or 0
        self.path = run_dir / METRICS_NAME
        self._writer = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        if resume_lines is None:
            self.path.write_text("", encoding="utf-8")
        else:
            truncate_lines(self.path, resume_lines)
        if tensorboard:
            self._writer = _summary_writer(run_dir / TENSORBOARD_DIR, purge_step)

    def log(self, record: dict[str, Any]) -> None:
        """One JSON line (``step`` and ``epoch`` first); numeric entries also go to TensorBoard at ``step``."""
        self.lines += 1
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._writer is not None:
            for key, value in record.items():
                if key in ("step", "epoch") or isinstance(value, bool) or not isinstance(value, (int, float)):
                    continue
                if math.isfinite(value):
                    self._writer.add_scalar(key, value, record["step"])
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl``."""
    path = Path(run_dir) / METRICS_NAME
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


__all__ = ["METRICS_NAME", "TENSORBOARD_MISSING", "RunLog", "read_metrics", "truncate_lines"]
