"""The cloud side: the master CNN served over the KServe v2 gRPC protocol.

- :mod:`~specedge.cloud.engine`: :class:`InferenceEngine`, the model behind a lock, with queue
  and compute time measured separately.
- :mod:`~specedge.cloud.servicer`: the six KServe v2 RPCs, converting and delegating.
- :mod:`~specedge.cloud.status`: domain errors -> gRPC status codes.
- :mod:`~specedge.cloud.request_log`: a record of every ModelInfer call (JSON lines).
- :mod:`~specedge.cloud.server`: :func:`create_server` (tests, embedding) and :func:`run_server`
  (``specedge serve``).
- :mod:`~specedge.cloud.process`: :class:`CloudServerProcess`, the server as a child process.
"""

from __future__ import annotations

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
from specedge.cloud.server import create_server, load_engines, run_server
from specedge.cloud.servicer import InferenceServicer

__all__ = [
    "CloudServerProcess",
    "InferenceEngine",
    "InferenceResult",
    "InferenceServicer",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "RequestLog",
    "RequestLogEntry",
    "TensorSignature",
    "create_server",
    "load_engines",
    "read_request_log",
    "run_server",
]
