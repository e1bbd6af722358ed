"""`sevila cache info|clear`: inspect or empty the per-video feature cache (`sevila.features`)."""

from __future__ import annotations

import argparse
import os

DESCRIPTION = """\
The feature cache keeps each video's visual tokens (per sampling and model weights) so that further
questions and runs do not encode the video again.

  info    its location, number of entries, size and size limit
  clear   delete every entry

Location: --cache-dir, else $SEVILA_CACHE_DIR, else ~/.cache/sevila/features.
Limit: $SEVILA_CACHE_LIMIT (e.g. 20GB, 500MB, none), else 10 GB; past it the least recently used entries
are deleted.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="show or clear the feature cache",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=("info", "clear"), help="info: location, entries, size, limit; clear")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache folder (default: $SEVILA_CACHE_DIR or ~/.cache/sevila/features)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.features import LIMIT_ENV, FeatureCache, format_bytes

    cache = FeatureCache(args.cache_dir)  # a bad $SEVILA_CACHE_LIMIT is a one-line ValueError
    if cache.directory.exists() and not cache.directory.is_dir():
        raise ValueError(f"{cache.directory}: not a directory; the feature cache is a folder")
    entries = cache.entries()
    size = cache.size_bytes()
    if args.action == "clear":
        removed = cache.clear()
        print(f"removed {removed} entries ({format_bytes(size)}) from {cache.directory}")
        return 0
    if cache.max_bytes is None:
        limit = "none"
    else:
        limit = format_bytes(cache.max_bytes)
    limit += f" (from ${LIMIT_ENV})" if os.environ.get(LIMIT_ENV) else " (default; set $SEVILA_CACHE_LIMIT to change)"
    print(f"location: {cache.directory}" + ("" if cache.directory.is_dir() else " (not created yet)"))
    print(f"entries:  {len(entries)}")
    print(f"size:     {format_bytes(size)}")
    print(f"limit:    {limit}")
    return 0
