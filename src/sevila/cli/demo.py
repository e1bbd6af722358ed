"""`sevila demo`: answer the bundled example question about the bundled example video with the demo model."""

from __future__ import annotations

import argparse
import json

from sevila.cli.common import add_precision_argument
from sevila.prompts import OPTION_LETTERS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="answer a question about the bundled example video with the bundled demo model (seconds, CPU)",
        description=(
            "The demo model is a tiny SeViLA trained with the paper's stages on a synthetic world of moving "
            "shapes (see docs/demo.md). Without -q/-o it asks the example's own question."
        ),
    )
    parser.add_argument("-q", "--question", help="another question about the example video")
    parser.add_argument("-o", "--option", dest="options", action="append", help="an option (repeat, 2 to 5)")
    add_precision_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.cli.answer import print_answer
    from sevila.hub import DEMO_DIR
    from sevila.inference import VideoQA

    example = json.loads((DEMO_DIR / "example.json").read_text()) if (DEMO_DIR / "example.json").is_file() else None
    if example is None:
        raise ValueError(
            f"the demo example is not installed in {DEMO_DIR}; build it with "
            "`python -m sevila_toy.demo.build --ship DIR` and copy DIR there (docs/demo.md)"
        )
    if (args.question is None) != (args.options is None):
        raise ValueError("give both --question and --option, or neither")
    question = args.question or example["question"]
    options = args.options or example["options"]
    qa = VideoQA.load("demo", device="cpu", cache=False, precision=args.precision)
    answer = qa.predict(DEMO_DIR / example["video"], question, options)
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    millions = sum(p.numel() for p in qa.model.parameters()) / 1e6
    print(
        f"Demo model: a {millions:.1f} M-parameter toy SeViLA trained on synthetic videos of coloured shapes; "
        "it knows only that world (docs/demo.md)"
    )
    print(f"Video: {DEMO_DIR / example['video']}")
    print(f"Question: {question}")
    print("Options: " + "  ".join(f"({letter}) {text}" for letter, text in zip(OPTION_LETTERS, options)))
    print_answer(qa, answer)
    if args.question is None:
        windows = example.get("evidence_windows") or []
        if windows:
            inside = sum(any(start <= t <= end for start, end in windows) for t in answer.keyframe_times)
            spans = ", ".join(f"{start:.2f}-{end:.2f}s" for start, end in windows)
            total = len(answer.keyframe_times)
            print(f"Evidence (where the answer can be seen): {spans}; keyframes inside it: {inside} of {total}")
        if example.get("answer") is not None:
            verdict = "right" if answer.index == example["answer"] else "wrong"
            right = example["answer"]
            print(f"Correct answer: ({OPTION_LETTERS[right]}) {options[right]}; the model is {verdict}")
    return 0
