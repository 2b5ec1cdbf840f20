"""The edge's client for the cloud server: one KServe v2 ModelInfer per escalated batch.

A thin transport seam: it encodes images, makes the RPC, checks and decodes the answer, and
measures the round trip and the serialized message sizes (what a link emulator charges for).
Retry policy and link emulation wrap it from outside; each call takes its own deadline. TLS,
mutual TLS and a bearer token are constructor options.

Every failure is mapped here, once, to one :class:`~specedge.errors.CloudError` subclass whose
``kind`` the edge's policy acts on (:func:`_failure`):

    ==============================================================  ===========  ==================
    gRPC status                                                     kind         class
    ==============================================================  ===========  ==================
    UNAVAILABLE, ABORTED, CANCELLED, INTERNAL, UNKNOWN, DATA_LOSS   unavailable  CloudUnavailable
    DEADLINE_EXCEEDED                                               timeout      CloudTimeout
    RESOURCE_EXHAUSTED                                              overloaded   CloudOverloaded
    INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,                    rejected     CloudRejected
    FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED,
    PERMISSION_DENIED, UNAUTHENTICATED
    OK with a malformed reply (id, outputs, shape, bytes)           protocol     CloudProtocolError
    ==============================================================  ===========  ==================

The first three say something about the server (the policy backs off and probes); the last two
about this request (the server is fine, retrying the same request will not help).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from specedge.errors import (
    CloudError,
    CloudOverloaded,
    CloudProtocolError,
    CloudRejected,
    CloudTimeout,
    CloudUnavailable,
    ConfigError,
)
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub

__all__ = ["CloudClient", "CloudResponse"]

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
_READY_POLL_S = 0.05
_RECONNECT_MIN_MS = 200
_RECONNECT_MAX_MS = 2000
_MAX_DETAIL_CHARS = 300  # a server's detail string is untrusted and may be huge: keep messages one short line

_S = grpc.StatusCode
_FAILURES: dict[grpc.StatusCode, type[CloudError]] = {
    # transient: the server or the path to it failed; the same request may succeed later
    **dict.fromkeys(
        (_S.UNAVAILABLE, _S.ABORTED, _S.CANCELLED, _S.INTERNAL, _S.UNKNOWN, _S.DATA_LOSS), CloudUnavailable
    ),
    _S.DEADLINE_EXCEEDED: CloudTimeout,
    _S.RESOURCE_EXHAUSTED: CloudOverloaded,
    # about this request (or this client's model/credentials): retrying it will not help
    **dict.fromkeys(
        (
            _S.INVALID_ARGUMENT,
            _S.NOT_FOUND,
            _S.ALREADY_EXISTS,
            _S.FAILED_PRECONDITION,
            _S.OUT_OF_RANGE,
            _S.UNIMPLEMENTED,
            _S.PERMISSION_DENIED,
            _S.UNAUTHENTICATED,
        ),
        CloudRejected,
    ),
}


def _failure(code: grpc.StatusCode) -> type[CloudError]:
    """The error class of a call that ended with ``code`` (the module docstring's table)."""
    return _FAILURES.get(code, CloudUnavailable)  # OK cannot fail; an unknown future code counts as transient


def _one_line(text: str) -> str:
    """``text`` on one line, at most ``_MAX_DETAIL_CHARS`` characters (ids and server details are untrusted)."""
    flat = " ".join(text.split())
    if len(flat) <= _MAX_DETAIL_CHARS:
        return flat
    return f"{flat[:_MAX_DETAIL_CHARS]}... ({len(flat)} chars)"


@dataclass(frozen=True)
class CloudResponse:
    """The cloud's answer to one escalated batch."""

    logits: np.ndarray  # float32 (N, K)
    request_id: str
    queue_time_us: int  # server side: waiting for the model
    compute_time_us: int  # server side: the forward pass
    round_trip_us: int  # client side: around the RPC, including (de)serialisation and transfer
    request_bytes: int  # serialized ModelInferRequest
    response_bytes: int  # serialized ModelInferResponse


class CloudClient:
    """A channel to one model on a KServe v2 gRPC server.

    Args:
        target: ``"host:port"`` of the server.
        model_name: the model to call.
        model_version: "" for the server's default version.
        timeout_s: default deadline of each RPC, in seconds (a call may pass its own).
        max_message_bytes: gRPC send and receive limit (the 4 MiB default breaks image batches).
        clock: seconds, for measuring round trips (``time.perf_counter``; tests pass a fake).
        root_ca: PEM file of the CA that signed the server's certificate: connect with TLS.
            ``tls=True`` without it trusts the system's CAs.
        client_cert, client_key: PEM files of this client's certificate and key, for a server
            that requires mutual TLS (both or neither; they imply TLS).
        token: sent as ``authorization: Bearer <token>`` metadata on every call.
        tls: connect with TLS even without ``root_ca`` (the system's trusted CAs).
        server_name: the name to check the server's certificate against, if not the target's host.
    """

    def __init__(
        self,
        target: str,
        *,
        model_name: str,
        model_version: str = "",
        timeout_s: float = 10.0,
        max_message_bytes: int = 64 * 2**20,
        clock: Callable[[], float] = time.perf_counter,
        root_ca: Path | None = None,
        client_cert: Path | None = None,
        client_key: Path | None = None,
        token: str | None = None,
        tls: bool = False,
        server_name: str | None = None,
    ) -> None:
        _check_timeout(timeout_s)
        if max_message_bytes < 1:
            raise ConfigError(f"max_message_bytes must be >= 1; got {max_message_bytes}")
        if (client_cert is None) != (client_key is None):
            raise ConfigError("mutual TLS needs both client_cert and client_key (or neither)")
        if token is not None and (not token or not token.isascii() or any(c.isspace() for c in token)):
            raise ConfigError("token must be non-empty printable ASCII without spaces (it travels as gRPC metadata)")
        self.target = target
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self._clock = clock
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        options: list[tuple[str, Any]] = [
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes),
            # Reconnect soon after the server comes back: gRPC's default back-off grows to 120 s,
            # far longer than the edge's own probe back-off (cloud_health), which decides when to try.
            ("grpc.initial_reconnect_backoff_ms", _RECONNECT_MIN_MS),
            ("grpc.min_reconnect_backoff_ms", _RECONNECT_MIN_MS),
            ("grpc.max_reconnect_backoff_ms", _RECONNECT_MAX_MS),
        ]
        if tls or root_ca is not None or client_cert is not None:
            if server_name is not None:
                options.append(("grpc.ssl_target_name_override", server_name))
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_pem(root_ca, "root CA") if root_ca is not None else None,
                private_key=_read_pem(client_key, "client key") if client_key is not None else None,
                certificate_chain=_read_pem(client_cert, "client certificate") if client_cert is not None else None,
            )
            self._channel = grpc.secure_channel(target, credentials, options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = GRPCInferenceServiceStub(self._channel)  # type: ignore[no-untyped-call]  # generated

    # --- inference -----------------------------------------------------------------------------

    def infer(self, images: np.ndarray, *, request_id: str, timeout_s: float | None = None) -> CloudResponse:
        """Logits for ``images`` (uint8 ``(N, C, H, W)``), tagged ``request_id`` in the server's log.

        ``timeout_s`` is this call's deadline (None: the client's default). Failures are raised as
        the CloudError subclass of the module docstring's table.
        """
        request = pb.ModelInferRequest(model_name=self.model_name, model_version=self.model_version, id=request_id)
        datatype, shape, raw = tensors.encode_raw(images)
        request.inputs.add(name=INPUT_NAME, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
        request_bytes = request.ByteSize()
        start_s = self._clock()
        response = self._call("ModelInfer", request, request_id=request_id, timeout_s=timeout_s)
        round_trip_us = round((self._clock() - start_s) * 1e6)
        logits = self._logits(response, batch_size=shape[0] if shape else 0, request_id=request_id)
        params = tensors.read_parameters(response.parameters)
        return CloudResponse(
            logits=logits,
            request_id=response.id,
            queue_time_us=int(params.get("queue_time_us", 0)),
            compute_time_us=int(params.get("compute_time_us", 0)),
            round_trip_us=round_trip_us,
            request_bytes=request_bytes,
            response_bytes=response.ByteSize(),
        )

    def _logits(self, response: pb.ModelInferResponse, *, batch_size: int, request_id: str) -> np.ndarray:
        where = f"cloud response to request {_one_line(request_id)} from {self.target}"

        def malformed(what: str) -> CloudProtocolError:
            return CloudProtocolError(f"{where} {_one_line(what)}")

        if response.id != request_id:
            raise malformed(f"carries id {response.id!r}")
        if len(response.outputs) != 1:
            raise malformed(f"has {len(response.outputs)} outputs; expected one, {OUTPUT_NAME!r}")
        output = response.outputs[0]
        if output.datatype != "FP32":
            raise malformed(f"has output {output.name!r} of type {output.datatype}; expected FP32")
        try:
            logits = tensors.decode_outputs(response)[output.name]
        except ValueError as exc:  # TensorError: bad byte count, both/neither contents, ...
            raise malformed(f"is malformed: {exc}") from exc
        if logits.ndim != 2 or logits.shape[0] != batch_size:
            raise malformed(f"has output {output.name!r} of shape {list(logits.shape)}; expected ({batch_size}, K)")
        return logits

    # --- probes and metadata -------------------------------------------------------------------

    def probe(self, *, timeout_s: float) -> float:
        """One ServerReady call: its round trip in seconds (a tiny message, so nearly the link's RTT).

        Raises the mapped CloudError if the call fails, and CloudUnavailable if the server answers
        that it is not ready, so a success means the cloud can take requests again.
        """
        _check_timeout(timeout_s)
        start_s = self._clock()
        ready = bool(self._call("ServerReady", pb.ServerReadyRequest(), timeout_s=timeout_s).ready)
        round_trip_s = self._clock() - start_s
        if not ready:
            raise CloudUnavailable(f"cloud ServerReady to {self.target}: the server is not ready")
        return round_trip_s

    def server_live(self) -> bool:
        """ServerLive."""
        return bool(self._call("ServerLive", pb.ServerLiveRequest()).live)

    def server_ready(self) -> bool:
        """ServerReady."""
        return bool(self._call("ServerReady", pb.ServerReadyRequest()).ready)

    def model_ready(self) -> bool:
        """ModelReady for this client's model (CloudRejected, status NOT_FOUND, if the server lacks it)."""
        request = pb.ModelReadyRequest(name=self.model_name, version=self.model_version)
        return bool(self._call("ModelReady", request).ready)

    def model_metadata(self) -> dict[str, Any]:
        """ModelMetadata as a dict: name, versions, platform, inputs and outputs (name, datatype, shape)."""
        request = pb.ModelMetadataRequest(name=self.model_name, version=self.model_version)
        meta = self._call("ModelMetadata", request)

        def signature(t: pb.ModelMetadataResponse.TensorMetadata) -> dict[str, Any]:
            return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}

        return {
            "name": meta.name,
            "versions": list(meta.versions),
            "platform": meta.platform,
            "inputs": [signature(t) for t in meta.inputs],
            "outputs": [signature(t) for t in meta.outputs],
        }

    def wait_until_ready(self, timeout_s: float) -> None:
        """Poll until the server and this model are ready; CloudUnavailable after ``timeout_s`` seconds.

        A rejected call (an unknown model: NOT_FOUND, or no permission) fails at once: waiting
        will not change it.
        """
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        model = pb.ModelReadyRequest(name=self.model_name, version=self.model_version)
        while True:
            call_s = min(self.timeout_s, max(deadline - time.monotonic(), _READY_POLL_S))
            try:
                if (
                    self._call("ServerReady", pb.ServerReadyRequest(), timeout_s=call_s).ready
                    and self._call("ModelReady", model, timeout_s=call_s).ready
                ):
                    return
                last = "server or model not ready"
            except (CloudUnavailable, CloudTimeout, CloudOverloaded) as exc:
                last = str(exc)
            if time.monotonic() >= deadline:
                raise CloudUnavailable(
                    f"cloud model {self.model_name!r} at {self.target} not ready within {timeout_s:g} s: {last}"
                )
            time.sleep(_READY_POLL_S)

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, rpc: str, request: Any, *, request_id: str | None = None, timeout_s: float | None = None) -> Any:
        """``rpc(request)`` with a deadline; a gRPC failure raised as its mapped CloudError."""
        what = f"cloud request {_one_line(request_id)}" if request_id is not None else f"cloud {rpc}"
        if timeout_s is not None:
            _check_timeout(timeout_s)
        try:
            method = getattr(self._stub, rpc)
            timeout = timeout_s if timeout_s is not None else self.timeout_s
            return method(request, timeout=timeout, metadata=self._metadata)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            message = f"{what} to {self.target} failed: {code.name}: {_one_line(details or '')}"
            raise _failure(code)(message, status=code.name) from exc

    def close(self) -> None:
        """Close the channel; the client cannot be used afterwards."""
        self._channel.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _read_pem(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc


def _check_timeout(timeout_s: float) -> None:
    if not timeout_s > 0 or timeout_s == float("inf"):
        raise ConfigError(f"timeout_s must be a finite number of seconds > 0; got {timeout_s}")
