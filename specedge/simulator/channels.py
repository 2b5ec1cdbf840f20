"""One direction of a link as a capacity over time: ``transfer(num_bytes, at_s) -> done_s``.

A channel answers when the last of ``num_bytes`` has been pushed through if the first is offered at
``at_s``. Propagation delay (the round trip) is the link's business, not the channel's. The
constant-rate channel is SIEVE's model (bytes / bandwidth, thesis section 4.3.2); trace-driven
channels (:mod:`specedge.simulator.traces`) replay recorded capacity. One device sends one request
at a time, so transfers on a channel never overlap and a channel needs no queue: it is a pure
function of bytes and start time, and :meth:`Channel.transfer_many` prices a whole run at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from specedge.errors import ConfigError

__all__ = ["Channel", "ConstantRate"]


class Channel(Protocol):
    """What the replay needs from one direction of a link."""

    @property
    def mean_mbps(self) -> float:
        """Long-run capacity in Mbit/s."""

    def transfer(self, num_bytes: float, at_s: float) -> float:
        """When the last byte is through, for bytes offered at ``at_s`` (seconds)."""

    def transfer_many(self, num_bytes: np.ndarray, at_s: np.ndarray) -> np.ndarray:
        """:meth:`transfer` element-wise over arrays."""


@dataclass(frozen=True)
class ConstantRate:
    """A fixed bandwidth of ``rate_mbps`` megabits per second."""

    rate_mbps: float

    def __post_init__(self) -> None:
        if not (np.isfinite(self.rate_mbps) and self.rate_mbps > 0):
            raise ConfigError(f"a channel's rate must be a finite number of Mbps > 0; got {self.rate_mbps}")

    @property
    def mean_mbps(self) -> float:
        """The rate itself."""
        return self.rate_mbps

    def duration_s(self, num_bytes: np.ndarray) -> np.ndarray:
        """Seconds to push ``num_bytes`` through (independent of when)."""
        return np.asarray(num_bytes, dtype=np.float64) * 8 / (self.rate_mbps * 1e6)

    def transfer(self, num_bytes: float, at_s: float) -> float:
        """``at_s + num_bytes * 8 / rate``."""
        return at_s + num_bytes * 8 / (self.rate_mbps * 1e6)

    def transfer_many(self, num_bytes: np.ndarray, at_s: np.ndarray) -> np.ndarray:
        """:meth:`transfer` element-wise."""
        return np.asarray(np.asarray(at_s, dtype=np.float64) + self.duration_s(num_bytes))
