"""``specedge serve``: the cloud inference server (KServe v2 gRPC).

The bearer token comes from ``--token-file`` or, failing that, ``SPECEDGE_TOKEN``
(:func:`specedge.cli._args.bearer_token`); everything below receives it as a value.
"""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

from specedge.cli._args import (
    TOKEN_ENV,
    add_common,
    bearer_token,
    non_negative_int,
    port_number,
    positive_float,
    positive_int,
)
from specedge.cloud.process import ParentWatch
from specedge.cloud.security import TlsConfig
from specedge.cloud.server import DEFAULT_RPC_WORKERS, BatchingConfig, DuoSpec, run_server
from specedge.errors import ConfigError

__all__ = ["register"]
_DEFAULT_MAX_MESSAGE_MB = 64
_DEFAULT_MAX_CONCURRENT_RPCS = 1024


def _cmd_serve(args: argparse.Namespace) -> int:
    if not args.model and args.duo is None:
        raise ConfigError("nothing to serve; pass --model DIR (repeatable) and/or --duo FILE")
    if (args.little is not None or args.big is not None) and args.duo is None:
        raise ConfigError("--little and --big name the duo's artifacts; pass --duo FILE (from 'specedge pair') too")
    stop = threading.Event()  # set when the parent dies: a graceful stop, then the orphan cleans up
    watch = None
    if args.parent_pid is not None:
        watch = ParentWatch(args.parent_pid, on_orphaned=stop.set)
        if not watch.start():
            _remove_orphaned(args.remove_when_orphaned)
            raise ConfigError(f"parent process {args.parent_pid} is gone; not serving")
    try:
        return run_server(
            args.model or [],
            host=args.host,
            port=args.port,
            port_file=args.port_file,
            request_log_path=args.request_log,
            grace_s=args.grace_s,
            torch_threads=args.threads,
            rpc_workers=args.rpc_workers,
            max_concurrent_rpcs=args.max_concurrent_rpcs or None,
            max_message_bytes=args.max_message_mb * 2**20,
            batching=BatchingConfig(
                max_batch=args.max_batch,
                max_delay_us=args.max_delay_us,
                max_queue=args.max_queue,
                workers=args.workers,
            ),
            duo=DuoSpec(args.duo, little=args.little, big=args.big) if args.duo is not None else None,
            tls=_tls(args),
            token=bearer_token(args.token_file),
            metrics_port=args.metrics_port,
            stop_event=stop,
        )
    finally:
        if watch is not None:
            watch.stop()
            if watch.orphaned:
                _remove_orphaned(args.remove_when_orphaned)


def _tls(args: argparse.Namespace) -> TlsConfig | None:
    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ConfigError("--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS plus a client CA)")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ConfigError("TLS needs both --tls-cert FILE and --tls-key FILE")
    return TlsConfig(args.tls_cert, args.tls_key, args.tls_client_ca)


def _remove_orphaned(folder: Path | None) -> None:
    """Remove the dead parent's temporary folder (port file, captured output, its request log)."""
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    serve = subparsers.add_parser(
        "serve",
        help="serve master models over gRPC (KServe v2 / Open Inference Protocol)",
        description="Serve model artifacts with inference.GRPCInferenceService, grpc.health.v1 and server "
        "reflection, with dynamic batching, optional TLS / mutual TLS, a bearer token and a Prometheus "
        "endpoint. Stops gracefully on Ctrl-C or SIGTERM: health turns NOT_SERVING, in-flight requests finish.",
        epilog=f"The bearer token is read from --token-file or, if that is not given, from ${TOKEN_ENV}. "
        "Example: specedge serve --model runs/master --host 0.0.0.0 --tls-cert server.pem --tls-key server.key "
        "--token-file token.txt --metrics-port 9090",
    )
    models = serve.add_argument_group("models")
    models.add_argument(
        "--model",
        type=Path,
        action="append",
        metavar="DIR",
        help="artifact folder to serve; its folder name is the model name (repeatable)",
    )
    models.add_argument(
        "--duo",
        type=Path,
        metavar="FILE",
        help="serve a big/little Dynamic Duo: the duo.json written by 'specedge pair --kind duo'",
    )
    models.add_argument("--little", type=Path, metavar="DIR", help="the duo's little model (default: via duo.json)")
    models.add_argument("--big", type=Path, metavar="DIR", help="the duo's big model (default: found via duo.json)")

    network = serve.add_argument_group("network")
    network.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    network.add_argument(
        "--port", type=port_number, default=8001, help="port to bind; 0 picks a free one (default: 8001)"
    )
    network.add_argument("--port-file", type=Path, metavar="FILE", help="write the bound port here once listening")
    network.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics; 0 picks a free one (default: off)",
    )
    network.add_argument(
        "--max-message-mb",
        type=positive_int,
        default=_DEFAULT_MAX_MESSAGE_MB,
        metavar="MB",
        help=f"largest gRPC message sent or received, MiB (default: {_DEFAULT_MAX_MESSAGE_MB})",
    )

    batching = serve.add_argument_group("batching and threads")
    batching.add_argument("--max-batch", type=positive_int, metavar="N", help="largest batch the model runs")
    batching.add_argument(
        "--max-delay-us",
        type=non_negative_int,
        metavar="US",
        help="longest a request waits for others to join its batch, microseconds (0: no waiting)",
    )
    batching.add_argument(
        "--max-queue", type=positive_int, metavar="N", help="queued requests per model; more get RESOURCE_EXHAUSTED"
    )
    batching.add_argument("--workers", type=positive_int, metavar="N", help="inference workers (model instances)")
    batching.add_argument(
        "--rpc-workers",
        type=positive_int,
        default=DEFAULT_RPC_WORKERS,
        metavar="N",
        help=f"threads answering RPCs; bounds how many requests can wait in a batch (default: {DEFAULT_RPC_WORKERS})",
    )
    batching.add_argument(
        "--max-concurrent-rpcs",
        type=non_negative_int,
        default=_DEFAULT_MAX_CONCURRENT_RPCS,
        metavar="N",
        help="RPCs in progress beyond this get RESOURCE_EXHAUSTED; 0 for no bound "
        f"(default: {_DEFAULT_MAX_CONCURRENT_RPCS})",
    )
    batching.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch intra-op threads; 1 is fastest for small models on CPU (default: 1)",
    )

    security = serve.add_argument_group("security")
    security.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve TLS with this PEM certificate chain")
    security.add_argument("--tls-key", type=Path, metavar="FILE", help="the PEM private key of --tls-cert")
    security.add_argument(
        "--tls-client-ca",
        type=Path,
        metavar="FILE",
        help="mutual TLS: require client certificates signed by this PEM CA",
    )
    security.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"require 'authorization: Bearer <token>' with the token in FILE (default: ${TOKEN_ENV} if set); "
        "health checks stay open",
    )

    run = serve.add_argument_group("running")
    run.add_argument("--request-log", type=Path, metavar="FILE", help="append one JSON line per inference request")
    run.add_argument(
        "--grace-s",
        type=positive_float,
        default=2.0,
        help="seconds in-flight requests get to finish on shutdown (default: 2)",
    )
    # Set by CloudServerProcess: die with the parent, and clean up after it if it died first.
    run.add_argument("--parent-pid", type=positive_int, help=argparse.SUPPRESS)
    run.add_argument("--remove-when-orphaned", type=Path, help=argparse.SUPPRESS)
    add_common(serve, data=False)
    serve.set_defaults(func=_cmd_serve)
