"""NExT-QA: the official ``{train,val,test}.csv`` plus ``map_vid_vidorID.json`` → QA records.

Exactly the original's preprocessing (its ``--format sevila`` output equals SeViLA's ``nextqa/val.json``):

* ``video`` = ``map_vid_vidorID[video]``, the VidOR ``folder/id`` path of the video below the video root —
  so the map is required;
* ``qid`` = ``f"{type}_{video}_{qid}"`` with the raw numeric video id (``qid`` alone repeats across videos);
* a ``"."`` is appended to every option and a ``"?"`` to the question (the prompts expect them);
* ``answer`` = the csv's 0-based index; ``question_type`` = the type code (CW, CH, TN, TC, TP, DL, DC, DO).

The csv files are plain comma-separated with a header row; no field is quoted.
"""

from __future__ import annotations

import os

from sevila.data.converters.common import Conversion, build, new_summary, options
from sevila.data.records import QARecord
from sevila.data.sources import DataError, Row, json_object, load_json, read_csv

COLUMNS = ("video", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")
NUM_OPTIONS = 5


def load_vidor_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """``map_vid_vidorID.json``: numeric video id → ``"folder/id"``."""
    mapping = json_object(path, load_json(path), "video id -> VidOR path")
    for key, value in mapping.items():
        if not isinstance(value, str) or not value:
            raise DataError(path, f"key {key!r}", None, f"expected a VidOR path string, got {value!r}")
    return mapping


def nextqa_texts(question: str, raw_options: list[str]) -> tuple[str, list[str]]:
    """Question and options as the original's prompts see them: ``?`` and ``.`` appended."""
    return question + "?", [option + "." for option in raw_options]


def map_video(row: Row, field_name: str, mapping: dict[str, str], map_path: str | os.PathLike[str]) -> str:
    video = row.str(field_name)
    if video not in mapping:
        raise row.error(field_name, f"video {video!r} is not in {os.fspath(map_path)}")
    return mapping[video]


def convert(path: str | os.PathLike[str], *, video_map: str | os.PathLike[str] | None = None) -> Conversion:
    if video_map is None:
        raise ValueError(
            f"{os.fspath(path)}: NExT-QA needs map_vid_vidorID.json (videos live in VidOR folders); "
            "give it as an extra file or with --video-map"
        )
    mapping = load_vidor_map(video_map)
    summary = new_summary("nextqa", path)
    records = []
    for row in read_csv(path, required=COLUMNS):
        summary.records_in += 1
        question, option_texts = nextqa_texts(row.str("question"), options(row, NUM_OPTIONS))
        qtype = row.str("type")
        records.append(
            build(
                row,
                QARecord,
                qid=f"{qtype}_{row.str('video')}_{row.int('qid', low=0, from_text=True)}",
                video=map_video(row, "video", mapping, video_map),
                dataset="nextqa",
                question=question,
                options=option_texts,
                answer=row.int("answer", low=0, high=NUM_OPTIONS - 1, from_text=True),
                question_type=qtype,
            )
        )
    return Conversion(records, summary)
