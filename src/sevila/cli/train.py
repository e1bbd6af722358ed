"""`sevila train CONFIG.yaml [key=value ...]`: run one training stage. Thin: `sevila.train` does the work."""

from __future__ import annotations

import argparse
import logging
import os

DESCRIPTION = """\
Train one stage of SeViLA: pretrain-localizer, finetune-answerer or refine-localizer (the file's `stage`).

Overrides set any key of the file, dotted for sections: epochs=3 optim.lr=1e-5 data.num_workers=8.
The same command runs on one process or many:
  python -m sevila.cli train CONFIG.yaml ...                           one GPU (or the CPU)
  accelerate launch --multi_gpu --num_processes 4 -m sevila.cli train CONFIG.yaml ...
  torchrun --nproc_per_node 4 -m sevila.cli train CONFIG.yaml ...      (add --nnodes/--rdzv-* for several nodes)
batch_size is per process. The run directory (output_dir) gets checkpoint/, best/ (load it with
SeViLA.from_pretrained), metrics.jsonl and tensorboard/.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a stage (localizer pre-training, answerer fine-tuning, localizer refinement)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("config", help="run config (YAML), e.g. configs/nextqa/finetune-answerer.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in output_dir from its last checkpoint (resume=PATH picks a checkpoint)",
    )
    parser.add_argument("--rounds", type=int, metavar="N", help="refine-localizer: rounds of self-refinement")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.train import load_config, train

    overrides = list(args.overrides)
    if args.resume:
        overrides.append("resume=true")
    if args.rounds is not None:
        overrides.append(f"rounds={args.rounds}")
    config = load_config(args.config, overrides)
    main_process = int(os.environ.get("RANK", "0")) == 0  # set by torchrun and accelerate launch
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    result = train(config)
    if not main_process:
        return 0
    if result.stopped:
        print(f"stopped after {config.stop_after_steps} steps; resume with --resume")
    elif result.best_dir is not None:
        print(f"best {result.metric} {result.best_metric:.4f}: {result.best_dir}")
    return 0
