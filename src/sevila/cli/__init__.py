"""The `sevila` console command. Thin: each sub-command lives in its own module of this package and
only parses arguments before calling the library."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import warnings

from sevila import __version__
from sevila.video.errors import BackendUnavailable

# One module per sub-command; each defines `register(subparsers)` which adds its parser and sets `func`.
COMMAND_MODULES = (
    "demo",
    "answer",
    "localize",
    "app",
    "eval",
    "metrics",
    "train",
    "prepare",
    "synth",
    "convert",
    "cache",
)


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
    """Run one command. User-facing failures print one line and return 2; Ctrl-C returns 130 and a closed
    output pipe (``sevila ... | head``) 141, quietly, as shell tools do."""
    command = "sevila"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        command = f"sevila {args.command}"
        with _one_line_warnings(command):
            try:
                result = args.func(args)
            except (CommandError, FileNotFoundError, ValueError, BackendUnavailable) as err:
                # Library errors name the file and field; show them without a traceback, on one line.
                print(f"{command}: error: {_one_line(err)}", file=sys.stderr)
                return 2
            sys.stdout.flush()  # a closed pipe is reported here, not at interpreter exit
        return int(result or 0)
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


@contextlib.contextmanager
def _one_line_warnings(command: str):
    """Warnings (e.g. a prompt cut to 77 tokens) as ``sevila CMD: warning: ...`` lines, not Python's two-line form."""
    previous = warnings.formatwarning

    def format_warning(message, category, filename, lineno, line=None) -> str:
        return f"{command}: warning: {_one_line(message) if isinstance(message, Warning) else message}\n"

    warnings.formatwarning = format_warning
    try:
        yield
    finally:
        warnings.formatwarning = previous


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is not a real file (e.g. captured in a test)
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
