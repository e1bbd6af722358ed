"""How2QA → QA records, from either release.

**VALUE jsonl** (``how2qa_{train,val}_release.jsonl``, what the original reads): as the notebook, ``video``
= ``vid_name`` (the VALUE clip id: videos are ``{vid_name}.mp4``, ~60-s clips), ``qid`` = ``HOW2QA_{row}``
(0-based row in the file; the raw qid is kept as ``extra["source_qid"]``), options ``a0..a3``, ``answer`` =
``answer_idx``, clip = ``ts`` ``"start-end"`` seconds within the clip (floats here; the raw string is kept as
``extra["ts"]`` so that ``--format sevila`` writes the original's strings). With ``how2_vid_mapping.json``
(VALUE id → ``{youtube_id}_{clip_start}_{clip_end}``) ``extra`` also gets ``youtube_id``, ``clip_start`` and
``clip_end``; ids missing from the map (176 in val) are noted in the summary, not skipped.

**Original csv** (``how2QA_{train,val,test_public}_release.csv``, headerless): columns are YouTube id,
``[start:end]`` within the *full YouTube video*, three wrong answers, question, correct answer. ``video``
is the YouTube id and the clip is in full-video seconds. Options are lower-case without the VALUE
release's final period and are kept as written.

Option order for the csv, a documented decision: the csv always lists the correct answer last, and a
fixed position would let a model learn the position instead of the answer. The correct answer is put at
position ``sha256(qid) mod 4`` (first 8 bytes of the digest, big-endian), the wrong answers fill the other
positions in csv order. It depends only on the qid (``HOW2QA_{row}``), so conversions are reproducible.

A csv row whose correct answer is also one of its wrong answers (5 in the release) has no single right
option; it is skipped, with the reason in the summary. Row numbers in qids still count it, so qids do not
shift.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Any

from sevila.data.converters.common import NAN_TS_NOTE, Conversion, build, new_summary, options, parse_ts
from sevila.data.records import QARecord
from sevila.data.sources import DataError, Row, json_object, load_json, parse_float, read_csv, read_jsonl

NUM_OPTIONS = 4
CSV_COLUMNS = ("youtube_id", "span", "wrong_0", "wrong_1", "wrong_2", "question", "correct")
_SPAN = re.compile(r"\[\s*([^:\]]+)\s*:\s*([^:\]]+)\s*\]")
AMBIGUOUS = "correct answer is also listed as a wrong answer"


def correct_position(qid: str) -> int:
    """Where the csv's correct answer goes among the 4 options (see the module docstring)."""
    return int.from_bytes(hashlib.sha256(qid.encode("utf-8")).digest()[:8], "big") % NUM_OPTIONS


def load_value_mapping(path: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """``how2_vid_mapping.json``: VALUE id → YouTube id and clip bounds (ids may contain ``_``)."""
    mapping = {}
    for key, value in json_object(path, load_json(path), "VALUE id -> youtube clip").items():
        parts = value.rsplit("_", 2) if isinstance(value, str) else []
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            raise DataError(path, f"key {key!r}", None, f"expected '{{youtube_id}}_{{start}}_{{end}}', got {value!r}")
        mapping[key] = {"youtube_id": parts[0], "clip_start": int(parts[1]), "clip_end": int(parts[2])}
    return mapping


def convert(path: str | os.PathLike[str], *, video_map: str | os.PathLike[str] | None = None) -> Conversion:
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return _convert_value(path, load_value_mapping(video_map) if video_map is not None else None)
    if suffix == ".csv":
        if video_map is not None:
            raise ValueError(f"{os.fspath(video_map)}: the VALUE id map applies to the jsonl release, not the csv")
        return _convert_csv(path)
    raise ValueError(f"{os.fspath(path)}: expected a VALUE .jsonl or an original .csv How2QA file")


def _convert_value(path: str | os.PathLike[str], mapping: dict[str, dict[str, Any]] | None) -> Conversion:
    summary = new_summary("how2qa", path)
    records = []
    for index, row in enumerate(read_jsonl(path)):
        summary.records_in += 1
        video = row.str("vid_name")
        extra: dict[str, Any] = {"source_qid": row.int("qid"), "ts": row.str("ts")}
        if mapping is not None:
            if video in mapping:
                extra.update(mapping[video])
            else:
                summary.note("vid_name not in the VALUE id map: no youtube_id/clip_start/clip_end")
        clip = parse_ts(row, "ts")
        if clip is None:
            summary.note(NAN_TS_NOTE)
        records.append(
            build(
                row,
                QARecord,
                qid=f"HOW2QA_{index}",
                video=video,
                dataset="how2qa",
                question=row.str("q"),
                options=options(row, NUM_OPTIONS),
                answer=row.int("answer_idx", low=0, high=NUM_OPTIONS - 1) if row.has("answer_idx") else None,
                start=clip[0] if clip else None,
                end=clip[1] if clip else None,
                extra=extra,
            )
        )
    return Conversion(records, summary)


def _csv_span(row: Row) -> tuple[str, str]:
    text = row.str("span")
    match = _SPAN.fullmatch(text.strip())
    if match is None:
        raise row.error("span", f"expected '[start:end]', got {text!r}")
    return match.group(1), match.group(2)


def _convert_csv(path: str | os.PathLike[str]) -> Conversion:
    summary = new_summary("how2qa", path)
    records = []
    for index, row in enumerate(read_csv(path, columns=CSV_COLUMNS)):
        summary.records_in += 1
        correct = row.str("correct")
        wrong = [row.str(f"wrong_{i}") for i in range(NUM_OPTIONS - 1)]
        if correct in wrong:
            summary.skip(AMBIGUOUS)
            continue
        qid = f"HOW2QA_{index}"
        position = correct_position(qid)
        start_text, end_text = _csv_span(row)
        start, end = parse_float(row, "span", start_text), parse_float(row, "span", end_text)
        records.append(
            build(
                row,
                QARecord,
                qid=qid,
                video=row.str("youtube_id"),
                dataset="how2qa",
                question=row.str("question"),
                options=wrong[:position] + [correct] + wrong[position:],
                answer=position,
                start=start,
                end=end,
                extra={"ts": f"{start_text}-{end_text}"},
            )
        )
    return Conversion(records, summary)
