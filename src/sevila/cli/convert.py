"""`sevila convert ORIGINAL.pth OUT_DIR [--base BLIP2]`: an original LAVIS checkpoint -> our format;
`sevila convert --from-hub OUT_DIR`: the paper's model, downloaded and converted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sevila.cli.common import parse_size
from sevila.hub import BLIP2_HUB_ID, PAPER_CHECKPOINT, SEVILA_HUB_ID  # no torch: --help stays fast


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="turn an original SeViLA/BLIP-2 .pth checkpoint into a sevila model directory",
        description=(
            "Convert an original LAVIS-format checkpoint (sevila_pretrained.pth, a stage checkpoint, "
            "blip2_pretrained_flant5xl.pth, ...) into a directory loadable with SeViLA.from_pretrained. "
            "SeViLA's checkpoints hold only the two Q-Former branches, so the ViT and Flan-T5 come from "
            f"--base, a transformers BLIP-2 (hub id such as {BLIP2_HUB_ID} or a local directory). "
            "Tensors are converted one at a time (no model is built), so memory stays near the largest tensor. "
            f"With --from-hub (and only OUT_DIR): the paper's model, {PAPER_CHECKPOINT} of {SEVILA_HUB_ID} over "
            f"{BLIP2_HUB_ID}, each downloaded into the Hugging Face cache (or taken from there, offline too) at the "
            "revisions given, with a model card (README.md)."
        ),
    )
    parser.add_argument("checkpoint", type=Path, nargs="?", help="the original .pth file (not with --from-hub)")
    parser.add_argument(
        "output_dir",
        type=Path,
        nargs="?",
        help="directory to write config.json, the weights (model.safetensors or shards with "
        "model.safetensors.index.json), tokenizer/, README.md (model card) and provenance.json",
    )
    parser.add_argument(
        "--from-hub",
        action="store_true",
        help=f"download the paper's checkpoint ({SEVILA_HUB_ID}) and BLIP-2 ({BLIP2_HUB_ID}) and convert them",
    )
    parser.add_argument("--revision", help=f"with --from-hub: the branch, tag or commit of {SEVILA_HUB_ID} to use")
    parser.add_argument(
        "--base-revision", help="the branch, tag or commit of the --base hub id (with --from-hub: of BLIP-2)"
    )
    parser.add_argument("--base", help=f"BLIP-2 hub id or directory providing every other weight (e.g. {BLIP2_HUB_ID})")
    parser.add_argument(
        "--config",
        help="without --base: a preset name (paper, tiny, mid) or a sevila config.json giving the model's sizes",
    )
    parser.add_argument("--tokenizer", help="without --base: tokenizer hub id or directory (default: the config's)")
    parser.add_argument(
        "--dtype",
        choices=("fp32", "bf16", "fp16"),
        help="store the floating-point weights in this dtype (default: each keeps the dtype it has in its source)",
    )
    parser.add_argument(
        "--max-shard-size",
        type=parse_size,
        default="5GB",
        help="largest weight file to write (default 5GB; a larger model is split into shards)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.config import PRESETS, SeViLAConfig
    from sevila.convert.lavis import convert_original_checkpoint, convert_paper_model
    from sevila.model.precision import parse_dtype

    dtype = parse_dtype(args.dtype) if args.dtype else None
    if args.from_hub:
        if args.output_dir is not None or args.base or args.config or args.tokenizer:
            raise ValueError(
                "--from-hub takes only OUT_DIR (and --revision, --base-revision, --dtype, --max-shard-size)"
            )
        if args.checkpoint is None:
            raise ValueError("--from-hub needs OUT_DIR, the directory to write the model to")
        args.output_dir = args.checkpoint
        report = convert_paper_model(
            args.output_dir,
            revision=args.revision,
            base_revision=args.base_revision,
            dtype=dtype,
            max_shard_size=args.max_shard_size,
        )
        return _done(args, report)
    if args.checkpoint is None or args.output_dir is None:
        raise ValueError("convert needs ORIGINAL.pth and OUT_DIR (or --from-hub OUT_DIR for the paper's model)")
    if args.revision:
        raise ValueError("--revision is for --from-hub; pin a --base hub id with --base-revision")
    config = None
    if args.base is None:
        if args.config is None:
            raise ValueError("either --base (a BLIP-2 model) or --config (the model's sizes) is required")
        config = SeViLAConfig.preset(args.config) if args.config in PRESETS else SeViLAConfig.load(args.config)
    report = convert_original_checkpoint(
        args.checkpoint,
        args.output_dir,
        args.base,
        config,
        args.tokenizer,
        dtype=dtype,
        max_shard_size=args.max_shard_size,
        base_revision=args.base_revision,
    )
    return _done(args, report)


def _done(args: argparse.Namespace, report) -> int:
    print(report.summary(), file=sys.stderr)
    weights = sorted(p.name for p in args.output_dir.iterdir() if p.name.startswith("model"))
    print(f"wrote {args.output_dir} ({', '.join(weights)}, config.json, tokenizer/, README.md)")
    return 0
