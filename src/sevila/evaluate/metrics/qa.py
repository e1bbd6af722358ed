"""Multiple-choice QA accuracy: overall, per question type, and the paper's groupings.

Inputs are prediction rows (``qid``, ``prediction`` = 0-based option index, optionally ``answer`` — the
gold index — and ``error`` for a question that could not be answered) and, optionally, an answer key
(our QA records, or the original SeViLA annotation list). The rules, and where they depart from the
original's ``videoqa`` task (LAVIS ``vqa.py``):

* **Question type**: the record's ``question_type``, else ``qid.split('_')[0]`` as the original does
  (NExT-QA ``CW, CH, TN, TC, TP, DL, DC, DO``; STAR ``Interaction, Sequence, Prediction, Feasibility``;
  ``HOW2QA``, ``TVQA``, ``VLEP`` for the others).
* **Evaluated set**: with an answer key, every question of the key — a question without a prediction row
  is counted *wrong* and reported in ``num_missing`` (so a partial run cannot look better than it is);
  a row whose qid is not in the key is an error. Without a key, the rows themselves, whose ``answer``
  (or ``target``, the original's result-file name) gives the gold index.
* **Prediction range**: a prediction index past the question's options (known from the answer key's
  records or the original list's ``num_option``, or from the row's own ``option_scores``) is an error naming
  the file, line and field — never counted as a wrong answer.
* **Failed questions** (rows with a non-null ``error``) count as wrong and are reported in ``num_failed``.
* **Duplicate qids** are an error naming the qid. The original counts them (its distributed sampler pads
  with repeated questions and its dataset re-samples on errors), which skews its accuracy.
* **Per type**: percent per type; a type with no correct answer is 0.0 (the original raises KeyError).
* **NExT-QA groups** (paper, Table 1): Causal = CW+CH, Temporal = TN+TC+TP, Descriptive = DL+DC+DO, each
  the accuracy over all questions of its types (question-weighted), reported for the groups present.
* **STAR mean** (``star_mean_type_accuracy``, only when all four STAR types occur): the unweighted mean of
  the four type accuracies — the paper's STAR "Avg" and the original's STAR ``agg_metrics``. It differs
  from ``accuracy`` (question-weighted) because the types have very different sizes.
* ``accuracy`` is percent (the original logs a fraction for every dataset but STAR).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sevila.data.records import QARecord, record_from_dict
from sevila.data.sources import Row, index_position, json_array_rows, load_json, read_jsonl, unique_by_qid

NEXTQA_GROUPS = {
    "Causal": ("CW", "CH"),
    "Temporal": ("TN", "TC", "TP"),
    "Descriptive": ("DL", "DC", "DO"),
}
STAR_TYPES = ("Interaction", "Sequence", "Prediction", "Feasibility")


@dataclass(frozen=True)
class QAPrediction:
    """One prediction row. `prediction` is None only for a failed row (`error` set)."""

    qid: str
    prediction: int | None
    answer: int | None = None  # gold index carried by the row itself, if any
    error: str | None = None
    keyframe_times: tuple[float, ...] | None = None  # seconds; used by grounding metrics
    where: str = field(default="", compare=False)  # "FILE, line N" of the row, for errors

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class AnswerKeyEntry:
    """The gold answer of one question and its type.

    `answer` is None only for a failed row scored without an answer key (it is wrong whatever the gold).
    """

    qid: str
    answer: int | None
    question_type: str
    num_options: int | None = None  # when known: predictions past it are errors


def question_type_of(qid: str) -> str:
    """The original's type of a qid: the text before the first ``_``."""
    return qid.split("_")[0]


def _optional_index(row: Row, key: str) -> int | None:
    return row.int(key, low=0) if row.has(key) and row.data[key] is not None else None


def prediction_from_row(row: Row) -> QAPrediction:
    """Validate one prediction row; errors name the row's file, position and field."""
    qid = row.str("qid")
    error = row.data.get("error")
    if error is not None and not isinstance(error, str):
        raise row.error("error", "expected a string (the failure) or null")
    prediction = _optional_index(row, "prediction")
    if prediction is None and error is None:
        raise row.error("prediction", "missing (a row without an answer needs an 'error')")
    answer = _optional_index(row, "answer")
    if answer is None:
        answer = _optional_index(row, "target")
    if prediction is not None and row.has("option_scores") and isinstance(row.data["option_scores"], list):
        count = len(row.data["option_scores"])
        if prediction >= count:
            raise row.error(
                "prediction", f"{prediction} is out of range: the row scores {count} options (0..{count - 1})"
            )
    times = None
    if row.has("keyframe_times") and row.data["keyframe_times"] is not None:
        raw = row.list("keyframe_times")
        times = tuple(float(row.check_number(f"keyframe_times[{i}]", t)) for i, t in enumerate(raw))
    where = ", ".join(part for part in (row.source, row.position) if part)
    return QAPrediction(qid, prediction, answer, error, times, where)


def prediction_from_dict(
    data: Mapping[str, Any], source: str | os.PathLike[str] = "<predictions>", position: str = ""
) -> QAPrediction:
    """`prediction_from_row` for an in-memory row."""
    return prediction_from_row(Row(data, source, position))


def _rows(path: str | os.PathLike[str]) -> Iterable[Row]:
    """Rows of a JSONL file, or of a JSON array (the original's ``{split}_epoch{n}.json`` result files)."""
    with open(path, "rb") as f:  # bytes: the readers below name the file and line of any bad text
        head = f.read(64).removeprefix(b"\xef\xbb\xbf").lstrip()
    return json_array_rows(path, load_json(path)) if head.startswith(b"[") else read_jsonl(path)


