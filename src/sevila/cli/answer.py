"""`sevila answer VIDEO -q QUESTION -o OPTION ...`: answer one question about one video."""

from __future__ import annotations

import argparse
import json

from sevila.cli.common import add_model_arguments, add_plot_argument, check_plot_argument, load_videoqa, report_plot
from sevila.prompts import OPTION_LETTERS

BLOCKS = "▁▂▃▄▅▆▇█"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "answer",
        help="answer a multiple-choice question about a video",
        description="Sample frames, let the localizer pick keyframes, and let the answerer choose an option.",
    )
    parser.add_argument("video", help="video file")
    parser.add_argument("-q", "--question", required=True, help="the question")
    parser.add_argument(
        "-o",
        "--option",
        dest="options",
        action="append",
        required=True,
        help="one answer option (repeat for each, 2 to 5)",
    )
    add_model_arguments(parser)
    parser.add_argument("--clip", nargs=2, type=float, metavar=("START", "END"), help="only this window (seconds)")
    parser.add_argument(
        "--uniform",
        action="store_true",
        help="no localizer: the answerer sees all --frames frames (the paper's baseline)",
    )
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_plot_argument(parser, "the frame-score plot with the keyframes marked and their thumbnails beneath")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_plot_argument(args)  # before the model loads: a missing matplotlib or a bad path fails at once
    qa = load_videoqa(args)
    answer = qa.predict(
        args.video,
        args.question,
        args.options,
        clip=tuple(args.clip) if args.clip else None,
        use_localizer=not args.uniform,
    )
    if args.plot:
        from sevila.plots import plot_answer

        report_plot(args, plot_answer(answer, args.video, args.plot, backend=args.backend))
    if args.json:
        print(json.dumps(answer.to_dict(), indent=2))
        return 0
    print_answer(qa, answer)
    return 0


def print_answer(qa, answer) -> None:
    """The readable result: answer, option scores, keyframe times and the frame-score strip."""
    print(f"Answer: ({answer.letter}) {answer.text}")
    scores = ", ".join(f"{letter}={score:.2f}" for letter, score in zip(OPTION_LETTERS, answer.option_scores))
    print(f"Option scores: {scores}")
    print("Keyframes: " + ", ".join(f"{t:.2f}s" for t in answer.keyframe_times))
    if answer.frame_scores is not None:
        print(frame_score_strip(answer.frame_scores, answer.frame_times, answer.keyframes))


STRIP_WIDTH = 100


def frame_score_strip(scores: list[float], times: list[float], keyframes: list[int]) -> str:
    """A compact view of the localizer's scores over time: one bar per frame, keyframes marked with ^. More
    frames than `STRIP_WIDTH` (a long video) share bars: each shows the best of its frames."""
    low, high = min(scores), max(scores)
    span = (high - low) or 1.0
    columns = min(len(scores), STRIP_WIDTH)
    column_of = [i * columns // len(scores) for i in range(len(scores))]
    best = [low] * columns
    for i, score in enumerate(scores):
        best[column_of[i]] = max(best[column_of[i]], score)
    bars = "".join(BLOCKS[min(len(BLOCKS) - 1, int((s - low) / span * len(BLOCKS)))] for s in best)
    marked = {column_of[i] for i in keyframes}
    marks = "".join("^" if c in marked else " " for c in range(columns))
    shared = f", {len(scores) / columns:.1f} per bar" if columns < len(scores) else ""
    return (
        f"Frame scores ({times[0]:.1f}s .. {times[-1]:.1f}s, {len(scores)} frames{shared}, "
        f"yes-logit {low:.2f} .. {high:.2f}):\n  {bars}\n  {marks.rstrip()}"
    )
