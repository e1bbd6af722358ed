"""`sevila localize VIDEO -q QUERY`: where in a video a free-text query happens (moments, best first)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sevila.cli.answer import frame_score_strip
from sevila.cli.common import add_model_arguments, add_plot_argument, check_plot_argument, load_videoqa, report_plot
from sevila.moments import DEFAULT_SPAN_THRESHOLD, DEFAULT_THRESHOLD


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "localize",
        help="find the moments of a video that match a query",
        description="Score every sampled frame for the query with the localizer and merge the frames it accepts "
        "into moments (start, end, score), best first.",
    )
    parser.add_argument("video", help="video file")
    parser.add_argument("-q", "--query", required=True, help="what to look for, e.g. 'a man sits down'")
    add_model_arguments(parser, prompt_style=False)
    parser.add_argument("--clip", nargs=2, type=float, metavar=("START", "END"), help="only this window (seconds)")
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        help=f"frames with p(yes) at least this are in a moment (default {DEFAULT_THRESHOLD})",
    )
    parser.add_argument(
        "--span-threshold",
        type=int,
        default=DEFAULT_SPAN_THRESHOLD,
        help=f"bridge gaps of up to this many sampled frames when merging (default {DEFAULT_SPAN_THRESHOLD})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object in Moment-DETR's submission form (query, vid, pred_relevant_windows, "
        "pred_saliency_scores)",
    )
    add_plot_argument(parser, "the frame-score plot with the moments shaded")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.cli import CommandError

    if not args.query.strip():
        raise CommandError("the query is empty")
    check_plot_argument(args)
    qa = load_videoqa(args)
    localization = qa.localize(
        args.video,
        args.query,
        clip=tuple(args.clip) if args.clip else None,
        threshold=args.threshold,
        span_threshold=args.span_threshold,
    )
    if args.plot:
        from sevila.plots import plot_localization

        report_plot(args, plot_localization(localization, args.plot))
    if args.json:
        print(json.dumps(moment_row(localization, Path(args.video).stem, localization.duration)))
        return 0
    print_moments(localization)
    return 0


def moment_row(localization, vid: str, duration: float) -> dict:
    """The Moment-DETR submission row (`sevila.evaluate.metrics.qvhighlights_io`), without a qid: a free query
    has none. Highlight scores are left out of a video shorter than one 2-second clip."""
    from sevila.evaluate.metrics.qvhighlights_io import MomentPrediction, moment_prediction, prediction_to_dict

    try:
        prediction = moment_prediction(
            0, localization.query, vid, localization.frame_times, localization.frame_probabilities, duration
        )
    except ValueError:  # no whole 2-second clip to give a highlight score
        windows = tuple(tuple(m) for m in localization.moments)
        prediction = MomentPrediction(0, localization.query, vid, windows=windows)
    row = prediction_to_dict(prediction)
    del row["qid"]
    return row


def print_moments(localization) -> None:
    """The moments as a small table, then the p(yes) strip of every frame."""
    print(f"Moments for: {localization.query}")
    print(f"  {'#':>2}  {'start':>8}  {'end':>8}  {'score':>5}")
    for n, (start, end, score) in enumerate(localization.moments, 1):
        print(f"  {n:>2}  {start:>7.2f}s  {end:>7.2f}s  {score:>5.2f}")
    strip = frame_score_strip(localization.frame_probabilities, localization.frame_times, [])
    print(strip.replace("yes-logit", "p(yes)").rstrip())  # no keyframes: no marks line
