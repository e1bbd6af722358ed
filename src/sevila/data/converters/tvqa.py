"""TVQA → QA records, from the jsonl release or from TVQA+'s json.

**TVQA jsonl** (``tvqa_{train,val,test_public}.jsonl``): as the original notebook, ``video`` = ``vid_name``,
``qid`` = ``TVQA_{row}`` (0-based row; the raw, globally unique qid is kept as ``extra["source_qid"]``),
options ``a0..a4`` verbatim (trailing spaces included), ``answer`` = ``answer_idx`` (absent in test_public:
unlabeled), clip = ``ts`` ``"start-end"`` seconds (floats here; the raw string is kept as ``extra["ts"]`` so
``--format sevila`` writes the original's strings). ``show_name`` goes to ``extra``.

Deliberate difference: three test_public records have ``ts`` ``"NaN-NaN"``. The original would pass NaN
bounds to its video loader, fail, and silently substitute a random other sample; here such a record has
no clip window (the whole video is used) and the summary counts it.

**TVQA+ json** (``tvqa_plus_{train,val}.json``, a JSON array, The Big Bang Theory only): ``answer_idx`` is
a string, ``ts`` a ``[start, end]`` list of numbers, no ``show_name``; the ``bbox`` boxes are dropped.
Records are built the same way (``TVQA_{index}``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sevila.data.converters.common import NAN_TS_NOTE, Conversion, build, new_summary, options, parse_ts
from sevila.data.records import QARecord
from sevila.data.sources import json_array_rows, load_json, read_jsonl

NUM_OPTIONS = 5


def convert(path: str | os.PathLike[str]) -> Conversion:
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return _convert_jsonl(path)
    if suffix == ".json":
        return _convert_plus(path)
    raise ValueError(f"{os.fspath(path)}: expected a TVQA .jsonl or a TVQA+ .json file")


def _convert_jsonl(path: str | os.PathLike[str]) -> Conversion:
    summary = new_summary("tvqa", path)
    records = []
    for index, row in enumerate(read_jsonl(path)):
        summary.records_in += 1
        extra: dict[str, Any] = {"source_qid": row.int("qid"), "ts": row.str("ts")}
        if row.has("show_name"):
            extra["show_name"] = row.str("show_name")
        clip = parse_ts(row, "ts")
        if clip is None:
            summary.note(NAN_TS_NOTE)
        records.append(
            build(
                row,
                QARecord,
                qid=f"TVQA_{index}",
                video=row.str("vid_name"),
                dataset="tvqa",
                question=row.str("q"),
                options=options(row, NUM_OPTIONS),
                answer=row.int("answer_idx", low=0, high=NUM_OPTIONS - 1) if row.has("answer_idx") else None,
                start=clip[0] if clip else None,
                end=clip[1] if clip else None,
                extra=extra,
            )
        )
    return Conversion(records, summary)


def _convert_plus(path: str | os.PathLike[str]) -> Conversion:
    summary = new_summary("tvqa", path)
    records = []
    for index, row in enumerate(json_array_rows(path, load_json(path))):
        summary.records_in += 1
        start, end = row.span("ts", row.raw("ts"))
        records.append(
            build(
                row,
                QARecord,
                qid=f"TVQA_{index}",
                video=row.str("vid_name"),
                dataset="tvqa",
                question=row.str("q"),
                options=options(row, NUM_OPTIONS),
                answer=(
                    row.int("answer_idx", low=0, high=NUM_OPTIONS - 1, from_text=True)
                    if row.has("answer_idx")
                    else None
                ),
                start=start,
                end=end,
                extra={"source_qid": row.int("qid")},
            )
        )
    return Conversion(records, summary)
