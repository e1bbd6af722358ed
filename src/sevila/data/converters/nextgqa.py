"""NExT-GQA: ``{val,test}.csv`` plus the grounding file ``gsub_{val,test}.json`` → QA records.

NExT-GQA re-annotates NExT-QA's causal and temporal questions with the video spans that answer them.
The records are built like NExT-QA's (same qid pattern ``{type}_{video}_{qid}``, ``?``/``.`` appended),
with these differences of the release:

* the csv's first column is ``video_id`` and ``answer`` is the *text* of the correct option: it is matched
  exactly against a0..a4. One test question has two identical correct options ("happy"); the last match is
  taken (NExT-QA's own csv gives that index for the same question) and the summary notes it;
* the grounding of each question goes into ``extra``: ``grounding_windows`` (``[[start, end], ...]``
  seconds), ``fps`` and ``duration`` (of the whole video), for the grounded-QA metrics. The train split has
  no grounding file, so the grounding is optional (the summary notes its absence);
* the release does not ship ``map_vid_vidorID.json`` (it is NExT-QA's file, byte for byte); without it the
  video stays the raw id and the summary says so.

``frame2time_*.json`` and ``upbd_*.json`` (32 sampled timestamps per video) are not annotations.
"""

from __future__ import annotations

import os
from typing import Any

from sevila.data.converters.common import Conversion, answer_index, build, new_summary, options
from sevila.data.converters.nextqa import NUM_OPTIONS, load_vidor_map, map_video, nextqa_texts
from sevila.data.records import QARecord
from sevila.data.sources import Row, json_object, load_json, read_csv

COLUMNS = ("video_id", "question", "answer", "qid", "type", "a0", "a1", "a2", "a3", "a4")


def load_grounding(path: str | os.PathLike[str]) -> dict[str, Row]:
    """``gsub_*.json``: video id → entry with ``duration``, ``fps`` and ``location`` (qid → spans)."""
    data = json_object(path, load_json(path), "video id -> grounding")
    rows = {}
    for video, entry in data.items():
        if not isinstance(entry, dict):
            raise Row({}, path, f"video {video!r}").error(None, f"expected an object, got {type(entry).__name__}")
        rows[video] = Row(entry, path, f"video {video!r}")
    return rows


def grounding_extra(row: Row, grounding: dict[str, Row], path: str | os.PathLike[str]) -> dict[str, Any]:
    """The grounding of the question in `row`; a question without one is an error (wrong split's file?)."""
    video, qid = row.str("video_id"), str(row.int("qid", from_text=True))
    entry = grounding.get(video)
    if entry is None:
        raise row.error("video_id", f"video {video} has no grounding in {os.fspath(path)} (file of another split?)")
    location = entry.raw("location")
    if not isinstance(location, dict):
        raise entry.error("location", "expected an object qid -> [[start, end], ...]")
    if qid not in location:
        raise row.error("qid", f"video {video} qid {qid} has no grounding in {os.fspath(path)}")
    spans = location[qid]
    if not isinstance(spans, list) or not spans:
        raise entry.error(f"location.{qid}", "expected a non-empty list of [start, end]")
    return {
        "grounding_windows": [list(entry.span(f"location.{qid}", span)) for span in spans],
        "fps": entry.number("fps"),
        "duration": entry.number("duration"),
    }


def convert(
    path: str | os.PathLike[str],
    *,
    grounding: str | os.PathLike[str] | None = None,
    video_map: str | os.PathLike[str] | None = None,
) -> Conversion:
    spans = load_grounding(grounding) if grounding is not None else None
    mapping = load_vidor_map(video_map) if video_map is not None else None
    summary = new_summary("nextgqa", path)
    records = []
    for row in read_csv(path, required=COLUMNS):
        summary.records_in += 1
        raw_options = options(row, NUM_OPTIONS)
        question, option_texts = nextqa_texts(row.str("question"), raw_options)
        answer, matches = answer_index(row, "answer", row.str("answer"), raw_options)
        if matches > 1:
            summary.note("answer text equals several options: the last one is the answer")
        video_id = row.str("video_id")
        qid = str(row.int("qid", low=0, from_text=True))
        qtype = row.str("type")
        if mapping is None:
            video = video_id
            summary.note("video not mapped to its VidOR folder (no map_vid_vidorID.json given)")
        else:
            video = map_video(row, "video_id", mapping, video_map)
        if spans is None:
            summary.note("no grounding (no gsub_*.json given)")
            extra = {}
        else:
            extra = grounding_extra(row, spans, grounding)
        records.append(
            build(
                row,
                QARecord,
                qid=f"{qtype}_{video_id}_{qid}",
                video=video,
                dataset="nextgqa",
                question=question,
                options=option_texts,
                answer=answer,
                question_type=qtype,
                extra=extra,
            )
        )
    return Conversion(records, summary)
