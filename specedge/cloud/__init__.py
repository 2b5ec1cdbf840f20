"""The cloud side: master CNNs served over the KServe v2 gRPC protocol (Open Inference Protocol).

- :mod:`~specedge.cloud.validation`: every ModelInfer checked against the model and the limits
  before its payload is decoded; parameters (class_count, timeout, priority, SpecEdge's own).
- :mod:`~specedge.cloud.batcher`: :class:`DynamicBatcher`, a bounded queue that forms batches
  (max batch, max queue delay), skips expired work and measures queue time from arrival.
- :mod:`~specedge.cloud.engine`: :class:`InferenceEngine`, one model on a batcher, with its
  config and statistics (:mod:`~specedge.cloud.statistics`, Triton's fields).
- :mod:`~specedge.cloud.duo`: :class:`DuoModel`, Dynamic Duo's little and big models behind one name.
- :mod:`~specedge.cloud.servicer`: the KServe v2 RPCs (ModelInfer, ModelStreamInfer, ModelConfig,
  ModelStatistics, metadata and readiness), converting and delegating.
- :mod:`~specedge.cloud.status`: domain errors -> gRPC status codes, bounded texts.
- :mod:`~specedge.cloud.request_log`: every ModelInfer call streamed to disk, bounded in memory.
- :mod:`~specedge.cloud.security`: TLS / mutual TLS, bearer tokens, undecodable requests.
- :mod:`~specedge.cloud.metrics`: the Prometheus endpoint.
- :mod:`~specedge.cloud.server`: :func:`create_server` (tests, embedding) and :func:`run_server`
  (``specedge serve``): health, reflection, graceful shutdown.
- :mod:`~specedge.cloud.process`: :class:`CloudServerProcess`, the server as a child process that
  dies with its parent.
"""

from __future__ import annotations

from specedge.cloud.batcher import DeadlineExpiredError, DynamicBatcher, QueueFullError
from specedge.cloud.duo import DuoModel, load_duo
from specedge.cloud.engine import (
    InferenceEngine,
    InferenceResult,
    ModelMetadata,
    ModelNotFoundError,
    ModelNotReadyError,
    TensorSignature,
)
from specedge.cloud.process import CloudServerProcess
from specedge.cloud.request_log import RequestLog, RequestLogEntry, read_request_log
from specedge.cloud.security import TlsConfig
from specedge.cloud.server import create_server, load_engines, run_server
from specedge.cloud.servicer import InferenceServicer, ServedModel

__all__ = [
    "CloudServerProcess",
    "DeadlineExpiredError",
    "DuoModel",
    "DynamicBatcher",
    "InferenceEngine",
    "InferenceResult",
    "InferenceServicer",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "QueueFullError",
    "RequestLog",
    "RequestLogEntry",
    "ServedModel",
    "TensorSignature",
    "TlsConfig",
    "create_server",
    "load_duo",
    "load_engines",
    "read_request_log",
    "run_server",
]
