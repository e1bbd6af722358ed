"""What the model is asked and what it should answer, for one record: prompts and targets.

Pure functions (no torch), shared by the torch `Dataset` and by tools that only need the texts.
"""

from __future__ import annotations

from collections.abc import Sequence

from sevila import prompts
from sevila.data.records import DATASET_TABLE, MomentRecord, QARecord, Record


def record_prompts(record: Record) -> tuple[str, str]:
    """(answerer prompt, localizer prompt) in the prompt style of the record's dataset (`DATASET_TABLE`).

    QVHighlights records only train the localizer; their answerer prompt is the original's unused
    instruction, kept so every item has both prompts.
    """
    if isinstance(record, MomentRecord):
        return prompts.qvhighlights_qa_prompt(), prompts.qvhighlights_loc_prompt(record.query)
    return prompts.prompts_for(DATASET_TABLE[record.dataset].prompt_style, record.question, record.options)


def answer_text(record: QARecord) -> str | None:
    """The answerer's target (``"Option C"``), or None for an unlabeled record."""
    return None if record.answer is None else prompts.answer_target(record.answer)


def frame_labels(timestamps: Sequence[float], windows: Sequence[Sequence[float]] | None) -> list[bool]:
    """Per-frame localizer labels: frame j is "yes" iff its time lies in a window, both ends inclusive.

    `timestamps` are ``index / fps`` seconds (the original's convention). Without windows (an unlabeled
    split) every frame is "no", as the original does.
    """
    windows = windows or ()
    return [any(start <= t <= end for start, end in windows) for t in timestamps]
