"""The SpecEdge exception tree.

Every error a user can cause (a bad flag, a missing or corrupt file, a wrong artifact, a bad
RPC field) is raised as one of these, with a message that names the bad value and says what
was expected. The CLI prints such messages as one line and exits non-zero; the gRPC layer maps
them to status codes in one place (``specedge.cloud.status``). Lower-level exceptions
(``OSError``, ``ValueError`` from numpy, ``grpc.RpcError``) are translated at the layer edge
with ``raise ... from exc`` so the cause stays visible in logs.

    SpecEdgeError
    ├── ConfigError          a value the user chose is out of range or unknown
    ├── DatasetError         a dataset name, path or file cannot be used
    ├── ArtifactError        a model artifact is missing, corrupt or does not match its manifest
    ├── TensorError          a tensor has the wrong dtype, shape or byte size
    ├── CloudError           the cloud server could not be reached or answered with an error
    └── TraceError           a network trace file is missing, malformed or has no capacity
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "CloudError",
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
    """A request to the cloud inference server failed."""


class TraceError(SpecEdgeError, ValueError):
    """A network trace file (Mahimahi or time/throughput) is missing, malformed or has no capacity."""