def read_predictions(path: str | os.PathLike[str]) -> list[QAPrediction]:
    """Prediction rows of a file (JSONL or a JSON array); a repeated qid is an error naming both rows, and a
    file without any row is an error naming the file."""
    predictions = list(unique_by_qid(_rows(path), prediction_from_row))
    if not predictions:
        raise ValueError(f"{path}: no prediction rows (an empty file?)")
    return predictions


def entry_from_record(record: QARecord) -> AnswerKeyEntry:
    """The answer-key entry of a labeled QA record (its type: ``question_type``, else the qid prefix)."""
    if record.answer is None:
        raise ValueError(f"record {record.qid!r} has no answer (unlabeled split?)")
    return AnswerKeyEntry(
        record.qid, record.answer, record.question_type or question_type_of(record.qid), len(record.options)
    )


def read_answer_key(path: str | os.PathLike[str]) -> list[AnswerKeyEntry]:
    """The answer key of an annotation file: our records (JSONL) or the original's annotation list.

    From the original list only ``qid`` and ``answer`` are read (its type is the qid prefix), so any of
    its datasets works without saying which. Errors name the file, the line (or record index) and field.
    """

    def entry(row: Row) -> AnswerKeyEntry:
        if not row.has("kind"):  # an element of the original list
            qid = row.str("qid")
            count = row.int("num_option", low=1) if row.has("num_option") else None
            if count is None and row.has("a0"):
                count = sum(row.has(f"a{i}") for i in range(10))
            return AnswerKeyEntry(qid, row.int("answer", low=0), question_type_of(qid), count)
        record = record_from_dict(row.data, path, row.position)
        if not isinstance(record, QARecord):
            raise row.error("kind", f"expected a QA record, got {record.kind!r}")
        if record.answer is None:
            raise row.error("answer", "is null (an unlabeled split cannot be scored)")
        return entry_from_record(record)

    return list(unique_by_qid(_rows(path), entry))


def _parse_all(predictions: Iterable[QAPrediction | Mapping[str, Any]]) -> list[QAPrediction]:
    parsed = [
        p if isinstance(p, QAPrediction) else prediction_from_dict(p, "<predictions>", index_position(i))
        for i, p in enumerate(predictions)
    ]
    counts = Counter(p.qid for p in parsed)
    repeated = [qid for qid, n in counts.items() if n > 1]
    if repeated:
        raise ValueError(f"predictions: qid {repeated[0]!r} occurs {counts[repeated[0]]} times")
    return parsed


def _percent(correct: int, total: int) -> float:
    return 100.0 * correct / total


def qa_metrics(
    predictions: Iterable[QAPrediction | Mapping[str, Any]],
    answer_key: Iterable[AnswerKeyEntry | QARecord] | None = None,
) -> dict[str, Any]:
    """Accuracy metrics in percent (rules in the module docstring).

    Returns ``accuracy``, ``num_questions``, ``num_correct``, ``num_failed``, ``num_missing`` (0 without
    an answer key: nothing to be missing from), ``per_type`` and ``per_type_count``, plus ``groups``
    (NExT-QA types present) and ``star_mean_type_accuracy`` (all four STAR types present).
    """
    rows = _parse_all(predictions)
    by_qid = {p.qid: p for p in rows}
    if answer_key is None:
        for p in rows:
            if p.answer is None and not p.failed:
                raise ValueError(f"prediction {p.qid!r} has no 'answer' and no answer key was given")
        key = [AnswerKeyEntry(p.qid, p.answer, question_type_of(p.qid)) for p in rows]
    else:
        key = [e if isinstance(e, AnswerKeyEntry) else entry_from_record(e) for e in answer_key]
        known = {e.qid for e in key}
        if len(known) != len(key):
            repeated = next(qid for qid, n in Counter(e.qid for e in key).items() if n > 1)
            raise ValueError(f"answer key: qid {repeated!r} occurs twice")
        unknown = [p.qid for p in rows if p.qid not in known]
        if unknown:
            raise ValueError(f"{len(unknown)} predictions have qids not in the answer key, e.g. {unknown[0]!r}")
    if not key:
        raise ValueError("no questions to evaluate")
    correct: Counter[str] = Counter()
    total: Counter[str] = Counter()
    num_failed = num_missing = 0
    for entry in key:
        total[entry.question_type] += 1
        row = by_qid.get(entry.qid)
        if row is None:
            num_missing += 1
        elif row.failed:
            num_failed += 1
        elif entry.num_options is not None and row.prediction is not None and row.prediction >= entry.num_options:
            n = entry.num_options
            raise ValueError(
                f"{row.where or '<predictions>'}, field 'prediction': {row.prediction} is out of range: question "
                f"{entry.qid!r} has {n} options (0..{n - 1})"
            )
        elif row.prediction == entry.answer:
            correct[entry.question_type] += 1
    metrics: dict[str, Any] = {
        "accuracy": _percent(sum(correct.values()), len(key)),
        "num_questions": len(key),
        "num_correct": sum(correct.values()),
        "num_failed": num_failed,
        "num_missing": num_missing,
        "per_type": {t: _percent(correct[t], n) for t, n in sorted(total.items())},
        "per_type_count": dict(sorted(total.items())),
    }
    groups = {}
    for group, types in NEXTQA_GROUPS.items():
        n = sum(total[t] for t in types)
        if n:
            groups[group] = _percent(sum(correct[t] for t in types), n)
    if groups:
        metrics["groups"] = groups
    if all(total[t] for t in STAR_TYPES):
        metrics["star_mean_type_accuracy"] = sum(metrics["per_type"][t] for t in STAR_TYPES) / len(STAR_TYPES)
    return metrics
