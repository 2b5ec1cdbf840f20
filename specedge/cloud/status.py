r"""Domain errors -> gRPC status codes, in one place.

=============================================  ====================  ===============================
exception                                      status code           details sent to the client
=============================================  ====================  ===============================
QueueFullError (batcher: the queue is full)    RESOURCE_EXHAUSTED    the error message
DeadlineExpiredError (batcher: expired work)   DEADLINE_EXCEEDED     the error message
TensorError, RequestTooLargeError (its kind)   INVALID_ARGUMENT      the error message
ConfigError, UnsupportedParameterError         INVALID_ARGUMENT      the error message
ModelNotFoundError (unknown model/version)     NOT_FOUND             the error message
ModelNotReadyError                             UNAVAILABLE           the error message
anything else                                  INTERNAL              a generic message; traceback logged
=============================================  ====================  ===============================

Only SpecEdge's own messages (which name the bad value and the fix) travel to clients; an
unexpected exception's text may hold internals, so it stays in the server log.

Details are bounded: at most :data:`MAX_DETAILS_CHARS` characters, ASCII only (other characters
escaped as ``\uXXXX``), cut in the middle with ``...``. gRPC sends them percent-encoded in the
``grpc-message`` trailer, so 1,000 ASCII characters stay under 3 kB, far inside the 8 KiB
metadata limit: a request with a 1 MB model name still gets NOT_FOUND, not RESOURCE_EXHAUSTED.

The batcher's errors are matched by class name (``specedge.cloud.batcher`` defines them), so this
module does not import the batcher and works whichever of the two modules loads first.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from specedge.cloud.engine import ModelNotFoundError, ModelNotReadyError
from specedge.errors import ConfigError, SpecEdgeError, TensorError

__all__ = ["INTERNAL_DETAILS", "MAX_DETAILS_CHARS", "abort", "bounded", "to_status"]

_log = logging.getLogger(__name__)

INTERNAL_DETAILS = "internal server error; see the cloud server's log"
MAX_DETAILS_CHARS = 1000

# SpecEdgeError subclasses defined in specedge.cloud.batcher, by class name.
_BATCHER_ERRORS = {
    "QueueFullError": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "DeadlineExpiredError": grpc.StatusCode.DEADLINE_EXCEEDED,
}
_BATCHER_MODULE = "specedge.cloud.batcher"


def bounded(details: str, *, limit: int = MAX_DETAILS_CHARS) -> str:
    """``details`` as ASCII of at most ``limit`` characters, the middle replaced by ``...`` if too long."""
    text = details.encode("ascii", "backslashreplace").decode("ascii")
    if len(text) <= limit:
        return text
    head = (limit - 3) * 2 // 3
    tail = limit - 3 - head
    return text[:head] + "..." + text[len(text) - tail :]


def _batcher_code(exc: BaseException) -> grpc.StatusCode | None:
    for cls in type(exc).__mro__:
        if cls.__module__ == _BATCHER_MODULE and cls.__name__ in _BATCHER_ERRORS:
            return _BATCHER_ERRORS[cls.__name__]
    return None


def to_status(exc: BaseException, *, rpc: str = "rpc") -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing details for ``exc``; logs unexpected errors with traceback."""
    code: grpc.StatusCode | None = None
    if isinstance(exc, SpecEdgeError):
        code = _batcher_code(exc)
    if code is None:
        if isinstance(exc, (TensorError, ConfigError)):
            code = grpc.StatusCode.INVALID_ARGUMENT
        elif isinstance(exc, ModelNotFoundError):
            code = grpc.StatusCode.NOT_FOUND
        elif isinstance(exc, ModelNotReadyError):
            code = grpc.StatusCode.UNAVAILABLE
    if code is None:
        _log.error("unexpected error in %s", rpc, exc_info=exc)
        return grpc.StatusCode.INTERNAL, INTERNAL_DETAILS
    return code, bounded(str(exc))


def abort(context: grpc.ServicerContext, exc: BaseException, *, rpc: str = "rpc") -> NoReturn:
    """End the RPC with the status :func:`to_status` picks for ``exc`` (``context.abort`` raises)."""
    code, details = to_status(exc, rpc=rpc)
    context.abort(code, details)
    raise AssertionError("grpc.ServicerContext.abort returned")  # it always raises; tells type checkers
