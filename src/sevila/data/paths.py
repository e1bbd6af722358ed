"""Where a record's video file is."""

from __future__ import annotations

import os
import string
from collections.abc import Callable

from sevila.data.records import Record

VideoPath = str | Callable[[Record], "str | os.PathLike[str]"]

VIDEO_PATH_KEYS = ("video", "qid", "dataset")


def check_video_path(rule: str) -> str:
    """`rule` if it is a valid video path template, else a one-line `ValueError` naming the bad key and the
    allowed ones (``{video}``, ``{qid}``, ``{dataset}``)."""
    allowed = ", ".join("{" + key + "}" for key in VIDEO_PATH_KEYS)
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(rule) if field is not None]
    except ValueError as err:  # e.g. a lone "{" or "}"
        raise ValueError(
            f"video path {rule!r} is not a valid template ({err}); use {allowed}, and {{{{ }}}} for braces"
        ) from None
    for field in fields:
        if field.split("[", 1)[0] not in VIDEO_PATH_KEYS:  # an index such as {video[0]} is allowed
            shown = "{" + field + "}" if field else "{}"
            raise ValueError(f"video path {rule!r} has the unknown key {shown}; the allowed keys are {allowed}")
    return rule


def video_file(record: Record, video_root: str | os.PathLike[str], rule: VideoPath = "{video}.mp4") -> str:
    """``os.path.join(video_root, rule(record))``; `rule` is a format string over the record's ``video``,
    ``qid`` and ``dataset`` (default ``"{video}.mp4"``, the original's rule) or a callable of the record.
    An absolute result ignores `video_root`."""
    if callable(rule):
        name = rule(record)
    else:
        try:
            name = check_video_path(rule).format(video=record.video, qid=record.qid, dataset=record.dataset)
        except (LookupError, AttributeError, TypeError) as err:  # e.g. {video[99]} on a short name
            raise ValueError(f"video path {rule!r} cannot be filled for record {record.qid!r} ({err})") from None
    return os.path.join(video_root, os.fspath(name))
