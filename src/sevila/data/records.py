"""The unified annotation record: one typed format for every dataset, stored as JSON lines.

Two kinds of record cover SeViLA's datasets:

* `QARecord` — a multiple-choice question (NExT-QA, NExT-GQA, STAR, How2QA, TVQA, VLEP, and the demo model's
  synthetic world);
* `MomentRecord` — a text query with the moments it describes (QVHighlights, used to pre-train the localizer).

`dataset` decides the record's kind, its prompt style (`sevila.prompts`) and the metrics that apply to it, all
in one table, `DATASET_TABLE`; so a record is self-contained: the torch `Dataset`, the evaluator and the metrics
need nothing but the record. Texts are stored exactly as the model sees them
(the original's preprocessing, such as NExT-QA's added ``?`` and ``.``, is applied by the converters), and
qids follow the original's conventions, because its metrics derive question types from ``qid.split('_')[0]``.

One JSON object per line, with a ``kind`` key (``"qa"`` or ``"moment"``) followed by the fields below; every
field is written (``null`` when absent) so that a file documents itself. Numbers are kept as the source
wrote them (JSON has one number type; an ``18`` stays ``18``) and numbers that a source wrote as strings
are stored as numbers. Reading validates everything and names file, line and field on any problem.

`extra` carries dataset-specific facts that later steps may need (NExT-GQA grounding windows, the raw
TVQA/How2QA ``ts`` string needed to reproduce the original's preprocessed files exactly, source ids).

This module must stay free of torch: converters and command-line tools import it.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from sevila.data.sources import DataError, Row, atomic_write_text, index_position, read_jsonl, unique_by_qid
from sevila.prompts import OPTION_LETTERS


@dataclass(frozen=True)
class DatasetSpec:
    """What a record's ``dataset`` decides."""

    kind: str  # the record type: "qa" (`QARecord`) or "moment" (`MomentRecord`)
    prompt_style: str  # the wording its questions are asked in: one of `sevila.prompts.PROMPT_STYLES`
    metrics: tuple[str, ...]  # what `sevila eval` reports for it: names of `METRICS`


METRICS = {
    "qa": "multiple-choice accuracy: overall, per question type, the dataset's groups",
    "grounding": "NExT-GQA's grounded QA (IoU, IoP, Acc@GQA) of the keyframes' span, when every record carries its "
    "grounding windows",
    "moments": "QVHighlights moment retrieval and highlight detection",
}

DATASET_TABLE: dict[str, DatasetSpec] = {
    "nextqa": DatasetSpec("qa", "nextqa", ("qa",)),
    "nextgqa": DatasetSpec("qa", "nextgqa", ("qa", "grounding")),
    "star": DatasetSpec("qa", "star", ("qa",)),
    "how2qa": DatasetSpec("qa", "how2qa", ("qa",)),
    "tvqa": DatasetSpec("qa", "tvqa", ("qa",)),
    "vlep": DatasetSpec("qa", "vlep", ("qa",)),
    # The demo model's synthetic world: its questions carry their evidence windows as grounding.
    "synthetic": DatasetSpec("qa", "synthetic", ("qa", "grounding")),
    "qvhighlights": DatasetSpec("moment", "qvhighlights", ("moments",)),
}
QA_DATASETS = tuple(name for name, spec in DATASET_TABLE.items() if spec.kind == "qa")
MOMENT_DATASETS = tuple(name for name, spec in DATASET_TABLE.items() if spec.kind == "moment")
DATASETS = QA_DATASETS + MOMENT_DATASETS

# QVHighlights' clips: clip id c covers seconds [2c, 2c + 2) of the video.
CLIP_SECONDS = 2

# Option letters of the prompts (A..E) bound the number of options.
MAX_OPTIONS = len(OPTION_LETTERS)


