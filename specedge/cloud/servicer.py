"""The KServe v2 ``GRPCInferenceService`` servicer: convert protocol messages and delegate.

Every RPC of the Open Inference Protocol plus Triton's ModelConfig, ModelStatistics and
ModelStreamInfer, wire-compatible with Triton's ``grpc_service.proto`` so the stock
``tritonclient.grpc`` works unchanged. Each RPC turns its request into numpy arrays and plain
values, calls a served model (:class:`~specedge.cloud.engine.InferenceEngine` or the big/little
:class:`~specedge.cloud.duo.DuoModel`) and turns the result back into a response. Errors become
status codes in :mod:`specedge.cloud.status`; a bad request never changes server state. Every
inference request, answered or refused, unary or streamed, is recorded in the
:class:`~specedge.cloud.request_log.RequestLog`.

ModelInfer, in order: the arrival time (``time.perf_counter_ns()``, the start of queue time);
validation before any decoding; the deadline (the earlier of the gRPC deadline and the
``timeout`` parameter, microseconds); ``model.infer``; the response, with ``queue_time_us`` and
``compute_time_us`` parameters and, for a ``classification`` output parameter, top-k
``"score:index"`` strings as Triton's classification extension gives them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import grpc
import numpy as np

import specedge
from specedge.cloud import status
from specedge.cloud.batcher import DeadlineExpiredError
from specedge.cloud.engine import (
    OUTPUT_NAME,
    InferenceResult,
    ModelConfigInfo,
    ModelMetadata,
    ModelNotFoundError,
    TensorSignature,
)
from specedge.cloud.request_log import RequestLog, RequestLogEntry
from specedge.cloud.statistics import ModelStats
from specedge.cloud.validation import Limits, ParsedInfer, parse_infer_request, short
from specedge.errors import ConfigError
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceServicer

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "SERVER_NAME", "InferenceServicer", "ServedModel"]

SERVER_NAME = "specedge"
DEFAULT_MAX_REQUEST_BYTES = 64 * 2**20  # the server's default gRPC message limit
EXTENSIONS = ("classification", "model_configuration", "statistics")  # Triton's extension names


class ServedModel(Protocol):
    """A served model: :class:`~specedge.cloud.engine.InferenceEngine` or :class:`~specedge.cloud.duo.DuoModel`."""

    model_name: str
    model_version: str

    @property
    def ready(self) -> bool:
        """Whether the model can run inference now."""

    def metadata(self) -> ModelMetadata:
        """Name, versions, platform and tensor signatures."""

    def config(self) -> ModelConfigInfo:
        """Batching and instance settings."""

    def statistics(self) -> ModelStats:
        """Counters and cumulative times since the model started."""

    def infer(
        self, images: np.ndarray, *, arrival_ns: int, deadline_ns: int | None = None, recovery: bool = False
    ) -> InferenceResult:
        """Logits for ``images``; blocks until its batch ran (``*_ns`` on the perf_counter_ns clock)."""

    def close(self) -> None:
        """Finish the queued work, then stop."""


class InferenceServicer(GRPCInferenceServiceServicer):
    """The KServe v2 RPCs over ``models`` (model name -> served model).

    Args:
        models: the served models; each key must equal its model's ``model_name``.
        request_log: where inference requests are recorded; a fresh in-memory log if omitted.
        max_request_bytes: the largest request the server accepts (its gRPC message limit);
            a tensor declaring more is refused before decoding.
    """

    def __init__(
        self,
        models: Mapping[str, ServedModel],
        *,
        request_log: RequestLog | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
    ) -> None:
        if not models:
            raise ConfigError("the cloud server needs at least one model")
        for name, model in models.items():
            if name != model.model_name:
                raise ConfigError(f"model registered as {name!r} serves model {model.model_name!r}")
        if max_request_bytes < 1:
            raise ConfigError(f"max_request_bytes must be >= 1; got {max_request_bytes}")
        self.engines = dict(models)
        self.request_log = request_log if request_log is not None else RequestLog()
        self.max_request_bytes = max_request_bytes
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
        ready = not self.shutting_down and all(model.ready for model in self.engines.values())
        return pb.ServerReadyResponse(ready=ready)

    def ModelReady(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelReadyRequest, context: grpc.ServicerContext
    ) -> pb.ModelReadyResponse:
        """One model is ready; NOT_FOUND for a model or version the server does not serve."""
        try:
            model = self._model(request.name, request.version)
        except Exception as exc:
            status.abort(context, exc, rpc="ModelReady")
        return pb.ModelReadyResponse(ready=model.ready and not self.shutting_down)

    # --- metadata, configuration, statistics -----------------------------------------------------

    def ServerMetadata(  # noqa: N802 (gRPC method name)
        self, request: pb.ServerMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ServerMetadataResponse:
        """Server name, SpecEdge version and the Triton extensions served."""
        return pb.ServerMetadataResponse(name=SERVER_NAME, version=specedge.__version__, extensions=EXTENSIONS)

    def ModelMetadata(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelMetadataRequest, context: grpc.ServicerContext
    ) -> pb.ModelMetadataResponse:
        """Name, versions, platform and tensor signatures of one model."""
        try:
            meta = self._model(request.name, request.version).metadata()
        except Exception as exc:
            status.abort(context, exc, rpc="ModelMetadata")
        return pb.ModelMetadataResponse(
            name=meta.name,
            versions=list(meta.versions),
            platform=meta.platform,
            inputs=[_tensor_metadata(sig) for sig in meta.inputs],
            outputs=[_tensor_metadata(sig) for sig in meta.outputs],
        )

    def ModelConfig(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelConfigRequest, context: grpc.ServicerContext
    ) -> pb.ModelConfigResponse:
        """Batching and tensors of one model, as Triton's ``config.pbtxt`` would state them."""
        try:
            model = self._model(request.name, request.version)
            config = _model_config(model.metadata(), model.config())
        except Exception as exc:
            status.abort(context, exc, rpc="ModelConfig")
        return pb.ModelConfigResponse(config=config)

    def ModelStatistics(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelStatisticsRequest, context: grpc.ServicerContext
    ) -> pb.ModelStatisticsResponse:
        """Cumulative statistics of one model, or of every model when the name is empty."""
        try:
            if request.name:
                models = [self._model(request.name, request.version)]
            elif request.version:
                raise ConfigError(f"a model version ({request.version!r}) needs a model name")
            else:
                models = [self.engines[name] for name in sorted(self.engines)]
            stats = [_model_statistics(model) for model in models]
        except Exception as exc:
            status.abort(context, exc, rpc="ModelStatistics")
        return pb.ModelStatisticsResponse(model_stats=stats)

    # --- inference -----------------------------------------------------------------------------

    def ModelInfer(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        """Logits (or top-k classes) for the request's ``images``, with queue and compute time."""
        arrival_ns = time.perf_counter_ns()  # first: queue time starts when the request arrives
        response, code, details = self._answer(request, context, arrival_ns)
        if response is None:
            context.abort(code, details)
            raise AssertionError("grpc.ServicerContext.abort returned")  # it always raises
        return response

    def ModelStreamInfer(  # noqa: N802 (gRPC method name)
        self, request_iterator: Iterator[pb.ModelInferRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.ModelStreamInferResponse]:
        """Answer each streamed request in order; a refused one gets ``error_message``, the stream goes on."""
        for request in request_iterator:
            arrival_ns = time.perf_counter_ns()
            response, code, details = self._answer(request, context, arrival_ns)
            if response is None:
                failed = pb.ModelInferResponse(
                    model_name=request.model_name[:256], model_version=request.model_version[:256], id=request.id[:256]
                )
                yield pb.ModelStreamInferResponse(error_message=f"{code.name}: {details}", infer_response=failed)
            else:
                yield pb.ModelStreamInferResponse(infer_response=response)

    # --- helpers ---------------------------------------------------------------------------------

    def _answer(
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext, arrival_ns: int
    ) -> tuple[pb.ModelInferResponse | None, grpc.StatusCode, str]:
        """The response (or None), the status code and the error details; records the request."""
        received_unix_s = time.time()
        parsed: ParsedInfer | None = None
        try:
            model = self._model(request.model_name, request.model_version)
            parsed = self._parse(request, model)
            deadline_ns = _deadline_ns(arrival_ns, context.time_remaining(), parsed.timeout_us)
            _check_deadline(deadline_ns)  # expired work never reaches the queue
            result = model.infer(
                parsed.images, arrival_ns=arrival_ns, deadline_ns=deadline_ns, recovery=parsed.recovery
            )
            response = _infer_response(request, model, result, parsed)
        except Exception as exc:
            code, details = status.to_status(exc, rpc="ModelInfer")
            self._record(request, context, received_unix_s, code, parsed=parsed, details=details)
            return None, code, details
        self._record(request, context, received_unix_s, grpc.StatusCode.OK, parsed=parsed, result=result)
        return response, grpc.StatusCode.OK, ""

    def _model(self, name: str, version: str) -> ServedModel:
        model = self.engines.get(name)
        if model is None:
            served = ", ".join(sorted(self.engines))
            raise ModelNotFoundError(f"unknown model {short(name)}; this server serves: {served}")
        if version not in ("", model.model_version):
            raise ModelNotFoundError(
                f"model {name!r} has no version {short(version)}; available: {model.model_version} "
                "(or leave the version empty)"
            )
        return model

    def _parse(self, request: pb.ModelInferRequest, model: ServedModel) -> ParsedInfer:
        """Validate against the model's signature and limits before decoding, then decode."""
        meta = model.metadata()
        (signature,) = meta.inputs
        max_batch = model.config().max_batch_size
        item_bytes = math.prod(signature.shape[1:]) * tensors.DATATYPES[signature.datatype].itemsize
        limits = Limits(
            max_batch=max_batch,
            max_request_bytes=self.max_request_bytes,
            max_decompressed_bytes=max_batch * item_bytes,  # a zstd input may not inflate past a full batch
        )
        return parse_infer_request(request, signature, meta.outputs, limits)

    def _record(
        self,
        request: pb.ModelInferRequest,
        context: grpc.ServicerContext,
        received_unix_s: float,
        code: grpc.StatusCode,
        *,
        parsed: ParsedInfer | None = None,
        result: InferenceResult | None = None,
        details: str = "",
    ) -> None:
        shape = request.inputs[0].shape if request.inputs else ()
        prediction = None if parsed is None else parsed.speculative_prediction
        agreed = None
        if prediction is not None and result is not None:  # every row's top class is the edge's answer
            agreed = bool(np.all(result.logits.argmax(axis=1) == prediction))
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
                speculative_prediction=prediction,
                agreed=agreed,
                answered_by=result.answered_by if result is not None else "",
                recovery=parsed is not None and parsed.recovery,
            ),
            context=context,
        )


