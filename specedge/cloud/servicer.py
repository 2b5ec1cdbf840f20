"""The KServe v2 ``GRPCInferenceService`` servicer: convert protocol messages and delegate.

Each RPC turns its request into numpy arrays and plain values (via
:mod:`specedge.protocol.tensors`), calls an :class:`~specedge.cloud.engine.InferenceEngine`, and
turns the result back into a response. Errors become status codes in
:mod:`specedge.cloud.status`; a bad request never changes server state. Every ModelInfer call,
answered or refused, is recorded in the :class:`~specedge.cloud.request_log.RequestLog`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import grpc
import numpy as np

import specedge
from specedge.cloud import status
from specedge.cloud.engine import (
    OUTPUT_NAME,
    InferenceEngine,
    InferenceResult,
    ModelNotFoundError,
    TensorSignature,
)
from specedge.cloud.request_log import RequestLog, RequestLogEntry
from specedge.errors import ConfigError, TensorError
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceServicer

__all__ = ["SERVER_NAME", "InferenceServicer"]

SERVER_NAME = "specedge"
BINARY_OUTPUT_PARAM = "binary_data_output"  # False -> logits in typed fp32_contents instead of raw


class InferenceServicer(GRPCInferenceServiceServicer):
    """All six KServe v2 RPCs over ``engines`` (model name -> engine).

    Args:
        engines: the served models; each key must equal its engine's ``model_name``.
        request_log: where ModelInfer calls are recorded; a fresh in-memory log if omitted.
    """

    def __init__(self, engines: Mapping[str, InferenceEngine], *, request_log: RequestLog | None = None) -> None:
        if not engines:
            raise ConfigError("the cloud server needs at least one model")
        for name, engine in engines.items():
            if name != engine.model_name:
                raise ConfigError(f"engine registered as {name!r} serves model {engine.model_name!r}")
        self.engines = dict(engines)
        self.request_log = request_log if request_log is not None else RequestLog()
        self.shutting_down = False  # set by the server on graceful stop; ServerReady then says False

    # --- health-style probes -----------------------------------------------------------------

    def ServerLive(  # noqa: N802 (gRPC method name)
        self, request: pb.ServerLiveRequest, context: grpc.ServicerContext
    ) -> pb.ServerLiveResponse:
        """The process is up and answering."""
        return pb.ServerLiveResponse(live=True)

    def ServerReady(  # noqa: N802 (gRPC method name)
        self, request: pb.ServerReadyRequest, context: grpc.ServicerContext
    ) -> pb.ServerReadyResponse:
        """Every model is ready and the server is not shutting down."""
        ready = not self.shutting_down and all(engine.ready for engine in self.engines.values())
        return pb.ServerReadyResponse(ready=ready)

    def ModelReady(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        """One model is ready; NOT_FOUND for a model or version the server does not serve."""
        try:
            engine = self._engine(request.name, request.version)
        except Exception as exc:
            status.abort(context, exc, rpc="ModelReady")
        return pb.ModelReadyResponse(ready=engine.ready and not self.shutting_down)

    # --- metadata ------------------------------------------------------------------------------

    def ServerMetadata(  # noqa: N802 (gRPC method name)
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """Server name and SpecEdge version; no protocol extensions."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=specedge.__version__, extensions=[])

    def ModelMetadata(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """Name, versions, platform and tensor signatures of one model."""
        try:
            meta = self._engine(request.name, request.version).metadata()
        except Exception as exc:
            status.abort(context, exc, rpc="ModelMetadata")
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=list(meta.versions),
            platform=meta.platform,
            inputs=[_tensor_metadata(sig) for sig in meta.inputs],
            outputs=[_tensor_metadata(sig) for sig in meta.outputs],
        )

    # --- inference -----------------------------------------------------------------------------

    def ModelInfer(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        """Logits for the request's ``images``, with queue and compute time as response parameters."""
        received_unix_s = time.time()
        try:
            engine = self._engine(request.model_name, request.model_version)
            images, binary_output = _infer_inputs(request, engine)
            result = engine.infer(images)
            response = _infer_response(request, engine, result, binary_output=binary_output)
        except Exception as exc:
            code, details = status.to_status(exc, rpc="ModelInfer")
            self._record(request, received_unix_s, code, details=details)
            context.abort(code, details)
        self._record(request, received_unix_s, grpc.StatusCode.OK, result=result)
        return response

    # --- helpers ---------------------------------------------------------------------------------

    def _engine(self, name: str, version: str) -> InferenceEngine:
        engine = self.engines.get(name)
        if engine is None:
            served = ", ".join(sorted(self.engines))
            raise ModelNotFoundError(f"unknown model {name!r}; this server serves: {served}")
        if version not in ("", engine.model_version):
            raise ModelNotFoundError(
                f"model {name!r} has no version {version!r}; available: {engine.model_version} "
                "(or leave the version empty)"
            )
        return engine

    def _record(
        self,
        request: pb.ModelInferRequest,
        received_unix_s: float,
        code: grpc.StatusCode,
        *,
        result: InferenceResult | None = None,
        details: str = "",
    ) -> None:
        shape = request.inputs[0].shape if request.inputs else ()
        self.request_log.record(
            RequestLogEntry(
                request_id=request.id,
                model_name=request.model_name,
                batch_size=max(int(shape[0]), 0) if shape else 0,
                status=code.name,
                queue_time_us=result.queue_time_us if result is not None else 0,
                compute_time_us=result.compute_time_us if result is not None else 0,
                received_unix_s=received_unix_s,
                details=details,
            )
        )


def _tensor_metadata(sig: TensorSignature) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=sig.name, datatype=sig.datatype, shape=list(sig.shape))


