"""The cloud inference server: KServe v2 gRPC over the master models, plus grpc.health.v1.

:func:`create_server` builds, binds and starts a server and returns it with its port, so tests
bind port 0; :func:`run_server` is what ``specedge serve`` calls: it loads model artifacts,
serves until SIGINT/SIGTERM, then stops gracefully (health NOT_SERVING, in-flight requests get
``grace_s`` seconds to finish).
"""

from __future__ import annotations

import logging
import os
import signal
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from specedge.cloud.engine import InferenceEngine
from specedge.cloud.request_log import RequestLog
from specedge.cloud.servicer import InferenceServicer
from specedge.errors import ConfigError
from specedge.models.artifact import load_artifact
from specedge.protocol._generated.grpc_service_pb2_grpc import add_GRPCInferenceServiceServicer_to_server

__all__ = ["DEFAULT_MAX_MESSAGE_BYTES", "create_server", "load_engines", "run_server"]

_log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20  # gRPC's 4 MiB default is too small for image batches


@dataclass
class _Running:
    """A started server and the pieces a graceful stop needs."""

    server: grpc.Server
    port: int
    servicer: InferenceServicer
    health: health.HealthServicer

    def stop(self, grace_s: float) -> None:
        """Report NOT_SERVING, refuse new RPCs, give in-flight ones ``grace_s`` seconds, then return."""
        self.servicer.shutting_down = True
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_s).wait()


def _start(
    engines: Mapping[str, InferenceEngine],
    *,
    address: str,
    max_workers: int,
    request_log: RequestLog | None,
    max_message_bytes: int,
) -> _Running:
    if max_workers < 1:
        raise ConfigError(f"max_workers must be >= 1; got {max_workers}")
    if max_message_bytes < 1:
        raise ConfigError(f"max_message_bytes must be >= 1; got {max_message_bytes}")
    servicer = InferenceServicer(engines, request_log=request_log)
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers), options=options)
    add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]  # generated
    health_servicer = _add_health(server, servicer.engines)
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:  # older grpc versions report a failed bind this way
        raise ConfigError(f"cannot listen on {address}")
    server.start()
    return _Running(server=server, port=port, servicer=servicer, health=health_servicer)


def _add_health(server: grpc.Server, model_names: Iterable[str]) -> health.HealthServicer:
    """Register grpc.health.v1.Health with SERVING for the whole server ("") and each model name."""
    servicer = health.HealthServicer()
    for name in ["", *model_names]:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def create_server(
    engines: Mapping[str, InferenceEngine],
    *,
    address: str = "127.0.0.1:0",
    max_workers: int = 4,
    request_log: RequestLog | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
) -> tuple[grpc.Server, int]:
    """Build, bind and start a server for ``engines``; returns it and the bound port.

    Both the send and the receive message limits are set to ``max_message_bytes``. Stop it with
    ``server.stop(grace_s).wait()``.
    """
    running = _start(
        engines,
        address=address,
        max_workers=max_workers,
        request_log=request_log,
        max_message_bytes=max_message_bytes,
    )
    return running.server, running.port


def load_engines(artifacts: Sequence[Path]) -> dict[str, InferenceEngine]:
    """One engine per artifact folder; the model name is the manifest's ``model_name`` or the folder name."""
    if not artifacts:
        raise ConfigError("no models to serve; pass at least one artifact folder (--model DIR)")
    engines: dict[str, InferenceEngine] = {}
    sources: dict[str, Path] = {}
    for path in artifacts:
        loaded = load_artifact(Path(path))
        name = loaded.serving_name
        version = str(loaded.manifest.get("model_version") or "1")
        if name in engines:
            raise ConfigError(
                f"two artifacts serve model {name!r}: {sources[name]} and {path}; "
                "rename one folder so every model name is unique"
            )
        engines[name] = InferenceEngine(loaded.classifier, model_name=name, model_version=version)
        sources[name] = Path(path)
    return engines


def _write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so a reader sees either nothing or all of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        Path(tmp).replace(path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def run_server(
    artifacts: Sequence[Path],
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    port_file: Path | None = None,
    request_log_path: Path | None = None,
    grace_s: float = 2.0,
    torch_threads: int = 1,
) -> int:
    """Serve the model artifacts until SIGINT or SIGTERM; returns the exit code (0).

    ``torch_threads`` is torch's intra-op thread count. One is fastest for one small request
    at a time on CPU (batch-1 ResNet-20: 2.7 ms on one thread, 6-12 ms on two from gRPC worker
    threads on a 2-core machine); raise it for large models or batches.

    Must run in the main thread (it installs signal handlers, restored on return). After binding
    it prints one line naming the models and address and, if ``port_file`` is given, writes the
    bound port there atomically, so a parent process can wait for it.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be in 0..65535 (0 picks a free one); got {port}")
    if grace_s < 0:
        raise ConfigError(f"grace_s must be >= 0 seconds; got {grace_s}")
    if torch_threads < 1:
        raise ConfigError(f"torch_threads must be >= 1; got {torch_threads}")
    torch.set_num_threads(torch_threads)
    engines = load_engines(artifacts)
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with RequestLog(request_log_path) as request_log:
            running = _start(
                engines,
                address=_host_port(host, port),
                max_workers=4,
                request_log=request_log,
                max_message_bytes=DEFAULT_MAX_MESSAGE_BYTES,
            )
            try:
                models = ", ".join(engines)
                where = _host_port(host, running.port)
                print(f"specedge cloud: serving {models} on {where} (KServe v2 gRPC)", flush=True)
                if port_file is not None:
                    _write_atomically(Path(port_file), f"{running.port}\n")
                while not stop_requested.wait(timeout=0.1):
                    pass
                _log.info("stop requested; draining for up to %.1f s", grace_s)
            finally:
                running.stop(grace_s)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
