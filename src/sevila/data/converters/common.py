"""Pieces shared by the per-dataset converters: the conversion summary and field parsers used by several."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from sevila.data.records import InvalidRecord, Record
from sevila.data.sources import Row, parse_float

R = TypeVar("R")


@dataclass
class ConversionSummary:
    """What a conversion did: records read and written, records skipped (by reason), remarks (by kind).

    Notes are for records that were kept but deserve attention (no clip window, no entry in a video map);
    skipped records are left out of the output. Both are counted per reason so the summary stays short.
    """

    dataset: str
    source: str
    records_in: int = 0
    records_out: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def note(self, remark: str) -> None:
        self.notes[remark] += 1

    def format(self) -> str:
        lines = [
            f"{self.dataset} {self.source}: {self.records_in} records in, {self.records_out} out, "
            f"{sum(self.skipped.values())} skipped"
        ]
        lines += [f"  skipped {n}: {reason}" for reason, n in sorted(self.skipped.items())]
        lines += [f"  note {n}: {remark}" for remark, n in sorted(self.notes.items())]
        return "\n".join(lines)


class Conversion(NamedTuple):
    records: list[Record]
    summary: ConversionSummary


def new_summary(dataset: str, path: str | os.PathLike[str]) -> ConversionSummary:
    return ConversionSummary(dataset=dataset, source=str(path))


def build(row: Row, record_type: type[R], **fields: Any) -> R:
    """A record made from a raw row; a broken invariant is reported at the row (file, line, field)."""
    try:
        return record_type(**fields)
    except InvalidRecord as err:
        raise row.error(err.field, err.problem) from None


def options(row: Row, count: int) -> list[str]:
    """Option texts from the fields ``a0..a{count-1}``, kept verbatim (TVQA's trailing spaces included).

    An empty (or blank) option is an error naming the field: the original would keep it (NExT-QA's as the
    option ``"."``), a choice no model can pick on purpose.
    """
    return [row.str(f"a{i}") for i in range(count)]


def answer_index(row: Row, field_name: str, answer: str, choices: list[str]) -> tuple[int, int]:
    """(index, number of matches) of an answer given as text.

    No match raises, naming the field: the original STAR notebook would silently keep the previous record's
    index instead. Several equal options all match; the last is taken, as the original's loop does, and the
    caller notes it.
    """
    matches = [i for i, choice in enumerate(choices) if choice == answer]
    if not matches:
        raise row.error(field_name, f"answer text {answer!r} matches none of the options {choices!r}")
    return matches[-1], len(matches)


def parse_ts(row: Row, field_name: str) -> tuple[float, float] | None:
    """A ``"start-end"`` timestamp string (TVQA, How2QA VALUE) as floats; None for ``"NaN-NaN"``."""
    text = row.str(field_name)
    parts = text.split("-")
    if len(parts) != 2:
        raise row.error(field_name, f"expected 'start-end', got {text!r}")
    if all(part.strip().lower() == "nan" for part in parts):
        return None
    start, end = (parse_float(row, field_name, part) for part in parts)
    if not 0 <= start <= end:
        raise row.error(field_name, f"expected 0 <= start <= end, got {text!r}")
    return start, end


NAN_TS_NOTE = "ts 'NaN-NaN': no clip window, the whole video is used"
