"""Is the cloud worth calling now? Server-load detection and failure back-off, as a state machine.

SIEVE suspends recovery when the server is overloaded (thesis section 4.4) and M&MNet runs the
master on the device instead; both need the edge to notice, from its own calls, that the cloud
has become slow or has failed, and to find out when it is back without hammering it:

    HEALTHY --(slow_after consecutive round trips > predicted x slow_factor + slow_margin_s)--> SLOW
    any     --(a call fails: unavailable, timeout, overloaded)--> DOWN, next probe after a back-off
    SLOW    --(probe answered within expectation)--> HEALTHY; (still slow)--> SLOW, probe again later
    DOWN    --(probe answered within expectation)--> HEALTHY; (answered, slow)--> SLOW

While SLOW or DOWN, :meth:`CloudHealth.allow` says yes only once a probe is due; the caller then
sends that escalation (or a ``CloudClient.probe``) as the probe and reports how it went. DOWN backs
off exponentially (``backoff_initial_s`` doubling per consecutive failure, capped at
``backoff_max_s``); SLOW probes every ``probe_interval_s``. A *rejected* or *protocol* failure is
about the request (bad input, unknown model, a malformed reply), not the server's health: it is
counted in ``request_failures`` and changes no state.

Pure logic: time is passed in (seconds on the runtime's clock); nothing sleeps or reads a clock.
"""

from __future__ import annotations

import math
from enum import Enum

from specedge.errors import ConfigError

__all__ = ["REQUEST_FAILURES", "SERVER_FAILURES", "CloudHealth", "HealthState"]

#: Failure kinds (``CloudError.kind``) that say the server is unreachable, failing or overloaded.
SERVER_FAILURES = frozenset({"unavailable", "timeout", "overloaded"})
#: Failure kinds that concern one request; the server answered, so its health is unchanged.
REQUEST_FAILURES = frozenset({"rejected", "protocol"})


class HealthState(str, Enum):
    """What the edge believes about the cloud."""

    HEALTHY = "healthy"  # call it whenever the policy wants to
    SLOW = "slow"  # answers, but far slower than the link estimate predicts: server load
    DOWN = "down"  # the last call failed for the server's sake


class CloudHealth:
    """The cloud's health as seen from the edge, driven by the outcome of each call.

    Args:
        slow_factor: a round trip is slow above ``predicted x slow_factor + slow_margin_s``.
        slow_margin_s: absolute slack, seconds (keeps tiny predictions from flagging jitter).
        slow_after: consecutive slow round trips before the cloud counts as SLOW.
        backoff_initial_s: wait before the first probe after a failure, seconds.
        backoff_max_s: the longest wait between probes while DOWN, seconds.
        probe_interval_s: wait between probes while SLOW, seconds.
    """

    def __init__(
        self,
        *,
        slow_factor: float = 3.0,
        slow_margin_s: float = 0.05,
        slow_after: int = 2,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        probe_interval_s: float = 1.0,
    ) -> None:
        bad = {
            name: value
            for name, value, ok in (
                ("slow_factor", slow_factor, slow_factor >= 1),
                ("slow_margin_s", slow_margin_s, slow_margin_s >= 0),
                ("slow_after", slow_after, slow_after >= 1),
                ("backoff_initial_s", backoff_initial_s, backoff_initial_s > 0),
                ("backoff_max_s", backoff_max_s, backoff_max_s >= backoff_initial_s),
                ("probe_interval_s", probe_interval_s, probe_interval_s > 0),
            )
            if not (ok and math.isfinite(value))
        }
        if bad:
            raise ConfigError(
                f"invalid cloud health settings {bad}; need slow_factor >= 1, slow_margin_s >= 0, slow_after >= 1, "
                "0 < backoff_initial_s <= backoff_max_s and probe_interval_s > 0 (finite seconds)"
            )
        self.slow_factor = slow_factor
        self.slow_margin_s = slow_margin_s
        self.slow_after = slow_after
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.probe_interval_s = probe_interval_s
        self.state = HealthState.HEALTHY
        self.since_s: float | None = None  # when the current state began (None: from the start)
        self.next_probe_s: float | None = None  # when SLOW or DOWN: the earliest time for a probe
        self.failures = 0  # consecutive server failures (the back-off exponent); 0 once a call succeeds
        self.request_failures = 0  # rejected/protocol failures, in total; they leave the state alone
        self.slow_streak = 0  # consecutive slow round trips while HEALTHY
        self.last_failure: str | None = None  # kind of the last server failure

    def allow(self, now_s: float) -> bool:
        """Whether the next escalation may go to the cloud: always when HEALTHY, else once a probe is due."""
        if self.state is HealthState.HEALTHY:
            return True
        return self.next_probe_s is not None and now_s >= self.next_probe_s

    def record_success(self, now_s: float, round_trip_s: float, predicted_s: float) -> None:
        """A call (or probe) answered after ``round_trip_s``; ``predicted_s`` is what the link estimate expected."""
        self.failures = 0
        slow = (
            math.isfinite(round_trip_s)
            and math.isfinite(predicted_s)
            and round_trip_s > predicted_s * self.slow_factor + self.slow_margin_s
        )
        if not slow:
            self.slow_streak = 0
            self._enter(HealthState.HEALTHY, now_s, next_probe_s=None)
        elif self.state is HealthState.HEALTHY:
            self.slow_streak += 1
            if self.slow_streak >= self.slow_after:
                self._enter(HealthState.SLOW, now_s, next_probe_s=now_s + self.probe_interval_s)
        else:  # a probe answered, but slowly: the server is up and still loaded
            self._enter(HealthState.SLOW, now_s, next_probe_s=now_s + self.probe_interval_s)

    def record_failure(self, now_s: float, kind: str) -> None:
        """A call (or probe) failed with ``kind`` (``CloudError.kind``)."""
        if kind in REQUEST_FAILURES:
            self.request_failures += 1  # about this request: the server answered, its health is unchanged
            return
        if kind not in SERVER_FAILURES:
            kinds = ", ".join(sorted(SERVER_FAILURES | REQUEST_FAILURES))
            raise ConfigError(f"unknown cloud failure kind {kind!r}; expected one of: {kinds}")
        self.failures += 1
        self.slow_streak = 0
        self.last_failure = kind
        self._enter(HealthState.DOWN, now_s, next_probe_s=now_s + self.backoff_s)

    @property
    def backoff_s(self) -> float:
        """The wait before the next probe after ``failures`` consecutive failures (0 when none)."""
        if self.failures == 0:
            return 0.0
        return min(self.backoff_initial_s * 2.0 ** min(self.failures - 1, 1023), self.backoff_max_s)

    def _enter(self, state: HealthState, now_s: float, *, next_probe_s: float | None) -> None:
        if state is not self.state:
            self.since_s = now_s
        self.state = state
        self.next_probe_s = next_probe_s

    def describe(self) -> str:
        """One line for logs, e.g. ``down since 3.2 s after 2 failures (last: timeout); next probe at 4.2 s``."""
        if self.state is HealthState.HEALTHY:
            return "healthy"
        since = "" if self.since_s is None else f" since {self.since_s:.3f} s"
        probe = f"; next probe at {self.next_probe_s:.3f} s"
        if self.state is HealthState.SLOW:
            limit = f"{self.slow_factor:g}x prediction + {self.slow_margin_s * 1e3:g} ms"
            return f"slow{since}: round trips above {limit}{probe}"
        return f"down{since} after {self.failures} failure(s) (last: {self.last_failure}){probe}"