class InvalidRecord(ValueError):
    """A record breaks an invariant; `field` names the offending field."""

    def __init__(self, qid: Any, field: str, problem: str):
        self.field = field
        self.problem = problem
        super().__init__(f"record {qid!r}, field {field!r}: {problem}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_text(qid: Any, name: str, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecord(qid, name, f"expected a non-empty string, got {value!r}")


def _check_video(qid: Any, value: Any) -> None:
    """A video path relative to the video folder that stays inside it (no absolute path, no ``..``)."""
    _check_text(qid, "video", value)
    parts = value.replace("\\", "/").split("/")
    if value.startswith(("/", "\\")) or (len(value) > 1 and value[1] == ":") or ".." in parts:
        raise InvalidRecord(
            qid, "video", f"{value!r} leaves the video folder: expected a relative path without '..' components"
        )
    if any(ord(c) < 32 for c in value):
        raise InvalidRecord(qid, "video", f"{value!r} contains a control character")


def _check_span(qid: Any, name: str, span: Any) -> None:
    if not isinstance(span, (list, tuple)) or len(span) != 2 or not all(_is_number(v) for v in span):
        raise InvalidRecord(qid, name, f"expected [start, end] numbers, got {span!r}")
    if not 0 <= span[0] <= span[1]:
        raise InvalidRecord(qid, name, f"expected 0 <= start <= end, got {list(span)}")


@dataclass
class QARecord:
    """A multiple-choice question about a video (or about the clip ``[start, end]`` seconds of it)."""

    qid: str
    video: str  # path of the video below the video root, without ".mp4" (e.g. "1106/4010069381")
    dataset: str  # one of QA_DATASETS; selects the prompt style
    question: str | None  # None only for VLEP, whose prompt has no question
    options: list[str]
    answer: int | None  # 0-based index into options; None for unlabeled (test) splits
    question_type: str | None = None  # NExT-QA code (CW, TN, ...), STAR category (Interaction, ...)
    start: float | None = None  # clip window in seconds within the video; both or neither
    end: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "qa"

    def __post_init__(self) -> None:
        qid = self.qid
        _check_text(qid, "qid", self.qid)
        _check_video(qid, self.video)
        if self.dataset not in QA_DATASETS:
            raise InvalidRecord(qid, "dataset", f"{self.dataset!r} is not one of {', '.join(QA_DATASETS)}")
        if self.dataset == "vlep":
            if self.question is not None:
                raise InvalidRecord(qid, "question", "VLEP records have no question; expected null")
        else:
            _check_text(qid, "question", self.question)
        if not isinstance(self.options, list) or not 2 <= len(self.options) <= MAX_OPTIONS:
            raise InvalidRecord(qid, "options", f"expected a list of 2..{MAX_OPTIONS} strings, got {self.options!r}")
        for i, option in enumerate(self.options):
            _check_text(qid, f"options[{i}]", option)
        if self.dataset == "vlep" and len(self.options) != 2:
            raise InvalidRecord(qid, "options", f"VLEP records have 2 options, got {len(self.options)}")
        if self.answer is not None and (
            isinstance(self.answer, bool)
            or not isinstance(self.answer, int)
            or not 0 <= self.answer < len(self.options)
        ):
            raise InvalidRecord(
                qid, "answer", f"expected null or an index 0..{len(self.options) - 1}, got {self.answer!r}"
            )
        if self.question_type is not None:
            _check_text(qid, "question_type", self.question_type)
        if (self.start is None) != (self.end is None):
            raise InvalidRecord(qid, "start" if self.start is None else "end", "start and end go together")
        if self.start is not None:
            _check_span(qid, "start", (self.start, self.end))
        if not isinstance(self.extra, dict):
            raise InvalidRecord(qid, "extra", f"expected an object, got {self.extra!r}")

    @property
    def labeled(self) -> bool:
        return self.answer is not None

    @property
    def clip(self) -> tuple[float, float] | None:
        """The clip window in seconds, or None for the whole video."""
        return None if self.start is None or self.end is None else (self.start, self.end)


@dataclass
class MomentRecord:
    """A text query with the moments of the video it describes (localizer pre-training, moment retrieval)."""

    qid: str
    video: str
    query: str
    duration: float  # video length in seconds
    relevant_windows: list[list[float]] | None = None  # [[start, end], ...] seconds; None for unlabeled splits
    relevant_clip_ids: list[int] | None = None  # QVHighlights' 2-second clip indices, where given
    saliency_scores: list[list[int]] | None = None  # one score list per relevant clip id, where given
    dataset: str = "qvhighlights"
    extra: dict[str, Any] = field(default_factory=dict)

    kind: ClassVar[str] = "moment"

    def __post_init__(self) -> None:
        qid = self.qid
        _check_text(qid, "qid", self.qid)
        _check_video(qid, self.video)
        _check_text(qid, "query", self.query)
        if self.dataset not in MOMENT_DATASETS:
            raise InvalidRecord(qid, "dataset", f"{self.dataset!r} is not one of {', '.join(MOMENT_DATASETS)}")
        if not _is_number(self.duration) or self.duration <= 0:
            raise InvalidRecord(qid, "duration", f"expected a positive number, got {self.duration!r}")
        if self.relevant_windows is not None:
            if not isinstance(self.relevant_windows, list):
                raise InvalidRecord(qid, "relevant_windows", f"expected a list, got {self.relevant_windows!r}")
            for i, window in enumerate(self.relevant_windows):
                _check_span(qid, f"relevant_windows[{i}]", window)
                if window[1] > self.duration:
                    raise InvalidRecord(
                        qid,
                        f"relevant_windows[{i}]",
                        f"window {list(window)} ends after the video's duration {self.duration}",
                    )
        if self.relevant_clip_ids is not None and (
            not isinstance(self.relevant_clip_ids, list)
            or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in self.relevant_clip_ids)
        ):
            raise InvalidRecord(qid, "relevant_clip_ids", "expected a list of non-negative integers")
        for i, clip_id in enumerate(self.relevant_clip_ids or ()):
            if CLIP_SECONDS * clip_id >= self.duration:
                raise InvalidRecord(
                    qid,
                    f"relevant_clip_ids[{i}]",
                    f"clip {clip_id} starts at {CLIP_SECONDS * clip_id} s, after the video's duration {self.duration}",
                )
        if self.saliency_scores is not None:
            if not isinstance(self.saliency_scores, list) or not all(
                isinstance(s, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in s)
                for s in self.saliency_scores
            ):
                raise InvalidRecord(qid, "saliency_scores", "expected a list of lists of integers")
            if self.relevant_clip_ids is not None and len(self.saliency_scores) != len(self.relevant_clip_ids):
                raise InvalidRecord(
                    qid,
                    "saliency_scores",
                    f"{len(self.saliency_scores)} entries for {len(self.relevant_clip_ids)} relevant clip ids",
                )
        if not isinstance(self.extra, dict):
            raise InvalidRecord(qid, "extra", f"expected an object, got {self.extra!r}")

    @property
    def labeled(self) -> bool:
        return self.relevant_windows is not None


