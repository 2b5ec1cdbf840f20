"""When a chunk of real bytes comes out of the far end of an emulated link (pure: no sockets, no clock).

The link emulator (:mod:`specedge.emulator.proxy`) asks one :class:`DirectionScheduler` per
direction when each chunk it read may be written on the other side. The answer reuses the
simulator's link model rather than re-deriving it:

* capacity is a :class:`~specedge.simulator.channels.Channel` (``ConstantRate``, SIEVE's
  bytes / bandwidth, or a :class:`~specedge.simulator.traces.TraceChannel` replaying a Mahimahi or
  time/throughput trace); ``channel.transfer(num_bytes, start_s)`` says when the last byte is through;
* chunks of one direction share the channel one after another: a chunk starts transmitting at
  ``max(arrival, previous chunk's end)``, so chunks leave in arrival order (a FIFO bottleneck queue,
  as in Mahimahi's ``link_queue``);
* then the one-way propagation delay, half of :attr:`LinkProfile.rtt_ms
  <specedge.simulator.links.LinkProfile.rtt_ms>`, is added (the simulator charges the round trip
  once per request; split evenly it gives the same total).

Radio promotion (:mod:`specedge.simulator.radio`) is optional and off by default. When on, the two
directions share one :class:`RadioWakeup`: data offered after the radio has been quiet for at
least its tail (``profile.tail_s(0)``), or before any data at all, waits ``profile.promotion.delay_s``
once. Simplifications, next to the simulator's :func:`~specedge.simulator.radio.classify_sessions`:
3G FACH states are ignored (a gap shorter than the tail counts as connected, a longer one as idle),
and activity is measured on the channel (a chunk keeps the radio busy until its transmission ends,
propagation delay excluded), not per request/response session.

All times are seconds since the emulator started; callers pass them in, so schedules are
deterministic and testable against hand-computed ones.
"""

from __future__ import annotations

import math

from specedge.errors import ConfigError
from specedge.simulator.channels import Channel
from specedge.simulator.radio import RadioProfile

__all__ = ["DirectionScheduler", "RadioWakeup"]


class RadioWakeup:
    """One radio's idle/connected state, shared by both directions of a link.

    Args:
        profile: the radio; its promotion delay and the length of its tail (entered at state 0)
            are used, its FACH rules and powers are not.
    """

    def __init__(self, profile: RadioProfile) -> None:
        self.profile = profile
        self.promotion_s = profile.promotion.delay_s
        self.tail_s = profile.tail_s(0)
        self.promotions = 0
        self._busy_until_s = -math.inf  # last instant the radio moved data (-inf: never)
        self._ready_s = -math.inf  # end of the latest promotion

    def ready_s(self, arrival_s: float) -> float:
        """Earliest time data offered at ``arrival_s`` can start moving; pays a promotion if the radio is idle."""
        idle = arrival_s - self._busy_until_s >= self.tail_s and arrival_s >= self._ready_s
        if idle:
            self._ready_s = arrival_s + self.promotion_s
            self.promotions += 1
        return max(arrival_s, self._ready_s)

    def busy_until(self, end_s: float) -> None:
        """Data moves until ``end_s``: the tail restarts from there."""
        self._busy_until_s = max(self._busy_until_s, end_s)


class DirectionScheduler:
    """Delivery times for the chunks of one direction of a link, in arrival order.

    Args:
        channel: the direction's capacity (``link.uplink`` or ``link.downlink``).
        delay_s: one-way propagation delay added after transmission, in seconds (``rtt_s / 2``).
        radio: the radio shared with the other direction, or None for no promotions.
    """

    def __init__(self, channel: Channel, *, delay_s: float, radio: RadioWakeup | None = None) -> None:
        if not (math.isfinite(delay_s) and delay_s >= 0):
            raise ConfigError(f"one-way delay must be a finite number of seconds >= 0; got {delay_s}")
        self.channel = channel
        self.delay_s = delay_s
        self.radio = radio
        self._free_s = -math.inf  # when the channel finishes the chunks scheduled so far

    def deliver_s(self, num_bytes: int, arrival_s: float) -> float:
        """When a chunk of ``num_bytes`` that reached the emulator at ``arrival_s`` reaches the far side.

        Calls must come in arrival order; the answers are then non-decreasing (order is preserved).
        A zero-byte chunk (an end of stream) takes no capacity and wakes no radio: it is delivered
        right after the chunks before it.
        """
        if num_bytes < 0:
            raise ConfigError(f"a chunk cannot have a negative size; got {num_bytes} bytes")
        start_s = max(arrival_s, self._free_s)
        if num_bytes == 0:
            return start_s + self.delay_s
        if self.radio is not None:
            start_s = max(start_s, self.radio.ready_s(arrival_s))
        done_s = self.channel.transfer(num_bytes, start_s)
        self._free_s = done_s
        if self.radio is not None:
            self.radio.busy_until(done_s)
        return done_s + self.delay_s
