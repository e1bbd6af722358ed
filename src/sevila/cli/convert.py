"""`sevila convert ORIGINAL.pth OUT_DIR [--base BLIP2]`: an original LAVIS checkpoint -> our format."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

BLIP2_HUB_ID = "Salesforce/blip2-flan-t5-xl"  # as sevila.checkpoints; not imported here so --help stays fast


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="turn an original SeViLA/BLIP-2 .pth checkpoint into a sevila model directory",
        description=(
            "Convert an original LAVIS-format checkpoint (sevila_pretrained.pth, a stage checkpoint, "
            "blip2_pretrained_flant5xl.pth, ...) into a directory loadable with SeViLA.from_pretrained. "
            "SeViLA's checkpoints hold only the two Q-Former branches, so the ViT and Flan-T5 come from "
            f"--base, a transformers BLIP-2 (hub id such as {BLIP2_HUB_ID} or a local directory)."
        ),
    )
    parser.add_argument("checkpoint", type=Path, help="the original .pth file")
    parser.add_argument("output_dir", type=Path, help="directory to write config.json, model.safetensors, tokenizer")
    parser.add_argument("--base", help=f"BLIP-2 hub id or directory providing every other weight (e.g. {BLIP2_HUB_ID})")
    parser.add_argument(
        "--config",
        help="without --base: a preset name (paper, tiny, mid) or a sevila config.json giving the model's sizes",
    )
    parser.add_argument("--tokenizer", help="without --base: tokenizer hub id or directory (default: the config's)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.checkpoints import convert_original_checkpoint
    from sevila.config import PRESETS, SeViLAConfig

    config = None
    if args.base is None:
        if args.config is None:
            raise ValueError("either --base (a BLIP-2 model) or --config (the model's sizes) is required")
        config = SeViLAConfig.preset(args.config) if args.config in PRESETS else SeViLAConfig.load(args.config)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    report = convert_original_checkpoint(args.checkpoint, args.output_dir, args.base, config, args.tokenizer)
    print(report.summary(), file=sys.stderr)
    print(f"wrote {args.output_dir}")
    return 0
