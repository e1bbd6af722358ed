"""`sevila metrics`: score a prediction file against annotations; prints one JSON object (sorted keys,
percent values) on stdout. Thin: reading, validation and the metrics live in `sevila.evaluate.metrics`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from sevila.evaluate import metrics

DESCRIPTION = """\
Score predictions and print the metrics as one JSON object (percent values).

  qa            --predictions rows.jsonl [--annotations val.jsonl | original val.json]
                rows: qid, prediction (0-based), optional error; gold answers from the annotations
                (our records or the original SeViLA list), else from each row's answer/target.
  qvhighlights  --predictions submission.jsonl --annotations highlight_val_release.jsonl
                any Moment-DETR submission file; official QVHighlights metrics (MR-*, HL-*).
  nextgqa       --predictions rows.jsonl --annotations val.jsonl | val.csv gsub_val.json
                or --predictions ground.json --qa-results res.json --annotations gsub_val.json
                (the benchmark's own files); Acc@QA, Acc@GQA, mIoP, IoP@0.3/0.5, mIoU, IoU@0.3/0.5.

Malformed input fails with the file, line and field.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "metrics",
        help="score a prediction file (QA accuracy, QVHighlights, NExT-GQA)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("task", choices=("qa", "qvhighlights", "nextgqa"), help="which metrics")
    parser.add_argument("--predictions", required=True, metavar="FILE", help="prediction file")
    parser.add_argument("--annotations", nargs="+", default=[], metavar="FILE", help="annotation file(s) (see above)")
    parser.add_argument("--qa-results", metavar="FILE", help="nextgqa: the benchmark's QA result file")
    parser.add_argument(
        "--span-pad",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="nextgqa rows: widen the keyframe span by this much on each side (default 0)",
    )
    parser.add_argument(
        "--partial",
        action="store_true",
        help="qvhighlights: score the queries present in both files instead of requiring the same queries",
    )
    parser.set_defaults(func=run)


def _one(paths: list[str], task: str) -> str | None:
    if len(paths) > 1:
        raise ValueError(f"{task}: give one annotation file, got {len(paths)}")
    return paths[0] if paths else None


def _score(args: argparse.Namespace) -> dict[str, Any]:
    if args.task == "qa":
        annotations = _one(args.annotations, "qa")
        key = metrics.read_answer_key(annotations) if annotations else None
        return metrics.qa_metrics(metrics.read_predictions(args.predictions), key)
    if args.task == "qvhighlights":
        annotations = _one(args.annotations, "qvhighlights")
        if annotations is None:
            raise ValueError("qvhighlights: --annotations (the ground-truth JSONL) is required")
        return metrics.evaluate_qvhighlights(
            metrics.read_submission(args.predictions),
            metrics.read_qvhighlights_annotations(annotations),
            require_all=not args.partial,
        )
    questions = _nextgqa_questions(args.annotations)
    if args.qa_results is None and Path(args.predictions).suffix == ".json":
        raise ValueError(f"{args.predictions}: the benchmark's span file needs its QA results (--qa-results)")
    if args.qa_results:
        predictions = metrics.read_official_predictions(args.predictions, args.qa_results)
    else:
        rows = metrics.read_predictions(args.predictions)
        predictions = metrics.predictions_from_rows(rows, questions, pad=args.span_pad)
    return metrics.nextgqa_metrics(questions, predictions)


def _nextgqa_questions(paths: list[str]) -> list[metrics.GroundedQuestion]:
    """The split's questions: the benchmark's csv with its grounding file is converted to records first (the
    metrics read records, not release files); records or a grounding file alone are read as they are."""
    csvs = [p for p in paths if Path(p).suffix == ".csv"]
    groundings = [p for p in paths if Path(p).suffix == ".json"]
    if len(paths) == 2 and len(csvs) == 1 and len(groundings) == 1:
        from sevila.data import convert

        return metrics.questions_from_records(convert("nextgqa", csvs[0], grounding=groundings[0]).records)
    return metrics.read_nextgqa_annotations(paths)


def run(args: argparse.Namespace) -> int:
    print(json.dumps(_score(args), sort_keys=True))
    return 0
