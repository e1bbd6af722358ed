"""STAR: ``STAR_{train,val,test}.json`` → QA records of the situation clips.

As the original notebook: ``video`` = Charades ``video_id``, ``qid`` = ``question_id`` (its first part,
``Interaction``/``Sequence``/``Prediction``/``Feasibility``, is the question type), options = the
``choices`` texts in list order, ``start``/``end`` = the situation clip in seconds (numbers as written).
The test split has no ``answer``; its records are unlabeled. Programs and situation graphs are dropped.

Deliberate difference: the answer is the *text* of the correct choice, and the original's matching loop,
when no choice equals it, silently keeps the previous record's index. Here that raises an error naming the
file, record and field.
"""

from __future__ import annotations

import os

from sevila.data.converters.common import Conversion, answer_index, build, new_summary
from sevila.data.records import QARecord
from sevila.data.sources import Row, json_array_rows, load_json


def _choices(row: Row) -> list[str]:
    texts = []
    for i, choice in enumerate(row.list("choices")):
        if not isinstance(choice, dict) or not isinstance(choice.get("choice"), str) or not choice["choice"].strip():
            raise row.error(f"choices[{i}]", "expected an object with a non-empty string 'choice'")
        texts.append(choice["choice"])
    return texts


def convert(path: str | os.PathLike[str]) -> Conversion:
    summary = new_summary("star", path)
    records = []
    for row in json_array_rows(path, load_json(path)):
        summary.records_in += 1
        qid = row.str("question_id")
        choices = _choices(row)
        answer = None
        if row.has("answer"):
            answer, matches = answer_index(row, "answer", row.str("answer"), choices)
            if matches > 1:
                summary.note("answer text equals several choices: the last one is the answer")
        start, end = row.span("start/end", (row.number("start"), row.number("end")))
        records.append(
            build(
                row,
                QARecord,
                qid=qid,
                video=row.str("video_id"),
                dataset="star",
                question=row.str("question"),
                options=choices,
                answer=answer,
                question_type=qid.split("_")[0],
                start=start,
                end=end,
            )
        )
    return Conversion(records, summary)
