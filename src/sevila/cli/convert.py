"""`sevila convert ORIGINAL.pth OUT_DIR [--base BLIP2]`: an original LAVIS checkpoint -> our format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sevila.cli.common import parse_size
from sevila.hub import BLIP2_HUB_ID  # no torch: --help stays fast


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="turn an original SeViLA/BLIP-2 .pth checkpoint into a sevila model directory",
        description=(
            "Convert an original LAVIS-format checkpoint (sevila_pretrained.pth, a stage checkpoint, "
            "blip2_pretrained_flant5xl.pth, ...) into a directory loadable with SeViLA.from_pretrained. "
            "SeViLA's checkpoints hold only the two Q-Former branches, so the ViT and Flan-T5 come from "
            f"--base, a transformers BLIP-2 (hub id such as {BLIP2_HUB_ID} or a local directory). "
            "Tensors are converted one at a time (no model is built), so memory stays near the largest tensor."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="the original .pth file")
    parser.add_argument(
        "output_dir",
        type=Path,
        help="directory to write config.json, the weights (model.safetensors or shards with "
        "model.safetensors.index.json) and tokenizer/",
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
    from sevila.convert.lavis import convert_original_checkpoint
    from sevila.model.precision import parse_dtype

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
        dtype=parse_dtype(args.dtype) if args.dtype else None,
        max_shard_size=args.max_shard_size,
    )
    print(report.summary(), file=sys.stderr)
    weights = sorted(p.name for p in args.output_dir.iterdir() if p.name.startswith("model"))
    print(f"wrote {args.output_dir} ({', '.join(weights)}, config.json, tokenizer/)")
    return 0
