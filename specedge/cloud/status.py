"""Domain errors -> gRPC status codes, in one place.

=========================================  ====================  ===================================
exception                                  status code           details sent to the client
=========================================  ====================  ===================================
TensorError, ConfigError                   INVALID_ARGUMENT      the error message
ModelNotFoundError (unknown model/version) NOT_FOUND             the error message
ModelNotReadyError                         UNAVAILABLE           the error message
anything else                              INTERNAL              a generic message; traceback logged
=========================================  ====================  ===================================

Only SpecEdge's own messages (which name the bad value and the fix) travel to clients; an
unexpected exception's text may hold internals, so it stays in the server log.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import grpc

from specedge.cloud.engine import ModelNotFoundError, ModelNotReadyError
from specedge.errors import ConfigError, TensorError

__all__ = ["INTERNAL_DETAILS", "abort", "to_status"]

_log = logging.getLogger(__name__)

INTERNAL_DETAILS = "internal server error; see the cloud server's log"


def to_status(exc: BaseException, *, rpc: str = "rpc") -> tuple[grpc.StatusCode, str]:
    """The status code and client-facing details for ``exc``; logs unexpected errors with traceback."""
    if isinstance(exc, (TensorError, ConfigError)):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, ModelNotFoundError):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, ModelNotReadyError):
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    _log.error("unexpected error in %s", rpc, exc_info=exc)
    return grpc.StatusCode.INTERNAL, INTERNAL_DETAILS


def abort(context: grpc.ServicerContext, exc: BaseException, *, rpc: str = "rpc") -> NoReturn:
    """End the RPC with the status :func:`to_status` picks for ``exc`` (``context.abort`` raises)."""
    code, details = to_status(exc, rpc=rpc)
    context.abort(code, details)
    raise AssertionError("grpc.ServicerContext.abort returned")  # it always raises; tells type checkers
