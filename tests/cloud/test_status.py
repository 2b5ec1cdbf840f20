"""Domain errors map to gRPC status codes in one place; unexpected errors stay in the log."""

from __future__ import annotations

import logging

import grpc
import pytest

from specedge.cloud.engine import ModelNotFoundError, ModelNotReadyError
from specedge.cloud.status import INTERNAL_DETAILS, to_status
from specedge.errors import ArtifactError, ConfigError, TensorError


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (TensorError("bad shape"), grpc.StatusCode.INVALID_ARGUMENT),
        (ConfigError("bad param"), grpc.StatusCode.INVALID_ARGUMENT),
        (ModelNotFoundError("no such model"), grpc.StatusCode.NOT_FOUND),
        (ModelNotReadyError("loading"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_domain_errors(exc: Exception, code: grpc.StatusCode) -> None:
    assert to_status(exc) == (code, str(exc))


@pytest.mark.parametrize("exc", [RuntimeError("secret /path/inside"), ArtifactError("x"), KeyError("k")])
def test_anything_else_is_internal_with_a_generic_message(exc: Exception, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="specedge.cloud.status"):
        code, details = to_status(exc, rpc="ModelInfer")
    assert code == grpc.StatusCode.INTERNAL
    assert details == INTERNAL_DETAILS
    assert "secret" not in details
    (record,) = caplog.records
    assert "ModelInfer" in record.getMessage()
    assert record.exc_info is not None and record.exc_info[1] is exc
