"""The ``specedge`` command line.

Every subcommand lives in its own module and registers itself here. Errors that users cause
(SpecEdgeError) are printed as one line and exit 1; usage errors exit 2; Ctrl-C exits 130.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from specedge import __version__
from specedge.cli import bundle, calibrate, compress, demo, edge, emulate, info, pool, serve, simulate, train
from specedge.cli._args import ArgumentParser
from specedge.errors import SpecEdgeError
from specedge.models import import_plugin

__all__ = ["build_parser", "main"]


def build_parser() -> ArgumentParser:
    """The full argument parser (also used by tests)."""
    parser = ArgumentParser(
        prog="specedge",
        description="SpecEdge: answer on the device with a small speculative CNN, escalate doubtful inputs "
        "to the master CNN in the cloud over gRPC.",
        epilog="Start with 'specedge demo'. Each command has its own --help.",
    )
    parser.add_argument("--version", action="version", version=f"specedge {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=ArgumentParser)
    subparsers.required = True
    for module in (demo, train, compress, pool, calibrate, bundle, edge, simulate, info, serve, emulate):
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        for module in args.plugin:
            import_plugin(module)
        return int(args.func(args))
    except SpecEdgeError as exc:
        print(f"specedge {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. an --out folder that cannot be written
        print(
            f"specedge {args.command}: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        print(f"specedge {args.command}: interrupted", file=sys.stderr)
        return 130