Record = QARecord | MomentRecord
_RECORD_TYPES: dict[str, type[QARecord] | type[MomentRecord]] = {"qa": QARecord, "moment": MomentRecord}


def record_to_dict(record: Record) -> dict[str, Any]:
    """The JSON object of a record: ``kind`` and ``dataset`` first, then the fields in declaration order."""
    data: dict[str, Any] = {"kind": record.kind, "dataset": record.dataset}
    for f in dataclasses.fields(record):
        if f.name != "dataset":
            data[f.name] = getattr(record, f.name)
    return data


def record_from_dict(
    data: Mapping[str, Any], source: str | os.PathLike[str] = "<record>", position: str | None = None
) -> Record:
    """Validate a JSON object and build its record; problems raise `DataError` naming source, position, field."""
    row = Row(data, source, position or "")
    kind = row.raw("kind")
    record_type = _RECORD_TYPES.get(kind) if isinstance(kind, str) else None
    if record_type is None:
        raise row.error("kind", f"expected one of {', '.join(map(repr, _RECORD_TYPES))}, got {kind!r}")
    fields = {f.name: f for f in dataclasses.fields(record_type)}
    for key in data:
        if key != "kind" and key not in fields:
            raise row.error(key, f"unknown field for a {kind} record")
    for name, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if required and name not in data:
            raise row.error(name, "missing")
    values = {name: data[name] for name in fields if name in data}
    if values.get("extra") is None:
        values.pop("extra", None)
    try:
        return record_type(**values)
    except InvalidRecord as err:
        raise row.error(err.field, err.problem) from None


def iter_records(path: str | os.PathLike[str]) -> Iterator[Record]:
    """Records of a JSONL file, validated line by line; a repeated qid is an error (metrics key on qids)."""
    yield from unique_by_qid(read_jsonl(path), lambda row: record_from_dict(row.data, path, row.position))


def read_records(path: str | os.PathLike[str]) -> list[Record]:
    """All records of a JSONL file (see `iter_records`)."""
    return list(iter_records(path))


def write_records(path: str | os.PathLike[str], records: Iterable[Record]) -> None:
    """Write records as JSONL (one object per line, each ending in a newline), atomically (temp file + rename)."""
    atomic_write_text(path, "".join(json.dumps(record_to_dict(r), ensure_ascii=False) + "\n" for r in records))


def check_unique_qids(records: Iterable[Record], source: str | os.PathLike[str]) -> None:
    """Raise if two records share a qid (metrics key on qids); positions are indices into `records`."""
    seen: set[str] = set()
    for index, record in enumerate(records):
        if record.qid in seen:
            raise DataError(source, index_position(index), "qid", f"{record.qid!r} occurs twice")
        seen.add(record.qid)
