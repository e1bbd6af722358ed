"""VLEP (video-language event prediction): ``vlep_{train,dev,test}_release.jsonl`` → QA records.

As the original notebook: ``video`` = ``vid_name`` (kept with its ``_ep`` suffix; the original's loader
strips it for TV clips when building the path, which a `video_path` callable of the `Dataset` can do),
``qid`` = ``VLEP_{example_id}``, the two options = ``events``, ``answer`` = ``answer`` (absent in test:
unlabeled), clip = ``ts`` (numbers as written, some are ints). There is no question: VLEP's prompts ask
for the most probable next event, and the record's ``question`` is null.
"""

from __future__ import annotations

import os

from sevila.data.converters.common import Conversion, build, new_summary
from sevila.data.records import QARecord
from sevila.data.sources import read_jsonl


def convert(path: str | os.PathLike[str]) -> Conversion:
    summary = new_summary("vlep", path)
    records = []
    for row in read_jsonl(path):
        summary.records_in += 1
        events = row.list("events")
        if len(events) != 2 or not all(isinstance(e, str) and e.strip() for e in events):
            raise row.error("events", f"expected 2 non-empty event strings, got {events!r}")
        start, end = row.span("ts", row.raw("ts"))
        records.append(
            build(
                row,
                QARecord,
                qid=f"VLEP_{row.int('example_id')}",
                video=row.str("vid_name"),
                dataset="vlep",
                question=None,
                options=list(events),
                answer=row.int("answer", low=0, high=1) if row.has("answer") else None,
                start=start,
                end=end,
            )
        )
    return Conversion(records, summary)
