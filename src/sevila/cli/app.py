"""`sevila app`: serve the web page (Gradio, ``sevila[app]``) for asking questions about videos."""

from __future__ import annotations

import argparse

from sevila.cli.common import MODEL_HELP, add_precision_argument


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "app",
        help="serve a web page for asking questions about videos and finding moments (needs sevila[app])",
        description="A Gradio page: upload a video (or use the bundled example), choose a model, then answer a "
        "multiple-choice question or find the moments of a query. Served on this machine only unless --host "
        "or --share say otherwise.",
    )
    parser.add_argument(
        "--model", default="demo", help=f"the model chosen when the page opens: {MODEL_HELP} (default: demo)"
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0 for every network interface)",
    )
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default: 7860, Gradio's)")
    parser.add_argument(
        "--share",
        action="store_true",
        help="also serve through a temporary public *.gradio.live link (needs the internet)",
    )
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_precision_argument(parser)
    parser.add_argument("--backend", default="pyav", choices=("pyav", "decord", "torchcodec"), help="video decoder")
    parser.add_argument(
        "--cache-dir",
        default=None,
        help="feature cache folder, shared with the other commands (default: $SEVILA_CACHE_DIR or ~/.cache/sevila/features)",
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from sevila.app.logic import AppUnavailable, Service, require_gradio
    from sevila.cli import CommandError
    from sevila.features import FeatureCache

    if not 0 < args.port < 65536:
        raise CommandError(f"--port must be between 1 and 65535, got {args.port}")
    try:
        require_gradio()
    except AppUnavailable as err:
        raise CommandError(str(err)) from None
    from sevila.app.page import serve

    cache = None if args.no_cache else FeatureCache(args.cache_dir)
    service = Service(device=args.device, precision=args.precision, cache=cache, backend=args.backend)
    try:
        serve(service, model=args.model, host=args.host, port=args.port, share=args.share)
    except OSError as err:  # the port is taken, or the address is not this machine's
        # Gradio's message goes on to suggest its launch() arguments; the command's flags are what to change.
        reason = " ".join(str(err).split()).split(". ")[0].rstrip(".")
        raise CommandError(
            f"cannot serve on {args.host}:{args.port}: {reason}; choose another --port or --host"
        ) from None
    return 0
