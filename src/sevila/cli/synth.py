"""`sevila synth --out DIR --videos N --seed S`: write a synthetic video-QA world (see `sevila_toy.synth`).

Thin: planning, rendering and writing live in `sevila_toy.synth.generate`, imported only when the command runs
(the library never imports the toy package).
"""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Write a small synthetic video-QA world: videos of drifting coloured shapes with 1-3 short events (a shape
appears, moves fast, changes colour, or several white shapes flash), multiple-choice questions whose
evidence lies in those events, moment queries for localizer pre-training, and the evidence windows.

Output folder (must be new or empty):
  videos/v0000.mp4 ...            8 s, 8 fps, 64x64 H.264
  qa.jsonl                        all questions (QA records, dataset "synthetic", grounding in "extra")
  moments.jsonl                   one query per event (moment records)
  evidence.jsonl                  per qid: evidence windows [start, end] seconds and frame indices
  qa_{train,val,test}.jsonl       questions split by video (--split fractions)
  moments_{train,val,test}.jsonl  moments split the same way

Question types (qid prefix): by default those a colour in the evidence answers, which the demo model reads:
colour (of the shape that appeared), moved (colour of the shape that moved), recolour (the colour a shape
turned); with --question-types also shape, direction, count and temporal (what happened before/after).
The same seed gives byte-identical JSONL files and videos that decode to the same frames.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "synth",
        help="generate a synthetic video-QA dataset with known evidence windows",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    parser.add_argument("--videos", type=int, default=300, metavar="N", help="number of videos (default 300)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument(
        "--split",
        type=float,
        nargs=3,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="fractions of videos per split, summing to 1 (default 0.7 0.15 0.15)",
    )
    parser.add_argument("--workers", type=int, default=None, help="rendering processes (default: one per CPU)")
    parser.add_argument(
        "--question-types",
        nargs="+",
        metavar="TYPE",
        help="question types to ask (default: colour moved recolour; all: colour moved shape direction recolour "
        "count temporal)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila_toy.synth import DEFAULT_FRACTIONS, DEFAULT_QUESTION_TYPES, SPLITS, synthesize

    summary = synthesize(
        args.out,
        args.videos,
        args.seed,
        args.split or DEFAULT_FRACTIONS,
        args.workers,
        question_types=args.question_types or DEFAULT_QUESTION_TYPES,
    )
    types = ", ".join(f"{name} {count}" for name, count in sorted(summary.questions.items()))
    splits = ", ".join(f"{name} {summary.splits[name]}" for name in SPLITS)
    print(
        f"wrote {summary.videos} videos, {sum(summary.questions.values())} questions ({types}) and "
        f"{summary.moments} moments to {args.out} in {summary.seconds:.1f} s; videos per split: {splits}",
        file=sys.stderr,
    )
    return 0
