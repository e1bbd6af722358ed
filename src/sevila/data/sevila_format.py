"""The original SeViLA annotation format (``sevila_data/<dataset>/<split>.json``), read and written.

The original's preprocessing notebook writes each split as ``json.dumps(list)``: one JSON array of flat
dicts, no indentation, no trailing newline. Options are spread over keys ``a0..a{n-1}`` with
``num_option``; the clip window is ``start``/``end`` (strings for How2QA and TVQA, numbers elsewhere);
VLEP has no ``question``; QVHighlights records hold ``query``, ``duration`` and ``relevant_windows``.
`write_sevila` reproduces the notebook's files byte for byte (same key order, same value types) from
records made by our converters, so models trained with the original code can consume our output.

Differences, deliberate: a record without a clip window (a TVQA ``"NaN-NaN"`` timestamp) is written
without ``start``/``end`` — the original would write ``"NaN"`` strings that crash its video loader and make
it silently train/evaluate on another sample; unlabeled records are written without ``answer``, as the
STAR test file found in the wild does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from typing import Any

from sevila.data.records import (
    MOMENT_DATASETS,
    QA_DATASETS,
    InvalidRecord,
    MomentRecord,
    QARecord,
    Record,
    check_unique_qids,
)
from sevila.data.sources import Row, json_array_rows, load_json, open_input, parse_float
from sevila.utils.io import atomic_write_text

# Datasets whose preprocessed start/end are the two halves of the raw "start-end" string.
STRING_CLIP_DATASETS = ("how2qa", "tvqa")
# Datasets whose qid starts with the question type (the original's metrics split it off at '_').
TYPED_QID_DATASETS = ("nextqa", "nextgqa", "star")


def ts_strings(record: QARecord) -> tuple[str, str]:
    """The start/end strings the original writes for How2QA/TVQA.

    The raw ``ts`` kept in ``extra`` gives the exact text (``"0"``, ``"48.62"``); it is used only while it
    still agrees with the record's numbers, so an edited record is never written with stale strings.
    """
    assert record.start is not None and record.end is not None
    ts = record.extra.get("ts")
    if isinstance(ts, str) and ts.count("-") == 1:
        start, end = ts.split("-")
        try:
            if (float(start), float(end)) == (record.start, record.end):
                return start, end
        except ValueError:
            pass
    return repr(float(record.start)), repr(float(record.end))


def to_sevila_dict(record: Record) -> dict[str, Any]:
    """One element of the original's annotation list, keys in the notebook's order."""
    if isinstance(record, MomentRecord):
        data: dict[str, Any] = {
            "video": record.video,
            "qid": record.qid,
            "query": record.query,
            "duration": record.duration,
        }
        if record.relevant_windows is not None:
            data["relevant_windows"] = record.relevant_windows
        return data
    data = {"video": record.video, "num_option": len(record.options), "qid": record.qid}
    for i, option in enumerate(record.options):
        data[f"a{i}"] = option
    if record.answer is not None:
        data["answer"] = record.answer
    if record.question is not None:
        data["question"] = record.question
    if record.clip is not None:
        if record.dataset in STRING_CLIP_DATASETS:
            data["start"], data["end"] = ts_strings(record)
        else:
            data["start"], data["end"] = record.clip
    return data


def write_sevila(path: str | os.PathLike[str], records: Iterable[Record]) -> None:
    """Write records as the original's annotation file (``json.dumps(list)``), atomically."""
    atomic_write_text(path, json.dumps([to_sevila_dict(r) for r in records]))


def from_sevila_dict(
    data: Mapping[str, Any], dataset: str, source: str | os.PathLike[str] = "<record>", position: str | None = None
) -> Record:
    """Build a record from one element of an original annotation list.

    Keys the original format does not define are kept in ``extra`` rather than dropped.
    """
    row = Row(data, source, position or "")
    try:
        if dataset in MOMENT_DATASETS:
            return _moment_from_sevila(row, dataset)
        if dataset in QA_DATASETS:
            return _qa_from_sevila(row, dataset)
    except InvalidRecord as err:
        raise row.error(err.field, err.problem) from None
    raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(QA_DATASETS + MOMENT_DATASETS)}")


def _qa_from_sevila(row: Row, dataset: str) -> QARecord:
    qid = row.str("qid")
    num_option = row.int("num_option", low=2, high=5)
    option_keys = [f"a{i}" for i in range(num_option)]
    known = {"video", "num_option", "qid", "answer", "question", "start", "end", *option_keys}
    start = end = None
    extra = {k: v for k, v in row.data.items() if k not in known}
    if row.has("start") or row.has("end"):
        raw_start, raw_end = row.raw("start"), row.raw("end")
        if isinstance(raw_start, str) and isinstance(raw_end, str):
            start, end = parse_float(row, "start", raw_start), parse_float(row, "end", raw_end)
            extra["ts"] = f"{raw_start}-{raw_end}"
        else:
            start, end = row.number("start"), row.number("end")
    return QARecord(
        qid=qid,
        video=row.str("video"),
        dataset=dataset,
        question=row.str("question") if dataset != "vlep" else None,
        options=[row.str(key, allow_empty=True) for key in option_keys],
        answer=row.int("answer") if row.has("answer") else None,
        question_type=qid.split("_")[0] if dataset in TYPED_QID_DATASETS else None,
        start=start,
        end=end,
        extra=extra,
    )


def _moment_from_sevila(row: Row, dataset: str) -> MomentRecord:
    known = {"video", "qid", "query", "duration", "relevant_windows"}
    windows = None
    if row.has("relevant_windows"):
        windows = [list(row.span("relevant_windows", w)) for w in row.list("relevant_windows")]
    return MomentRecord(
        qid=row.str("qid"),
        video=row.str("video"),
        query=row.str("query"),
        duration=row.number("duration"),
        relevant_windows=windows,
        dataset=dataset,
        extra={k: v for k, v in row.data.items() if k not in known},
    )


def read_sevila(path: str | os.PathLike[str], dataset: str) -> list[Record]:
    """Records of an original annotation file of the given dataset; positions in errors are array indices."""
    records = [
        from_sevila_dict(row.data, dataset, path, row.position) for row in json_array_rows(path, load_json(path))
    ]
    check_unique_qids(records, path)
    return records


def looks_like_sevila(path: str | os.PathLike[str]) -> bool:
    """Whether a file is an original preprocessed list: the notebook always writes ``video`` as the first key.

    Only the first bytes are read, so that a large raw release file is not parsed twice.
    """
    with open_input(path, binary=True) as f:
        head = f.read(64).decode("utf-8", errors="ignore").lstrip("\ufeff \t\r\n")
    return head.startswith("[") and head[1:].lstrip().startswith('{"video":')
