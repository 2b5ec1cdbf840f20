"""The SpecEdge exception tree.

Every error a user can cause (a bad flag, a missing or corrupt file, a wrong artifact, a bad
RPC field) is raised as one of these, with a message that names the bad value and says what
was expected. The CLI prints such messages as one line and exits non-zero; the gRPC layer maps
them to status codes in one place (``specedge.cloud.status``). Lower-level exceptions
(``OSError``, ``ValueError`` from numpy, ``grpc.RpcError``) are translated at the layer edge
with ``raise ... from exc`` so the cause stays visible in logs.

A failed cloud call is one of CloudError's five subclasses, mapped from the gRPC status once, in
``specedge.edge.cloud_client``. Each has a class attribute ``kind`` (the failure's name in records
and logs) and keeps the status name (``status``, e.g. ``"UNAVAILABLE"``; None for a malformed
reply); this module does not import grpc. A plain ``CloudError`` (no ``kind``) comes only from the
server's process and log helpers, which make no calls; every error ``CloudClient`` raises has a kind.

    SpecEdgeError
    ├── ConfigError          a value the user chose is out of range or unknown
    ├── DatasetError         a dataset name, path or file cannot be used
    ├── ArtifactError        a model artifact is missing, corrupt or does not match its manifest
    ├── TensorError          a tensor has the wrong dtype, shape or byte size
    ├── CloudError           the cloud server could not be reached or answered with an error
    │   ├── CloudUnavailable     unreachable, or failed on its side (transient: try again later)
    │   ├── CloudTimeout         no answer within the call's deadline
    │   ├── CloudOverloaded      refused as overloaded (RESOURCE_EXHAUSTED): back off
    │   ├── CloudRejected        refused this request (bad argument, unknown model, ...): retrying will not help
    │   └── CloudProtocolError   answered, but the reply is malformed (wrong id, outputs, shape or bytes)
    └── TraceError           a network trace file is missing, malformed or has no capacity
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "CloudError",
    "CloudOverloaded",
    "CloudProtocolError",
    "CloudRejected",
    "CloudTimeout",
    "CloudUnavailable",
    "ConfigError",
    "DatasetError",
    "SpecEdgeError",
    "TensorError",
    "TraceError",
]


class SpecEdgeError(Exception):
    """Base class of every error SpecEdge raises on purpose."""


class ConfigError(SpecEdgeError, ValueError):
    """A configuration value (CLI flag, constructor argument) is invalid."""


class DatasetError(SpecEdgeError):
    """A dataset cannot be found, read or parsed."""


class ArtifactError(SpecEdgeError):
    """A model artifact cannot be loaded or does not match its manifest."""


class TensorError(SpecEdgeError, ValueError):
    """A tensor's dtype, shape or byte size does not match what was declared or expected."""


class CloudError(SpecEdgeError):
    """A request to the cloud inference server failed.

    Args:
        message: one line naming the request, the target, the status and the server's detail.
        status: the gRPC status name (``"UNAVAILABLE"``), or None where there was none.
    """

    def __init__(self, message: str, *, status: str | None = None) -> None:
        super().__init__(message)
        self.status = status


class CloudUnavailable(CloudError):  # noqa: N818 (named for what happened, as httpx's ReadTimeout)
    """The server could not be reached, or failed on its side; transient: try again later."""

    kind = "unavailable"


class CloudTimeout(CloudError):  # noqa: N818 (named for what happened, as httpx's ReadTimeout)
    """The call's deadline passed before the answer came (DEADLINE_EXCEEDED)."""

    kind = "timeout"


class CloudOverloaded(CloudError):  # noqa: N818 (named for what happened, as httpx's ReadTimeout)
    """The server refused the call for lack of capacity (RESOURCE_EXHAUSTED)."""

    kind = "overloaded"


class CloudRejected(CloudError):  # noqa: N818 (named for what happened, as httpx's ReadTimeout)
    """The server refused this request (bad input, unknown model, not allowed); retrying will not help."""

    kind = "rejected"


class CloudProtocolError(CloudError):
    """The server answered, but the reply breaks the contract (wrong id, outputs, shape or bytes)."""

    kind = "protocol"


class TraceError(SpecEdgeError, ValueError):
    """A network trace file (Mahimahi or time/throughput) is missing, malformed or has no capacity."""
