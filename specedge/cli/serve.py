"""``specedge serve``: the cloud inference server (KServe v2 gRPC)."""

from __future__ import annotations

import argparse
from pathlib import Path

from specedge.cli._args import add_common, port_number, positive_float, positive_int
from specedge.cloud.server import run_server

__all__ = ["register"]


def _cmd_serve(args: argparse.Namespace) -> int:
    return run_server(
        args.model,
        host=args.host,
        port=args.port,
        port_file=args.port_file,
        request_log_path=args.request_log,
        grace_s=args.grace_s,
        torch_threads=args.threads,
    )


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    serve = subparsers.add_parser(
        "serve",
        help="serve master models over gRPC (KServe v2 / Open Inference Protocol)",
        description="Serve one or more model artifacts with inference.GRPCInferenceService and grpc.health.v1. "
        "Stops gracefully on Ctrl-C or SIGTERM.",
    )
    serve.add_argument(
        "--model",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="artifact folder to serve; its folder name is the model name (repeatable)",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    serve.add_argument(
        "--port", type=port_number, default=8001, help="port to bind; 0 picks a free one (default: 8001)"
    )
    serve.add_argument("--port-file", type=Path, metavar="FILE", help="write the bound port here once listening")
    serve.add_argument("--request-log", type=Path, metavar="FILE", help="append one JSON line per inference request")
    serve.add_argument(
        "--grace-s",
        type=positive_float,
        default=2.0,
        help="seconds in-flight requests get to finish on shutdown (default: 2)",
    )
    serve.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads per request; 1 is fastest for small models at batch 1 on CPU (default: 1)",
    )
    add_common(serve, data=False)
    serve.set_defaults(func=_cmd_serve)
