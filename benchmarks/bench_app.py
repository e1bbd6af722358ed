"""`sevila app` as a person sees it: seconds from clicking Answer to the result on the bundled example video,
for the first question (frames read and encoded) and the next ones (frames from the feature cache).

Each run starts ``sevila app`` with an empty feature cache on a free localhost port and drives it in headless
Chromium exactly as tests/test_app_browser.py does (its helpers), so the times include the page: the click,
the server's work, and the thumbnails and plot arriving in the browser.

Usage: python -m benchmarks.bench_app [--runs 3] [--questions 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from tests.test_app_browser import EXAMPLE, _missing, ask, chromium, open_page, running_app, upload


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="fresh app processes (each with an empty cache)")
    parser.add_argument("--questions", type=int, default=3, help="questions per run (>= 2)")
    args = parser.parse_args()
    reason = _missing()
    if reason:
        raise SystemExit(f"bench_app: cannot run: {reason}")
    times: list[list[float]] = []
    for run in range(args.runs):
        with tempfile.TemporaryDirectory() as cache, running_app(Path(cache)) as url, chromium() as (context, outside):
            page = open_page(context, url)
            upload(page, EXAMPLE.video)
            times.append([ask(page, EXAMPLE.question, EXAMPLE.options) for _ in range(max(2, args.questions))])
            assert not outside, f"the page tried to reach the internet: {outside}"
        print(f"run {run + 1}: " + ", ".join(f"{t:.2f} s" for t in times[-1]))
    first = [t[0] for t in times]
    later = [x for t in times for x in t[1:]]
    print(f"Answer -> result on the example video, median of {args.runs} runs:")
    print(f"  first question (frames read and encoded): {statistics.median(first):.2f} s")
    print(f"  second and later (feature cache):        {statistics.median(later):.2f} s")


if __name__ == "__main__":
    main()