# --- inference -----------------------------------------------------------------------------------


_NO_DEADLINE_S = 365 * 24 * 3600.0  # grpc reports "no deadline" as a huge time_remaining()


def _deadline_ns(arrival_ns: int, time_remaining_s: float | None, timeout_us: int | None) -> int | None:
    """The earlier of the gRPC deadline and the ``timeout`` parameter, on the perf_counter_ns clock."""
    candidates = []
    if time_remaining_s is not None and time_remaining_s < _NO_DEADLINE_S:
        candidates.append(time.perf_counter_ns() + int(time_remaining_s * 1e9))
    if timeout_us is not None:
        candidates.append(arrival_ns + timeout_us * 1000)
    return min(candidates) if candidates else None


def _check_deadline(deadline_ns: int | None) -> None:
    now_ns = time.perf_counter_ns()
    if deadline_ns is not None and now_ns >= deadline_ns:
        late_us = (now_ns - deadline_ns) // 1000
        raise DeadlineExpiredError(f"the request's deadline passed {late_us} us before it reached the model; not run")


def _infer_response(
    request: pb.ModelInferRequest, model: ServedModel, result: InferenceResult, parsed: ParsedInfer
) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name=model.model_name, model_version=model.model_version, id=request.id)
    params: dict[str, Any] = {"queue_time_us": result.queue_time_us, "compute_time_us": result.compute_time_us}
    if result.answered_by:
        params["answered_by"] = result.answered_by
    tensors.write_parameters(response.parameters, params)
    output = response.outputs.add(name=OUTPUT_NAME)
    if parsed.class_count:
        top = _top_k(result.logits, parsed.class_count)  # (N, k) bytes
        output.datatype = tensors.BYTES
        output.shape.extend(top.shape)
        if parsed.binary_output:
            response.raw_output_contents.append(tensors.encode_bytes(top))
        else:
            output.contents.bytes_contents.extend(top.ravel().tolist())
        return response
    if parsed.binary_output:
        output.datatype, shape, raw = tensors.encode_raw(result.logits)
        response.raw_output_contents.append(raw)
    else:
        output.datatype, shape, contents = tensors.encode_contents(result.logits)
        output.contents.CopyFrom(contents)
    output.shape.extend(shape)
    return response


