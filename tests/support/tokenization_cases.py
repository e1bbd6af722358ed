"""The texts SeViLA feeds T5, for the tokenisation tests: every prompt style of every dataset (built from
the real release files in ``../shared/datasets``), targets, frame prefixes and edge-case strings.

Run as a module from the repository root, ``python -m tests.support.tokenization_cases``, it prints the cases as
JSON: the input of ``tests/data/record_tokenization_reference.py``, which records what the original's tokenizer makes
of them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from sevila import prompts
from sevila.data.converters import convert
from sevila.data.records import MomentRecord
from sevila.data.targets import record_prompts
from tests.support.paths import shared_dir

RECORDS_PER_SPLIT = 3

# (dataset, annotation file, auxiliary files) below the shared datasets folder.
RELEASE_FILES = [
    ("nextqa", "nextqa/val.csv", {"video_map": "nextqa/map_vid_vidorID.json"}),
    ("nextgqa", "nextgqa/val.csv", {"grounding": "nextgqa/gsub_val.json"}),
    ("star", "star/STAR_test.json", {}),
    ("how2qa", "how2qa/how2qa_val_release.jsonl", {}),
    ("tvqa", "tvqa/tvqa_test_public.jsonl", {}),
    ("vlep", "vlep/vlep_dev_release.jsonl", {}),
    ("qvhighlights", "qvhighlights/highlight_val_release.jsonl", {}),
]


def dataset_batches(datasets_dir: Path) -> dict[str, list[str]]:
    """Per dataset: the answerer and localizer prompts of its first records and of its longest one (which
    the 77-token limit truncates), each kind tokenised as one batch as the model does."""
    batches: dict[str, list[str]] = {}
    for dataset, annotation, extras in RELEASE_FILES:
        records, _ = convert(dataset, datasets_dir / annotation, **{k: datasets_dir / v for k, v in extras.items()})
        longest = max(records, key=lambda r: len(record_prompts(r)[1]))
        chosen = [*records[:RECORDS_PER_SPLIT], longest]
        pairs = [record_prompts(r) for r in chosen]
        if not all(isinstance(r, MomentRecord) for r in chosen):
            batches[f"{dataset}.qa"] = [qa for qa, _ in pairs]
        batches[f"{dataset}.loc"] = [loc for _, loc in pairs]
    return batches


def target_batches() -> dict[str, list[str]]:
    return {
        "targets.options": [prompts.answer_target(i) for i in range(len(prompts.OPTION_LETTERS))],
        "targets.yes_no": ["yes", "no"],
        "targets.frame_labels": [prompts.frame_labels_target(labels) for labels in ([True, False], [False] * 4)],
    }


def demo_batches() -> dict[str, list[str]]:
    question, options = "What colour  was the shape that appeared? ", ["red", "a blue one.", "green "]
    return {
        "demo.qa": [prompts.demo_qa_prompt(question, options)],
        "demo.loc": [prompts.demo_loc_prompt(question, options)],
    }


# Whitespace, unicode and literal special tokens, alone and as they can reach a prompt.
EDGE_TEXTS = [
    "Frame 1: ",
    "trailing space ",
    "two trailing spaces  ",
    "  leading and   inner   spaces",
    " ",
    "",
    "tab\tand\nnewline\r\nend",
    "café naïve Zürich",
    "ﬁne ﬂour ½ ２０２３ Ｆｕｌｌ-width",
    "emoji 🙂 and 中文 and עברית",
    "a non\u00a0breaking space and a zero\u200bwidth one",
    "ends with a tab\t",
    "</s> in the middle </s>",
    "<pad> and <unk> as text",
    "<extra_id_0> sentinel",
    "Option A: yes. Option B: no.",
]


def edge_batches() -> dict[str, list[str]]:
    batches = {f"edge.{i}": [text] for i, text in enumerate(EDGE_TEXTS)}
    batches["edge.all"] = list(EDGE_TEXTS)
    return batches


def prefix_batches() -> dict[str, list[str]]:
    return {
        "prefix.frame": ["Frame: "],
        "prefix.keyframes_4": [f"Frame {i}: " for i in range(1, 5)],
        "prefix.keyframes_32": [f"Frame {i}: " for i in range(1, 33)],
    }


def all_cases(datasets_dir: Path) -> dict[str, dict[str, list[str]]]:
    """{"texts": {name: batch}, "prefixes": {name: batch}}: texts get ``</s>`` and the 77-token limit,
    prefixes no special tokens."""
    texts = {**dataset_batches(datasets_dir), **target_batches(), **demo_batches(), **edge_batches()}
    return {"texts": texts, "prefixes": prefix_batches()}


if __name__ == "__main__":
    json.dump(all_cases(shared_dir() / "datasets"), sys.stdout, ensure_ascii=False, indent=1)
