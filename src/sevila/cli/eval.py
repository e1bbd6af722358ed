"""`sevila eval --model M --annotations A.jsonl --videos DIR --output PRED.jsonl`: answer a whole split."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from sevila.cli.common import add_model_arguments, load_videoqa
from sevila.utils.io import atomic_write_text


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="answer every question of an annotation file and compute the dataset's metrics",
        description=(
            "Multiple-choice records are answered with chained inference; QVHighlights moment records get "
            "the localizer's frame scores merged into moments (Moment-DETR submission rows). "
            "Batched, resumable (questions answered in --output are kept, failed ones retried; a rerun with "
            "other settings is refused unless --overwrite) and shardable "
            "(accelerate launch --multi_gpu --num_processes N -m sevila.cli eval ..., or torchrun "
            "--nproc_per_node N -m sevila.cli eval ...: each process answers its share, rank 0 merges). "
            "Writes one JSON line per question, <output>.meta.json (what produced it, when) and "
            "<output>.metrics.json; <output>.lock keeps a second process off the same output. "
            "Exit status 1 when every question failed, 2 when the input or settings are refused."
        ),
    )
    add_model_arguments(parser, prompt_style=False)
    parser.add_argument("--annotations", required=True, type=Path, help="records JSONL (see `sevila prepare`)")
    parser.add_argument("--videos", required=True, type=Path, help="folder the records' videos are in")
    parser.add_argument("--output", required=True, type=Path, help="predictions JSONL (appended to when resuming)")
    parser.add_argument(
        "--overwrite", action="store_true", help="discard an earlier --output (and its metrics) instead of resuming it"
    )
    parser.add_argument(
        "--video-path",
        default="{video}.mp4",
        help="file name of a record's video below --videos, over {video}, {qid}, {dataset}",
    )
    parser.add_argument("--batch-size", type=int, default=8, help="questions per batch (default 8)")
    parser.add_argument("--uniform", action="store_true", help="no localizer: the answerer sees all --frames frames")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="moment queries: frames with p(yes) at least this are positive (default 0.5)",
    )
    parser.add_argument(
        "--span-threshold",
        type=int,
        default=6,
        help="moment queries: bridge gaps of up to this many frames when merging (default 6)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.cli import CommandError
    from sevila.evaluate.predictions import OutputLock, environment, metrics_path, now, read_header
    from sevila.evaluate.runner import MomentOptions, Shard, evaluate, shard_path
    from sevila.evaluate.summary import split_metrics

    for flag, value in (("--frames", args.frames), ("--keyframes", args.keyframes), ("--batch-size", args.batch_size)):
        if value is not None and value < 1:
            raise CommandError(f"{flag} must be at least 1, got {value}")
    shard = Shard.from_environment()
    if shard.world_size > 1 and args.device is None:
        args.device = str(shard.device)  # Accelerate's choice: one GPU per rank, or the CPU
    # Refuse a second writer before the (possibly long) model load; the runner holds the lock while it writes.
    with OutputLock(args.output if shard.rank == 0 else shard_path(args.output, shard)):
        pass
    qa = load_videoqa(args)
    result = evaluate(
        qa.model,
        args.annotations,
        args.videos,
        args.output,
        num_frames=None if qa.fps is not None else qa.num_frames,
        fps=qa.fps,
        num_keyframes=qa.num_keyframes,
        batch_size=args.batch_size,
        use_localizer=not args.uniform,
        video_path=args.video_path,
        backend=args.backend,
        cache=qa.cache,
        shard=shard,
        compute_metrics=split_metrics,
        progress=not args.no_progress,
        moments=MomentOptions(args.threshold, args.span_threshold),
        overwrite=args.overwrite,
        model_name=args.model,
    )
    print(f"answered {result.answered}, failed {result.failed}, already done {result.resumed}", file=sys.stderr)
    if result.all_failed:
        print(
            f"sevila eval: error: all {result.num_questions} questions failed, no metrics written "
            f"(first: {result.first_failure}); fix the cause (is --videos right?) and rerun: failed questions "
            "are retried",
            file=sys.stderr,
        )
        return 1
    if result.metrics is not None:
        header = read_header(args.output)
        provenance = {
            "predictions": str(args.output),
            "predictions_created": header.get("created") if header else None,
            "settings": header.get("settings") if header else None,
            "model": header.get("model") if header else None,
            "computed": now(),
            "versions": environment(),
        }
        document = {**result.metrics, "provenance": provenance}
        atomic_write_text(metrics_path(args.output), json.dumps(document, indent=2, sort_keys=True) + "\n")
        print(json.dumps(result.metrics, indent=2, sort_keys=True))
    return 0
