"""The replay's input and output: one device's request stream and the per-request costs.

:class:`RequestStream` holds what the simulator needs per request, in arrival order (arrival time,
local compute time and energy, whether it goes to the cloud, wire bytes, server time);
:class:`ReplayResult` holds what :func:`specedge.simulator.replay.replay` returns: times, the
latency components and the energy components of each request.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from specedge.errors import ConfigError

__all__ = [
    "ENERGY_COMPONENTS",
    "LATENCY_COMPONENTS",
    "MODEL_KINDS",
    "NO_SESSION",
    "ModelKind",
    "ReplayResult",
    "RequestStream",
    "check_kind",
]

ModelKind = Literal["simple", "realistic"]
MODEL_KINDS = ("simple", "realistic")

#: ``ReplayResult.category`` of a request answered on the device (no radio session).
NO_SESSION = -1

LATENCY_COMPONENTS = ("queue_s", "local_s", "promotion_s", "handshake_s", "upload_s", "wait_s", "download_s")
ENERGY_COMPONENTS = ("local_mj", "promotion_mj", "handshake_mj", "upload_mj", "wait_mj", "download_mj", "tail_mj")


@dataclass(frozen=True, eq=False)
class RequestStream:
    """One device's requests in arrival order; every field is an array of the same length N.

    Attributes:
        arrival_s: when each request arrives (non-decreasing seconds).
        local_s: device compute before the request is answered or sent (0 where none).
        local_mj: that compute's energy, priced on the same device profile as ``local_s``.
        to_cloud: whether the request goes to the cloud.
        request_bytes: uplink bytes on the wire (ignored where ``to_cloud`` is False).
        response_bytes: downlink bytes on the wire.
        server_s: the server's queue and compute time.
    """

    arrival_s: np.ndarray
    local_s: np.ndarray
    local_mj: np.ndarray
    to_cloud: np.ndarray
    request_bytes: np.ndarray
    response_bytes: np.ndarray
    server_s: np.ndarray

    @classmethod
    def build(
        cls,
        arrival_s: ArrayLike,
        *,
        local_s: ArrayLike = 0.0,
        local_mj: ArrayLike = 0.0,
        to_cloud: ArrayLike = False,
        request_bytes: ArrayLike = 0,
        response_bytes: ArrayLike = 0,
        server_s: ArrayLike = 0.0,
    ) -> RequestStream:
        """A stream from arrays or scalars (scalars apply to every request)."""
        arrival = np.asarray(arrival_s, dtype=np.float64)
        if arrival.ndim != 1:
            raise ConfigError(f"arrival_s must be a 1-D array of seconds; got shape {arrival.shape}")

        def column(name: str, value: ArrayLike, dtype: type) -> np.ndarray:
            array: np.ndarray = np.asarray(value, dtype=dtype)
            if array.ndim == 0:
                return np.full(arrival.shape, array, dtype=dtype)
            if array.shape != arrival.shape:
                raise ConfigError(f"{name} has shape {array.shape}; expected {arrival.shape} like arrival_s")
            return array

        return cls(
            arrival_s=arrival,
            local_s=column("local_s", local_s, np.float64),
            local_mj=column("local_mj", local_mj, np.float64),
            to_cloud=column("to_cloud", to_cloud, bool),
            request_bytes=column("request_bytes", request_bytes, np.float64),
            response_bytes=column("response_bytes", response_bytes, np.float64),
            server_s=column("server_s", server_s, np.float64),
        )

    def __post_init__(self) -> None:
        n = self.arrival_s.shape
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, np.ndarray) or value.shape != n:
                raise ConfigError(f"{f.name} must be an array of shape {n}; use RequestStream.build for scalars")
            if value.dtype != bool and not np.all(np.isfinite(value)):
                raise ConfigError(f"{f.name} must be finite; first bad index {np.flatnonzero(~np.isfinite(value))[0]}")
            if f.name != "arrival_s" and value.dtype != bool and np.any(value < 0):
                raise ConfigError(f"{f.name} must be >= 0; first bad index {np.flatnonzero(value < 0)[0]}")
        drops = np.flatnonzero(np.diff(self.arrival_s) < 0)
        if len(drops):
            raise ConfigError(f"arrival_s must not decrease; index {drops[0] + 1} arrives before index {drops[0]}")

    def __len__(self) -> int:
        return len(self.arrival_s)


@dataclass(frozen=True, eq=False)
class ReplayResult:
    """Per-request times (s) and energies (mJ) of one replay; arrays of length N.

    ``finish_s - arrival_s`` equals the sum of the latency components (up to rounding), and
    :attr:`energy_mj` is the sum of the energy components; ``tail_mj`` of the last cloud request
    includes ``final_tail_mj``.
    """

    kind: ModelKind
    method: Literal["reference", "vectorised"]
    arrival_s: np.ndarray
    start_s: np.ndarray  # when the device took the request up
    finish_s: np.ndarray  # when its answer was ready
    category: np.ndarray  # radio session category (radio.IDLE_PROMOTION ...), NO_SESSION if local
    queue_s: np.ndarray
    local_s: np.ndarray
    promotion_s: np.ndarray
    handshake_s: np.ndarray
    upload_s: np.ndarray
    wait_s: np.ndarray  # round trip and server time
    download_s: np.ndarray
    local_mj: np.ndarray
    promotion_mj: np.ndarray
    handshake_mj: np.ndarray
    upload_mj: np.ndarray
    wait_mj: np.ndarray
    download_mj: np.ndarray
    tail_mj: np.ndarray
    final_tail_mj: float

    @property
    def latency_s(self) -> np.ndarray:
        """Arrival to answer, per request."""
        return np.asarray(self.finish_s - self.arrival_s)

    @property
    def energy_mj(self) -> np.ndarray:
        """Device energy per request (compute and radio, above idle)."""
        total = np.zeros_like(self.local_mj)
        for name in ENERGY_COMPONENTS:
            total = total + getattr(self, name)
        return total

    @property
    def radio_mj(self) -> np.ndarray:
        """The radio's share of :attr:`energy_mj`."""
        return np.asarray(self.energy_mj - self.local_mj)

    def totals(self) -> dict[str, float]:
        """Sums over the run of every latency and energy component, plus the final tail."""
        out = {name: float(getattr(self, name).sum()) for name in (*LATENCY_COMPONENTS, *ENERGY_COMPONENTS)}
        out["final_tail_mj"] = self.final_tail_mj
        return out


def check_kind(kind: str) -> None:
    """ConfigError unless ``kind`` is one of :data:`MODEL_KINDS`."""
    if kind not in MODEL_KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; expected one of: {', '.join(MODEL_KINDS)}")
