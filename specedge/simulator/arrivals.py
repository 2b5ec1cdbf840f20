"""When requests arrive: a camera's frame rate, a Poisson process, or a recorded run's timestamps.

The replay (:mod:`specedge.simulator.replay`) takes arrival times as an array in seconds; these
helpers make one. Random arrivals draw from a ``numpy.random.Generator`` the caller passes in, so
the same seed gives the same run (nothing here reads the clock or global state).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from specedge.errors import ConfigError

__all__ = ["constant_rate_arrivals", "poisson_arrivals", "recorded_arrivals"]


def _check(num_requests: int, rate_hz: float) -> None:
    if num_requests < 0:
        raise ConfigError(f"number of requests must be >= 0; got {num_requests}")
    if not (np.isfinite(rate_hz) and rate_hz > 0):
        raise ConfigError(f"arrival rate must be a finite number of Hz > 0; got {rate_hz}")


def constant_rate_arrivals(num_requests: int, *, rate_hz: float, start_s: float = 0.0) -> np.ndarray:
    """A camera at ``rate_hz`` frames per second: ``start_s + i / rate_hz``."""
    _check(num_requests, rate_hz)
    return start_s + np.arange(num_requests, dtype=np.float64) / rate_hz


def poisson_arrivals(
    num_requests: int, *, rate_hz: float, rng: np.random.Generator, start_s: float = 0.0
) -> np.ndarray:
    """A Poisson process of ``rate_hz``: exponential gaps drawn from ``rng``, the first after ``start_s``."""
    _check(num_requests, rate_hz)
    return start_s + np.cumsum(rng.exponential(1.0 / rate_hz, size=num_requests))


def recorded_arrivals(timestamps_s: ArrayLike, *, from_zero: bool = True) -> np.ndarray:
    """The timestamps of a recorded run (seconds), validated; shifted to start at 0 if ``from_zero``."""
    times = np.asarray(timestamps_s, dtype=np.float64)
    if times.ndim != 1:
        raise ConfigError(f"recorded timestamps must be a 1-D sequence of seconds; got shape {times.shape}")
    if not np.all(np.isfinite(times)):
        raise ConfigError(
            f"recorded timestamps must be finite; first bad one at index {np.flatnonzero(~np.isfinite(times))[0]}"
        )
    drops = np.flatnonzero(np.diff(times) < 0)
    if len(drops):
        i = int(drops[0])
        raise ConfigError(
            f"recorded timestamps must not decrease; index {i + 1} ({times[i + 1]:g} s) comes before "
            f"index {i} ({times[i]:g} s)"
        )
    return times - times[0] if from_zero and len(times) else times