def _infer_inputs(request: pb.ModelInferRequest, engine: InferenceEngine) -> tuple[np.ndarray, bool]:
    """The request's image batch and whether logits go back as raw bytes; validates the request."""
    (signature,) = engine.metadata().inputs
    if len(request.inputs) != 1:
        raise TensorError(
            f"model {engine.model_name!r} takes exactly one input, {signature.name!r}; "
            f"the request has {len(request.inputs)}"
        )
    tensor = request.inputs[0]
    if tensor.name != signature.name:
        raise TensorError(f"unknown input {tensor.name!r}; model {engine.model_name!r} expects {signature.name!r}")
    if tensor.datatype != signature.datatype:
        raise TensorError(
            f"input {tensor.name!r} has datatype {tensor.datatype!r}; model {engine.model_name!r} "
            f"expects {signature.datatype}"
        )
    for output in request.outputs:
        if output.name != OUTPUT_NAME:
            raise TensorError(f"unknown output {output.name!r}; model {engine.model_name!r} has {OUTPUT_NAME!r}")
    binary_output = tensors.read_parameters(request.parameters).get(BINARY_OUTPUT_PARAM, True)
    if not isinstance(binary_output, bool):
        raise ConfigError(f"parameter {BINARY_OUTPUT_PARAM!r} must be a bool; got {binary_output!r}")
    images = tensors.decode_inputs(request)[signature.name]
    return images, binary_output


def _infer_response(
    request: pb.ModelInferRequest, engine: InferenceEngine, result: InferenceResult, *, binary_output: bool
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=engine.model_name, model_version=engine.model_version, id=request.id)
    tensors.write_parameters(
        response.parameters,
        {"queue_time_us": result.queue_time_us, "compute_time_us": result.compute_time_us},
    )
    output = response.outputs.add(name=OUTPUT_NAME)
    if binary_output:
        output.datatype, shape, raw = tensors.encode_raw(result.logits)
        response.raw_output_contents.append(raw)
    else:
        output.datatype, shape, contents = tensors.encode_contents(result.logits)
        output.contents.CopyFrom(contents)
    output.shape.extend(shape)
    return response
