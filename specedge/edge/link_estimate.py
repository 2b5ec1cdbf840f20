"""The edge's live estimate of its link to the cloud: ``L_t`` and ``E_t`` of one escalation now.

SIEVE prices an escalation with the link's round trip, its bandwidth and the radio's power model
(thesis section 4.3.2). A profile's numbers are a guess about a link the device has not measured
yet; this estimate starts from a :class:`~specedge.simulator.links.LinkProfile` and learns from the
calls the edge makes anyway:

* a probe (``ServerReady``: a few hundred bytes on the wire) is an RTT sample, after the small byte
  time of its framing at the current bandwidth estimate;
* an escalation's network time is its round trip minus the server's queue and compute time; the
  part above the RTT estimate is the time its wire bytes took, a bandwidth sample.

Update rule (``a`` = ``smoothing``): ``rtt <- (1 - a) rtt + a sample`` for probes; bandwidth keeps the
profile's up/down ratio and learns one *slowness* ``s`` (seconds per second the seed rates would
take; rates are ``seed / s``): ``s <- (1 - a) s + a (network - rtt) / seed_byte_time``. Averaging
slowness rather than rate keeps the EWMA linear in time, so a sample whose byte time drowns in RTT
jitter moves a prediction by no more than that jitter; ``s`` is kept within [1/100, 100] of the seed.
One scale factor, not two: a ModelInfer's request and reply sizes are fixed by the model, so up
and down byte times cannot be told apart from round trips alone. Non-finite or negative
observations are ignored and counted (``ignored``), never averaged in.

Radio energy reuses the simulator's model (:class:`~specedge.simulator.radio.Radio` and
:func:`~specedge.simulator.replay_reference.session_energies`) on a copy of the radio's state, so a
prediction matches what ``replay(..., kind="realistic")`` charges the same request. Connection
set-up (TCP/TLS handshakes) is left out: the edge keeps its gRPC channel open and its warm-up call
opened it.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np

from specedge.errors import ConfigError
from specedge.simulator.links import LinkProfile
from specedge.simulator.radio import Radio
from specedge.simulator.replay_reference import session_energies

__all__ = ["LinkEstimate"]

_MIN_SLOWNESS = 1e-2  # the link may turn out 100x faster or slower than its profile, no more
_MAX_SLOWNESS = 1e2
_BITS_PER_MBIT = 1e6


def _ewma(old: float, sample: float, smoothing: float) -> float:
    return (1 - smoothing) * old + smoothing * sample


def _usable(*values: float) -> bool:
    """Whether every value is a finite number >= 0 (a measurement worth learning from)."""
    return all(math.isfinite(v) and v >= 0 for v in values)


class LinkEstimate:
    """RTT and bandwidth learned by EWMA from observed calls, seeded from a link profile.

    Args:
        profile: the seed: RTT, channel mean rates, wire framing and radio of the expected link.
        smoothing: EWMA weight of a new sample, in (0, 1]; 0.2 forgets a sample after ~10 more.

    Time (``at_s``, ``start_s``, ``end_s``) is in seconds on the caller's clock.
    """

    def __init__(self, profile: LinkProfile, *, smoothing: float = 0.2) -> None:
        if not 0 < smoothing <= 1:
            raise ConfigError(f"smoothing must be in (0, 1]; got {smoothing}")
        self.profile = profile
        self.smoothing = smoothing
        self._seed_up_mbps = float(profile.uplink.mean_mbps)
        self._seed_down_mbps = float(profile.downlink.mean_mbps)
        self._rtt_s = profile.rtt_s
        self._slowness = 1.0
        self._radio = Radio(profile.radio)
        self._last_end_s = -math.inf
        self.samples = 0  # observations learned from
        self.ignored = 0  # observations rejected as non-finite, negative or impossible
        self._transfers = 0  # sessions marked; with samples, what state_key() changes with

    # --- what it knows -------------------------------------------------------------------------

    @property
    def rtt_s(self) -> float:
        """Round-trip propagation time, seconds."""
        return self._rtt_s

    @property
    def uplink_mbps(self) -> float:
        """Uplink rate, Mbit/s."""
        return self._seed_up_mbps / self._slowness

    @property
    def downlink_mbps(self) -> float:
        """Downlink rate, Mbit/s."""
        return self._seed_down_mbps / self._slowness

    # --- predictions ---------------------------------------------------------------------------

    def _wire(self, request_bytes: float, response_bytes: float) -> tuple[float, float]:
        up, down = self.profile.connection.wire_bytes(request_bytes, response_bytes)
        return float(up), float(down)

    def _seed_byte_s(self, request_bytes: float, response_bytes: float) -> float:
        """Seconds the wire bytes of one call take at the seed rates."""
        up, down = self._wire(request_bytes, response_bytes)
        return up * 8 / (self._seed_up_mbps * _BITS_PER_MBIT) + down * 8 / (self._seed_down_mbps * _BITS_PER_MBIT)

    def transfer_s(self, request_bytes: float, response_bytes: float, *, at_s: float | None = None) -> float:
        """The network part of ``L_t``: RTT plus the wire bytes at the estimated rates.

        Message sizes are serialised bytes (``CloudResponse.request_bytes``); ``at_s`` adds the radio's
        promotion delay for a call starting then (see :meth:`wake_s`).
        """
        wake_s = 0.0 if at_s is None else self.wake_s(at_s)
        return wake_s + self._rtt_s + self._seed_byte_s(request_bytes, response_bytes) * self._slowness

    def round_trip_s(
        self, request_bytes: float, response_bytes: float, server_s: float, *, at_s: float | None = None
    ) -> float:
        """The client-side round trip of one call: :meth:`transfer_s` plus the server's queue and compute."""
        return self.transfer_s(request_bytes, response_bytes, at_s=at_s) + server_s

    def wake_s(self, at_s: float) -> float:
        """Promotion delay a call starting at ``at_s`` pays (0 inside the previous transfer's tail)."""
        radio = copy.copy(self._radio)
        return radio.begin(max(at_s, self._last_end_s), uplink_bytes=math.inf, downlink_bytes=math.inf).promotion_s

    def transfer_energy_mj(
        self, request_bytes: float, response_bytes: float, *, at_s: float, server_s: float = 0.0
    ) -> float:
        """``E_t``: the radio energy one call starting at ``at_s`` adds, given the transfers marked so far.

        Promotion if the radio has gone idle (none inside a tail), transfer power over the upload
        and download at the estimated rates, connected-state power while waiting RTT + ``server_s``
        for the reply, and the new tail minus what is left of the previous one (paid anyway).
        """
        up, down = self._wire(request_bytes, response_bytes)
        start_s = max(at_s, self._last_end_s)
        before = copy.copy(self._radio)
        previous_tail_mj = copy.copy(before).finish()  # the previous tail in full: what not calling costs
        radio = before
        wake = radio.begin(start_s, uplink_bytes=up, downlink_bytes=down)
        upload_s = up * 8 / (self.uplink_mbps * _BITS_PER_MBIT)
        download_s = down * 8 / (self.downlink_mbps * _BITS_PER_MBIT)
        wait_s = self._rtt_s + server_s
        parts = session_energies(
            "realistic",
            self.profile.radio,
            np.array([wake.category]),
            request_bytes=np.array([up]),
            response_bytes=np.array([down]),
            upload_s=np.array([upload_s]),
            download_s=np.array([download_s]),
            wait_s=np.array([wait_s]),
            handshake=np.array([False]),
            setup_bytes=(0, 0),
            setup_moving_s=np.zeros(1),
            setup_wait_s=0.0,
        )
        radio.end(start_s + wake.promotion_s + upload_s + wait_s + download_s)
        new_tail_mj = radio.finish()
        extra_tail_mj = new_tail_mj - (previous_tail_mj - wake.previous_tail_mj)
        return float(sum(float(v[0]) for v in parts.values())) + extra_tail_mj

    # --- learning ------------------------------------------------------------------------------

    def observe_probe(self, round_trip_s: float, *, at_s: float | None = None) -> None:
        """A probe's round trip (tiny messages): an RTT sample. ``at_s``: when it started, to discount a promotion."""
        if not _usable(round_trip_s) or (at_s is not None and not math.isfinite(at_s)):
            self.ignored += 1
            return
        wake_s = 0.0 if at_s is None else self.wake_s(at_s)
        framing_s = self._seed_byte_s(0, 0) * self._slowness
        self._rtt_s = _ewma(self._rtt_s, max(round_trip_s - wake_s - framing_s, 0.0), self.smoothing)
        self.samples += 1

    def observe(
        self,
        request_bytes: float,
        response_bytes: float,
        round_trip_s: float,
        server_s: float,
        *,
        at_s: float | None = None,
    ) -> None:
        """A completed call: its network time above the RTT estimate is a bandwidth sample.

        ``server_s`` is the server's queue + compute time; ``at_s`` (when the call started) lets a
        promotion delay be discounted. Call before :meth:`mark_transfer` of the same call.
        """
        usable = _usable(request_bytes, response_bytes, round_trip_s, server_s) and server_s <= round_trip_s
        if not usable or (at_s is not None and not math.isfinite(at_s)):
            self.ignored += 1
            return
        wake_s = 0.0 if at_s is None else self.wake_s(at_s)
        bytes_s = round_trip_s - server_s - wake_s - self._rtt_s
        slowness = bytes_s / self._seed_byte_s(request_bytes, response_bytes)
        self._slowness = _ewma(self._slowness, min(max(slowness, _MIN_SLOWNESS), _MAX_SLOWNESS), self.smoothing)
        self.samples += 1

    def mark_transfer(
        self,
        start_s: float,
        end_s: float,
        *,
        request_bytes: float | None = None,
        response_bytes: float | None = None,
    ) -> None:
        """A radio session (call or probe) ran from ``start_s`` to ``end_s``: the radio's state for ``E_t``.

        The message sizes matter only for 3G FACH rules (a session small enough stays in FACH);
        None counts as too large, as any image is.
        """
        if not (math.isfinite(start_s) and math.isfinite(end_s) and end_s >= start_s and end_s >= self._last_end_s):
            self.ignored += 1
            return
        up, down = math.inf, math.inf
        if request_bytes is not None and response_bytes is not None:
            up, down = self._wire(request_bytes, response_bytes)
        self._radio.begin(max(start_s, self._last_end_s), uplink_bytes=up, downlink_bytes=down)  # no overlaps
        self._radio.end(end_s)
        self._last_end_s = end_s
        self._transfers += 1

    def state_key(self, at_s: float, *, resolution_s: float = 0.005) -> tuple[int, int, float]:
        """A key under which predictions for a call at ``at_s`` stay the same, for callers that cache them.

        Predictions change with every observation and marked transfer, and with time only while the
        radio is in a tail (promotion and remaining tail depend on the gap): then the key moves every
        ``resolution_s``; once the radio is idle, time no longer matters.
        """
        gap_s = at_s - self._last_end_s
        idle = gap_s >= self.profile.radio.tail_s(0)
        return self.samples, self._transfers, -1.0 if idle else math.floor(at_s / resolution_s) * resolution_s

    def to_dict(self) -> dict[str, Any]:
        """The estimate and its seed, for logs."""
        return {
            "profile": self.profile.name,
            "rtt_s": self._rtt_s,
            "uplink_mbps": self.uplink_mbps,
            "downlink_mbps": self.downlink_mbps,
            "seed_rtt_s": self.profile.rtt_s,
            "seed_uplink_mbps": self._seed_up_mbps,
            "seed_downlink_mbps": self._seed_down_mbps,
            "smoothing": self.smoothing,
            "samples": self.samples,
            "ignored": self.ignored,
        }
