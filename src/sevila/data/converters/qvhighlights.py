"""QVHighlights: ``highlight_{train,val,test}_release.jsonl`` → moment records (localizer pre-training).

As the original notebook: ``video`` = ``vid`` (``{youtube_id}_{start}_{end}``, a 150-s clip), ``qid`` =
``QVHighlight_{qid}``, ``query``, ``duration``, ``relevant_windows`` (seconds within the clip, numbers as
written). The original drops ``relevant_clip_ids`` and ``saliency_scores``; they are kept here
(highlight-detection metrics need them) and left out of ``--format sevila`` output. The test release has no
labels: its records are unlabeled (``relevant_windows`` null); ``highlight_test_with_gt.jsonl`` is labeled.
"""

from __future__ import annotations

import os

from sevila.data.converters.common import Conversion, build, new_summary
from sevila.data.records import MomentRecord
from sevila.data.sources import read_jsonl


def convert(path: str | os.PathLike[str]) -> Conversion:
    summary = new_summary("qvhighlights", path)
    records = []
    for row in read_jsonl(path):
        summary.records_in += 1
        records.append(
            build(
                row,
                MomentRecord,
                qid=f"QVHighlight_{row.int('qid')}",
                video=row.str("vid"),
                query=row.str("query"),
                duration=row.number("duration"),
                # Validated by MomentRecord; errors still name this file, line and field.
                relevant_windows=row.data.get("relevant_windows"),
                relevant_clip_ids=row.data.get("relevant_clip_ids"),
                saliency_scores=row.data.get("saliency_scores"),
            )
        )
    return Conversion(records, summary)
