"""The edge's client for the cloud server: one KServe v2 ModelInfer per escalated batch.

A thin transport seam: it encodes images, makes the RPC, checks and decodes the answer, and
measures the round trip and the serialized message sizes (what a link emulator charges for).
Retries, deadlines policy, TLS and link emulation wrap it from outside. Every gRPC failure is
raised as :class:`CloudRpcError` (a :class:`~specedge.errors.CloudError`) that keeps the status
code, so a wrapper can tell a retryable UNAVAILABLE from a hopeless INVALID_ARGUMENT.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import grpc
import numpy as np

from specedge.errors import CloudError, ConfigError
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub

__all__ = ["CloudClient", "CloudResponse", "CloudRpcError"]

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
_READY_POLL_S = 0.05


class CloudRpcError(CloudError):
    """A cloud RPC ended with a non-OK gRPC status; ``code`` keeps it."""

    def __init__(self, message: str, code: grpc.StatusCode) -> None:
        super().__init__(message)
        self.code = code


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
        timeout_s: deadline of each RPC, in seconds.
        max_message_bytes: gRPC send and receive limit (the 4 MiB default breaks image batches).
    """

    def __init__(
        self,
        target: str,
        *,
        model_name: str,
        model_version: str = "",
        timeout_s: float = 10.0,
        max_message_bytes: int = 64 * 2**20,
    ) -> None:
        if timeout_s <= 0:
            raise ConfigError(f"timeout_s must be > 0 seconds; got {timeout_s}")
        if max_message_bytes < 1:
            raise ConfigError(f"max_message_bytes must be >= 1; got {max_message_bytes}")
        self.target = target
        self.model_name = model_name
        self.model_version = model_version
        self.timeout_s = timeout_s
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.max_send_message_length", max_message_bytes),
                ("grpc.max_receive_message_length", max_message_bytes),
            ],
        )
        self._stub = GRPCInferenceServiceStub(self._channel)  # type: ignore[no-untyped-call]  # generated

    # --- inference -----------------------------------------------------------------------------

    def infer(self, images: np.ndarray, *, request_id: str) -> CloudResponse:
        """Logits for ``images`` (uint8 ``(N, C, H, W)``), tagged ``request_id`` in the server's log."""
        request = pb.ModelInferRequest(model_name=self.model_name, model_version=self.model_version, id=request_id)
        datatype, shape, raw = tensors.encode_raw(images)
        request.inputs.add(name=INPUT_NAME, datatype=datatype, shape=shape)
        request.raw_input_contents.append(raw)
        request_bytes = request.ByteSize()
        start_ns = time.perf_counter_ns()
        response = self._call("ModelInfer", request, request_id=request_id)
        round_trip_us = (time.perf_counter_ns() - start_ns) // 1000
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
        where = f"cloud response to request {request_id} from {self.target}"
        if response.id != request_id:
            raise CloudError(f"{where} carries id {response.id!r}")
        if len(response.outputs) != 1:
            raise CloudError(f"{where} has {len(response.outputs)} outputs; expected one, {OUTPUT_NAME!r}")
        output = response.outputs[0]
        if output.datatype != "FP32":
            raise CloudError(f"{where}: output {output.name!r} is {output.datatype}; expected FP32")
        try:
            logits = tensors.decode_outputs(response)[output.name]
        except ValueError as exc:  # TensorError: bad byte count, both/neither contents, ...
            raise CloudError(f"{where} is malformed: {exc}") from exc
        if logits.ndim != 2 or logits.shape[0] != batch_size:
            raise CloudError(
                f"{where}: output {output.name!r} has shape {list(logits.shape)}; expected ({batch_size}, K)"
            )
        return logits

    # --- probes and metadata -------------------------------------------------------------------

    def server_live(self) -> bool:
        """ServerLive."""
        return bool(self._call("ServerLive", pb.ServerLiveRequest()).live)

    def server_ready(self) -> bool:
        """ServerReady."""
        return bool(self._call("ServerReady", pb.ServerReadyRequest()).ready)

    def model_ready(self) -> bool:
        """ModelReady for this client's model (CloudRpcError NOT_FOUND if the server lacks it)."""
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
        """Poll until the server and this model are ready; CloudError after ``timeout_s`` seconds.

        An unknown model (NOT_FOUND) fails at once: waiting will not make it appear.
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
            except CloudRpcError as exc:
                if exc.code == grpc.StatusCode.NOT_FOUND:
                    raise
                last = str(exc)
            if time.monotonic() >= deadline:
                raise CloudError(
                    f"cloud model {self.model_name!r} at {self.target} not ready within {timeout_s:g} s: {last}"
                )
            time.sleep(_READY_POLL_S)

    # --- plumbing ------------------------------------------------------------------------------

    def _call(self, rpc: str, request: Any, *, request_id: str | None = None, timeout_s: float | None = None) -> Any:
        what = f"cloud request {request_id}" if request_id is not None else f"cloud {rpc}"
        try:
            method = getattr(self._stub, rpc)
            return method(request, timeout=timeout_s if timeout_s is not None else self.timeout_s)
        except grpc.RpcError as exc:
            code = exc.code() if isinstance(exc, grpc.Call) else grpc.StatusCode.UNKNOWN
            details = exc.details() if isinstance(exc, grpc.Call) else str(exc)
            raise CloudRpcError(f"{what} to {self.target} failed: {code.name}: {details}", code) from exc

    def close(self) -> None:
        """Close the channel; the client cannot be used afterwards."""
        self._channel.close()

    def __enter__(self) -> CloudClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