def _top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """``(N, K)`` scores -> ``(N, k)`` ``b"score:index"``, best first, ties to the lower index.

    The score is printed as C's ``%f`` (Triton formats it with ``std::to_string``).
    """
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    scores = np.take_along_axis(logits, order, axis=1)
    top = np.empty(order.shape, dtype=object)
    for index in np.ndindex(order.shape):
        top[index] = b"%f:%d" % (float(scores[index]), int(order[index]))
    return top


# --- configuration and statistics ----------------------------------------------------------------


def _model_config(meta: ModelMetadata, batching: ModelConfigInfo) -> pb.ModelConfig:
    config = pb.ModelConfig(name=meta.name, platform=meta.platform, max_batch_size=batching.max_batch_size)
    batched = batching.max_batch_size > 0  # Triton then leaves the batch dimension out of dims
    for sig in meta.inputs:
        dims = sig.shape[1:] if batched else sig.shape
        fmt = pb.ModelInput.FORMAT_NCHW if len(dims) == 3 else pb.ModelInput.FORMAT_NONE
        config.input.add(name=sig.name, data_type=_data_type(sig.datatype), format=fmt, dims=dims)
    for sig in meta.outputs:
        config.output.add(
            name=sig.name, data_type=_data_type(sig.datatype), dims=sig.shape[1:] if batched else sig.shape
        )
    config.dynamic_batching.max_queue_delay_microseconds = batching.max_queue_delay_us
    config.dynamic_batching.preferred_batch_size.extend(batching.preferred_batch_sizes)
    config.dynamic_batching.default_queue_policy.max_queue_size = batching.max_queue_size
    config.instance_group.add(name=meta.name, count=batching.instance_count)
    return config


def _data_type(datatype: str) -> int:
    name = "TYPE_STRING" if datatype == tensors.BYTES else f"TYPE_{datatype}"
    return int(pb.DataType.Value(name))


def _model_statistics(model: ServedModel) -> pb.ModelStatistics:
    """``model.statistics()`` as Triton's ModelStatistics."""
    stats = model.statistics()
    out = pb.ModelStatistics(
        name=model.model_name,
        version=model.model_version,
        last_inference=stats.last_inference_ms,
        inference_count=stats.inference_count,
        execution_count=stats.execution_count,
    )
    for field in ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output"):
        duration = getattr(stats, field)
        getattr(out.inference_stats, field).MergeFrom(pb.StatisticDuration(count=duration.count, ns=duration.ns))
    for batch_size, batch in sorted(stats.batch_stats.items()):
        entry = out.batch_stats.add(batch_size=batch_size)
        entry.compute_infer.count, entry.compute_infer.ns = batch.count, batch.compute_ns
    return out


def _tensor_metadata(sig: TensorSignature) -> pb.ModelMetadataResponse.TensorMetadata:
    return pb.ModelMetadataResponse.TensorMetadata(name=sig.name, datatype=sig.datatype, shape=list(sig.shape))
