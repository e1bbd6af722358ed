"""Arguments shared by the commands that run a model."""

from __future__ import annotations

import argparse
import sys

from sevila.utils.sizes import parse_size as parse_size_text

MODEL_HELP = "a model directory, a Hugging Face hub id, or 'demo' (the bundled toy model)"


def add_model_arguments(parser: argparse.ArgumentParser, prompt_style: bool = True) -> None:
    """Model, sampling, device, decoder and cache options; ``prompt_style`` only where the command builds
    prompts from free text (eval uses each record's dataset wording)."""
    parser.add_argument("--model", default=None, help=f"the model: {MODEL_HELP} (required)")
    sampling = parser.add_mutually_exclusive_group()
    sampling.add_argument(
        "--frames", type=int, default=None, help="frames sampled per video (default: the model's, 32)"
    )
    sampling.add_argument(
        "--fps",
        type=float,
        default=None,
        metavar="RATE",
        help="sample this many frames a second instead (e.g. 1 for a long video; the same uniform rule)",
    )
    parser.add_argument("--keyframes", type=int, default=None, help="keyframes for the answerer (default: 4)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_precision_argument(parser)
    parser.add_argument("--backend", default="pyav", choices=("pyav", "decord", "torchcodec"), help="video decoder")
    if prompt_style:
        parser.add_argument(
            "--prompt-style", default="nextqa", help="prompt wording: nextqa (multiple choice, default), vlep or demo"
        )
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache folder (default: $SEVILA_CACHE_DIR or ~/.cache/sevila/features)",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    parser.add_argument(
        "--chunk-frames",
        type=int,
        default=None,
        metavar="N",
        help="frames decoded and encoded at once when a video samples more (memory follows it; default 32)",
    )
    parser.add_argument(
        "--cache-limit",
        metavar="SIZE",
        default=None,
        help="largest size of the feature cache, e.g. 20GB, 500MB, 2GiB or none; least recently used entries "
        "are deleted past it (default: $SEVILA_CACHE_LIMIT, else the library's default)",
    )


def parse_size(value: str) -> int:
    """An argparse type: a positive size (`sevila.utils.sizes.parse_size`)."""
    try:
        size = parse_size_text(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if size <= 0:
        raise argparse.ArgumentTypeError(f"a size must be positive, got {value!r}")
    return size


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    # Not argparse `choices`: a bad name is reported by `Precision.named` in the command's one-line error form.
    parser.add_argument(
        "--precision",
        default=None,
        metavar="{reference,bf16,fp32}",
        help="numeric precision: reference (the original's fp16 ViT / bf16 T5 mix; default on CUDA), "
        "bf16 (faster, lighter) or fp32 (default on CPU)",
    )


def add_plot_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--plot", metavar="FILE.png", default=None, help=f"also write {what} (needs matplotlib: sevila[plot])"
    )


def check_plot_argument(args: argparse.Namespace) -> None:
    """With --plot: matplotlib is there and the file can be written, or a one-line error before any work."""
    if not getattr(args, "plot", None):
        return
    from sevila.cli import CommandError
    from sevila.plots import INSTALL_HINT, PlotUnavailable, check_plot_path, require_matplotlib

    try:
        require_matplotlib()
    except PlotUnavailable:
        raise CommandError(f"--plot needs matplotlib: {INSTALL_HINT}") from None
    check_plot_path(args.plot)


def report_plot(args: argparse.Namespace, path) -> None:
    print(f"sevila {args.command}: wrote the plot to {path}", file=sys.stderr)


def load_videoqa(args: argparse.Namespace):
    from sevila.cli import CommandError
    from sevila.features import FeatureCache
    from sevila.inference import DEFAULT_CHUNK_FRAMES, VideoQA

    if args.model is None:  # no silent default: a toy model's answers must never pass for a real one's
        raise CommandError(f"no model given: name one with --model ({MODEL_HELP})")
    cache_limit = getattr(args, "cache_limit", None)
    if args.no_cache:
        if cache_limit is not None:
            raise CommandError("--cache-limit has no effect with --no-cache; give one or the other")
        cache = None
    else:  # the size text is parsed where the cache limit's syntax lives (sevila.features), as $SEVILA_CACHE_LIMIT is
        cache = (
            FeatureCache(args.cache_dir, max_bytes=cache_limit)
            if cache_limit is not None
            else FeatureCache(args.cache_dir)
        )
    return VideoQA.load(
        args.model,
        device=args.device,
        cache=cache or False,
        num_frames=args.frames,
        fps=getattr(args, "fps", None),
        chunk_frames=DEFAULT_CHUNK_FRAMES if getattr(args, "chunk_frames", None) is None else args.chunk_frames,
        num_keyframes=args.keyframes,
        backend=args.backend,
        prompt_style=getattr(args, "prompt_style", "nextqa"),
        precision=getattr(args, "precision", None),
    )
