"""Where a record's video file is."""

from __future__ import annotations

import os
from collections.abc import Callable

from sevila.data.records import Record

VideoPath = str | Callable[[Record], "str | os.PathLike[str]"]


def video_file(record: Record, video_root: str | os.PathLike[str], rule: VideoPath = "{video}.mp4") -> str:
    """``os.path.join(video_root, rule(record))``; `rule` is a format string over the record's ``video``,
    ``qid`` and ``dataset`` (default ``"{video}.mp4"``, the original's rule) or a callable of the record.
    An absolute result ignores `video_root`."""
    name = rule(record) if callable(rule) else rule.format(video=record.video, qid=record.qid, dataset=record.dataset)
    return os.path.join(video_root, os.fspath(name))
