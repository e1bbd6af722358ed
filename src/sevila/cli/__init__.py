"""The `sevila` console command. Thin: each sub-command lives in its own module of this package and
only parses arguments before calling the library."""

from __future__ import annotations

import argparse
import importlib
import sys

from sevila import __version__

# One module per sub-command; each defines `register(subparsers)` which adds its parser and sets `func`.
COMMAND_MODULES = ("demo", "answer", "eval", "metrics", "train", "prepare", "synth", "convert")


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit status 2, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sevila", description="SeViLA video question answering and localization")
    parser.add_argument("--version", action="version", version=f"sevila {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"sevila.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (CommandError, FileNotFoundError, ValueError) as err:
        # Library errors name the file and field; show them without a traceback.
        print(f"sevila {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
