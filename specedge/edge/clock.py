"""The runtime's clock: seconds from a monotonic source, injectable so tests can drive time.

Every time-dependent rule of the edge (speculation history windows, probe back-off, deadlines,
the radio's idle timer in the link estimate) reads one clock. Production uses
:func:`time.perf_counter`; tests use :class:`ManualClock`, which adds manual jumps to real
time, so a test can step over a 30 s back-off without sleeping while the real gRPC timeouts
(which gRPC enforces in wall time) still behave.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from specedge.errors import ConfigError

__all__ = ["Clock", "ManualClock"]

#: Seconds on a monotonic scale; only differences mean anything.
Clock = Callable[[], float]


class ManualClock:
    """Real monotonic time plus jumps made with :meth:`advance` (or frozen real time with ``real=False``)."""

    def __init__(self, *, real: bool = True, start_s: float = 0.0) -> None:
        self._real = real
        self._origin_s = time.perf_counter()
        self._offset_s = start_s

    def __call__(self) -> float:
        """Seconds: the start, plus real time elapsed (if real), plus every jump."""
        elapsed = time.perf_counter() - self._origin_s if self._real else 0.0
        return self._offset_s + elapsed

    def advance(self, seconds: float) -> None:
        """Jump forward by ``seconds`` (>= 0)."""
        if not seconds >= 0:
            raise ConfigError(f"a clock only moves forward; got {seconds} s")
        self._offset_s += seconds
