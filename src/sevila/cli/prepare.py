"""`sevila prepare`: convert one split of a dataset's release files into records (or the original format).

Thin: sorting the inputs, converting and writing live in `sevila.data`.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterable

from sevila.cli import CommandError
from sevila.data import convert, sort_inputs, write_records, write_sevila
from sevila.data.converters import CONVERTIBLE_DATASETS
from sevila.data.sources import os_problem

DESCRIPTION = """\
Convert one split of a dataset from its original release files into records, one JSON object per line
(--format jsonl, the format training and evaluation read) or into the original SeViLA annotation list
(--format sevila, what the original code reads).

Give the split's annotation file plus the auxiliary files its dataset needs; these are recognised by
name or given by flag:
  nextqa        val.csv + map_vid_vidorID.json (required: videos live in VidOR folders)
  nextgqa       val.csv [+ gsub_val.json (grounding)] [+ map_vid_vidorID.json]
  star          STAR_val.json
  how2qa        how2qa_val_release.jsonl [+ how2_vid_mapping.json], or the original how2QA_val_release.csv
  tvqa          tvqa_val.jsonl, or TVQA+ tvqa_plus_val.json
  vlep          vlep_dev_release.jsonl
  qvhighlights  highlight_val_release.jsonl
An original SeViLA preprocessed file (sevila_data/<dataset>/<split>.json) is accepted as annotation file.
The summary (records in/out, skipped records and why, notes) goes to stderr. Malformed input fails with
the file, line (or record index) and field. The output is written atomically (a failed run leaves no file
and keeps an existing one) and may not be one of the input files.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "prepare",
        help="convert a dataset's release files into records",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dataset", choices=CONVERTIBLE_DATASETS, metavar="DATASET", help=f"one of: {', '.join(CONVERTIBLE_DATASETS)}"
    )
    parser.add_argument("files", nargs="+", metavar="RAW_FILE", help="the split's annotation file and auxiliary files")
    parser.add_argument("-o", "--output", required=True, metavar="OUT", help="output file (e.g. val.jsonl)")
    parser.add_argument(
        "--format",
        choices=("jsonl", "sevila"),
        default="jsonl",
        help="jsonl: our records (default); sevila: the original SeViLA annotation list",
    )
    parser.add_argument(
        "--video-map",
        metavar="FILE",
        help="video id map when not named map_vid_vidorID.json / how2_vid_mapping.json",
    )
    parser.add_argument("--grounding", metavar="FILE", help="NExT-GQA grounding file when not named gsub_*.json")
    parser.set_defaults(func=run)


def check_output(output: str, inputs: Iterable[str | os.PathLike[str] | None]) -> None:
    """Refuse an output path that is an input file (the raw release would be overwritten) or cannot be a file."""
    try:
        info = os.stat(output)
    except FileNotFoundError:
        info = None  # a new file (or a dangling symlink, which the write replaces)
    except OSError as err:
        raise CommandError(f"{output}: cannot write the output: {os_problem(err)}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise CommandError(f"{output}: is a directory; give the output file's path (e.g. {output}/val.jsonl)")
    for path in inputs:
        if path is None:
            continue
        try:
            same = os.path.realpath(path) == os.path.realpath(output) or (
                info is not None and os.path.samefile(path, output)
            )
        except (OSError, ValueError):
            continue  # an unreadable input is reported when it is read
        if same:
            raise CommandError(f"{output}: is the input file {os.fspath(path)}; give another output path")


def run(args: argparse.Namespace) -> int:
    inputs = sort_inputs(args.dataset, args.files, video_map=args.video_map, grounding=args.grounding)
    check_output(args.output, [*args.files, args.video_map, args.grounding])
    records, summary = convert(args.dataset, inputs.annotation, video_map=inputs.video_map, grounding=inputs.grounding)
    try:
        (write_sevila if args.format == "sevila" else write_records)(args.output, records)
    except OSError as err:
        raise CommandError(f"{args.output}: cannot write the output: {os_problem(err)}") from None
    print(summary.format(), file=sys.stderr)
    print(f"wrote {len(records)} records to {args.output} ({args.format})", file=sys.stderr)
    return 0
