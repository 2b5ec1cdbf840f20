"""The cloud inference server: KServe v2 gRPC over the served models, plus health, reflection and metrics.

:func:`create_server` builds, binds and starts a server and returns it with its port, so tests
bind port 0; :func:`run_server` is what ``specedge serve`` calls: it loads model artifacts (and
optionally a big/little Dynamic Duo), serves until SIGINT/SIGTERM, then stops gracefully.

What one server carries:

- ``inference.GRPCInferenceService`` (:mod:`specedge.cloud.servicer`) and ``grpc.health.v1``
  (SERVING for ``""`` and each model name);
- server reflection (grpcurl and friends can list and call the services);
- explicit send/receive message limits, an RPC worker pool and, optionally, a bound on concurrent
  RPCs (gRPC answers RESOURCE_EXHAUSTED beyond it); requests whose bytes do not parse are
  answered INVALID_ARGUMENT;
- optionally TLS or mutual TLS and a bearer token (:mod:`specedge.cloud.security`); a warning
  when it listens beyond loopback without TLS;
- optionally a Prometheus text endpoint (:mod:`specedge.cloud.metrics`).

Graceful stop (:meth:`SpecEdgeServer.stop`): health and ServerReady turn NOT_SERVING, new RPCs
are refused, in-flight ones get ``grace`` seconds to finish; :func:`run_server` then closes the
models, which finish their queued work.
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
from typing import Any

import grpc
import torch
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from specedge.cloud.engine import InferenceEngine
from specedge.cloud.metrics import MetricsEndpoint, RpcMetricsInterceptor, build_registry, start_metrics_server
from specedge.cloud.request_log import RequestLog
from specedge.cloud.security import DecodeGuardInterceptor, TlsConfig, TokenAuthInterceptor, is_loopback
from specedge.cloud.servicer import InferenceServicer, ServedModel
from specedge.errors import ConfigError
from specedge.models.artifact import load_artifact
from specedge.models.classifier import ImageClassifier
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import add_GRPCInferenceServiceServicer_to_server

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_RPC_WORKERS",
    "BatchingConfig",
    "DuoSpec",
    "SpecEdgeServer",
    "create_server",
    "load_engines",
    "run_server",
]

_log = logging.getLogger(__name__)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 2**20  # gRPC's 4 MiB default is too small for image batches
# RPC threads block while their request waits in a model's queue, so a batch can only hold as many
# requests as there are threads: size the pool for the concurrency to batch, not for the cores.
DEFAULT_RPC_WORKERS = 64
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name


class SpecEdgeServer(grpc.Server):  # type: ignore[misc]  # grpc is untyped
    """A started ``grpc.Server`` whose :meth:`stop` is graceful; also knows its ports.

    Attributes:
        port: the bound gRPC port.
        metrics_port: the Prometheus endpoint's port, or None without one.
        rpc_metrics: RPC counts by method and status code.
    """

    def __init__(
        self,
        server: grpc.Server,
        *,
        port: int,
        servicer: InferenceServicer,
        health_servicer: health.HealthServicer,
        rpc_metrics: RpcMetricsInterceptor,
        metrics: MetricsEndpoint | None,
    ) -> None:
        self._server = server
        self.port = port
        self._servicer = servicer
        self._health = health_servicer
        self.rpc_metrics = rpc_metrics
        self._metrics = metrics
        self.metrics_port = metrics.port if metrics is not None else None

    def stop(self, grace: float | None) -> threading.Event:
        """NOT_SERVING, refuse new RPCs, give in-flight ones ``grace`` seconds; the event is set when done.

        ``grace=None`` cancels in-flight RPCs at once. The metrics endpoint closes when the
        server has stopped, so a last scrape can watch the drain.
        """
        _log.info("server stopping port=%d grace_s=%s", self.port, grace)
        self._servicer.shutting_down = True
        self._health.enter_graceful_shutdown()
        stopped: threading.Event = self._server.stop(grace)
        metrics, self._metrics = self._metrics, None
        if metrics is not None:
            threading.Thread(target=_close_after, args=(stopped, metrics), daemon=True).start()
        return stopped

    # Plain delegation of the rest of grpc.Server.
    def start(self) -> None:  # noqa: D102
        self._server.start()

    def add_generic_rpc_handlers(self, generic_rpc_handlers: Iterable[Any]) -> None:  # noqa: D102
        self._server.add_generic_rpc_handlers(generic_rpc_handlers)

    def add_registered_method_handlers(self, service_name: str, method_handlers: Any) -> None:  # noqa: D102
        self._server.add_registered_method_handlers(service_name, method_handlers)

    def add_insecure_port(self, address: str) -> int:  # noqa: D102
        return int(self._server.add_insecure_port(address))

    def add_secure_port(self, address: str, server_credentials: grpc.ServerCredentials) -> int:  # noqa: D102
        return int(self._server.add_secure_port(address, server_credentials))

    def wait_for_termination(self, timeout: float | None = None) -> bool:  # noqa: D102
        return bool(self._server.wait_for_termination(timeout))


def _close_after(stopped: threading.Event, metrics: MetricsEndpoint) -> None:
    stopped.wait()
    metrics.close()


def _add_health(server: grpc.Server, model_names: Iterable[str]) -> health.HealthServicer:
    """Register grpc.health.v1.Health with SERVING for the whole server ("") and each model name."""
    servicer = health.HealthServicer()
    for name in ["", *model_names]:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    return servicer


def _split_host(address: str) -> str:
    """The host part of ``host:port`` or ``[v6]:port``."""
    host, _, _ = address.rpartition(":")
    return host or address


def create_server(
    models: Mapping[str, ServedModel],
    *,
    address: str = "127.0.0.1:0",
    rpc_workers: int = DEFAULT_RPC_WORKERS,
    request_log: RequestLog | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    tls: TlsConfig | None = None,
    token: str | None = None,
    max_concurrent_rpcs: int | None = None,
    metrics_port: int | None = None,
) -> tuple[SpecEdgeServer, int]:
    """Build, bind and start a server for ``models``; returns it and the bound port.

    Args:
        models: model name -> served model (an engine or a Dynamic Duo).
        address: ``host:port`` to bind; port 0 picks a free one.
        rpc_workers: threads answering RPCs.
        request_log: where ModelInfer calls are recorded (the servicer's own in-memory log if None).
        max_message_bytes: both the send and the receive message limit.
        tls: serve TLS (mutual TLS with a client CA) instead of plaintext.
        token: require ``authorization: Bearer <token>`` on every RPC but health checks.
        max_concurrent_rpcs: RPCs beyond this many in progress are answered RESOURCE_EXHAUSTED.
        metrics_port: serve Prometheus text on this port of the same host (0: a free one; None: off).

    Stop it with ``server.stop(grace_s).wait()`` (graceful, see :class:`SpecEdgeServer`).
    """
    if rpc_workers < 1:
        raise ConfigError(f"rpc_workers must be >= 1; got {rpc_workers}")
    if max_message_bytes < 1:
        raise ConfigError(f"max_message_bytes must be >= 1; got {max_message_bytes}")
    if max_concurrent_rpcs is not None and max_concurrent_rpcs < 1:
        raise ConfigError(f"max_concurrent_rpcs must be >= 1 (or None for no bound); got {max_concurrent_rpcs}")
    if metrics_port is not None and not 0 <= metrics_port <= 65535:
        raise ConfigError(f"metrics_port must be in 0..65535 (0 picks a free one); got {metrics_port}")
    servicer = InferenceServicer(models, request_log=request_log, max_request_bytes=max_message_bytes)
    rpc_metrics = RpcMetricsInterceptor()
    interceptors: list[grpc.ServerInterceptor] = [rpc_metrics]  # first: it also counts refusals
    if token is not None:
        interceptors.append(TokenAuthInterceptor(token))
    interceptors.append(DecodeGuardInterceptor())  # undecodable bytes: INVALID_ARGUMENT, not INTERNAL
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
    ]
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=rpc_workers, thread_name_prefix="specedge-rpc"),
        interceptors=interceptors,
        options=options,
        maximum_concurrent_rpcs=max_concurrent_rpcs,
    )
    add_GRPCInferenceServiceServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]  # generated
    health_servicer = _add_health(server, servicer.engines)
    reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    host = _split_host(address)
    port = _bind(server, address, tls)
    if not is_loopback(host) and tls is None:
        _log.warning(
            "serving plaintext gRPC on %s, which other machines can reach: traffic%s travels unencrypted; "
            "pass --tls-cert/--tls-key (or bind 127.0.0.1)",
            address,
            " and the bearer token" if token is not None else "",
        )
    metrics = None
    if metrics_port is not None:
        registry = build_registry(servicer.engines, rpc_metrics)
        try:
            metrics = start_metrics_server(registry, host=host.strip("[]") or "0.0.0.0", port=metrics_port)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{metrics_port}: {exc}") from exc
    server.start()
    _log.info(
        "server started address=%s port=%d tls=%s mtls=%s token=%s metrics_port=%s models=%s",
        address,
        port,
        tls is not None,
        tls is not None and tls.client_ca is not None,
        token is not None,
        metrics.port if metrics is not None else None,
        ",".join(servicer.engines),
    )
    wrapped = SpecEdgeServer(
        server,
        port=port,
        servicer=servicer,
        health_servicer=health_servicer,
        rpc_metrics=rpc_metrics,
        metrics=metrics,
    )
    return wrapped, port


def _bind(server: grpc.Server, address: str, tls: TlsConfig | None) -> int:
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            port = server.add_secure_port(address, tls.server_credentials())
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}") from exc
    if port == 0:  # older grpc versions report a failed bind this way
        raise ConfigError(f"cannot listen on {address}")
    return int(port)


# --- loading models ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchingConfig:
    """Engine settings from the CLI; None leaves the engine's default."""

    max_batch: int | None = None
    max_delay_us: int | None = None
    max_queue: int | None = None
    workers: int | None = None


def _build_engine(classifier: ImageClassifier, name: str, version: str, batching: BatchingConfig) -> InferenceEngine:
    keywords: dict[str, Any] = {}
    for field, keyword in _ENGINE_KEYWORDS.items():
        value = getattr(batching, field)
        if value is not None:
            keywords[keyword] = value
    return InferenceEngine(classifier, model_name=name, model_version=version, **keywords)


# BatchingConfig field -> InferenceEngine keyword (engine.py, owned by the batching work).
_ENGINE_KEYWORDS = {
    "max_batch": "max_batch",
    "max_delay_us": "max_queue_delay_us",
    "max_queue": "max_queue_size",
    "workers": "instances",
}


def load_engines(artifacts: Sequence[Path], *, batching: BatchingConfig | None = None) -> dict[str, InferenceEngine]:
    """One engine per artifact folder; the model name is the manifest's ``model_name`` or the folder name."""
    if not artifacts:
        raise ConfigError("no models to serve; pass at least one artifact folder (--model DIR)")
    batching = batching or BatchingConfig()
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
        engines[name] = _build_engine(loaded.classifier, name, version, batching)
        sources[name] = Path(path)
    return engines


@dataclass(frozen=True)
class DuoSpec:
    """A big/little pair to serve as one model (``--duo FILE [--little DIR] [--big DIR]``)."""

    duo_json: Path
    little: Path | None = None
    big: Path | None = None


def _load_models(artifacts: Sequence[Path], duo: DuoSpec | None, batching: BatchingConfig) -> dict[str, Any]:
    models: dict[str, Any] = dict(load_engines(artifacts, batching=batching)) if artifacts else {}
    if duo is not None:
        from specedge.cloud.duo import load_duo  # noqa: PLC0415  # only duo servers need the detector stack

        pair = load_duo(
            duo.duo_json,
            little=duo.little,
            big=duo.big,
            engine=lambda classifier, name: _build_engine(classifier, name, "1", batching),
        )
        if pair.model_name in models:
            raise ConfigError(f"the duo serves model {pair.model_name!r}, which a --model artifact also serves")
        models[pair.model_name] = pair
    if not models:
        raise ConfigError("no models to serve; pass at least one artifact folder (--model DIR) or --duo FILE")
    return models


# --- the serve loop ------------------------------------------------------------------------------


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
    rpc_workers: int = DEFAULT_RPC_WORKERS,
    max_concurrent_rpcs: int | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    batching: BatchingConfig | None = None,
    duo: DuoSpec | None = None,
    tls: TlsConfig | None = None,
    token: str | None = None,
    metrics_port: int | None = None,
    stop_event: threading.Event | None = None,
) -> int:
    """Serve the model artifacts (and a duo) until SIGINT, SIGTERM or ``stop_event``; returns 0.

    ``torch_threads`` is torch's intra-op thread count. One is fastest for one small request
    at a time on CPU (batch-1 ResNet-20: 2.7 ms on one thread, 6-12 ms on two from gRPC worker
    threads on a 2-core machine); raise it for large models or batches. The other options are
    :func:`create_server`'s and the engines' (:class:`BatchingConfig`).

    Must run in the main thread (it installs signal handlers, restored on return). After binding
    it prints one line naming the models and address and, if ``port_file`` is given, writes the
    bound port there atomically, so a parent process can wait for it. On a stop request the
    server drains (``grace_s`` seconds for in-flight RPCs), then the models finish their queues.
    """
    if not 0 <= port <= 65535:
        raise ConfigError(f"port must be in 0..65535 (0 picks a free one); got {port}")
    if grace_s < 0:
        raise ConfigError(f"grace_s must be >= 0 seconds; got {grace_s}")
    if torch_threads < 1:
        raise ConfigError(f"torch_threads must be >= 1; got {torch_threads}")
    torch.set_num_threads(torch_threads)
    models = _load_models(artifacts, duo, batching or BatchingConfig())
    stop_requested = stop_event if stop_event is not None else threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with RequestLog(request_log_path) as request_log:
            server, bound = create_server(
                models,
                address=_host_port(host, port),
                rpc_workers=rpc_workers,
                request_log=request_log,
                max_message_bytes=max_message_bytes,
                tls=tls,
                token=token,
                max_concurrent_rpcs=max_concurrent_rpcs,
                metrics_port=metrics_port,
            )
            try:
                names = ", ".join(models)
                where = _host_port(host, bound)
                extra = f"; metrics on port {server.metrics_port}" if server.metrics_port is not None else ""
                print(f"specedge cloud: serving {names} on {where} (KServe v2 gRPC){extra}", flush=True)
                if port_file is not None:
                    _write_atomically(Path(port_file), f"{bound}\n")
                while not stop_requested.wait(timeout=0.1):
                    pass
                _log.info("stop requested; draining for up to %.1f s", grace_s)
            finally:
                server.stop(grace_s).wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for model in models.values():
            close = getattr(model, "close", None)  # engines without a queue have nothing to drain
            if close is not None:
                close()
    return 0
