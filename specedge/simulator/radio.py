"""Radio energy with state: transfer power, RRC promotion, tails and 3G FACH.

SIEVE prices a transfer with Huang et al.'s linear power model (thesis section 4.3.2); a real
cellular radio also pays to wake up and stays awake after the last byte (anchors.md section 4):

    moving data:          P[mW] = a_u * U + a_d * D + b   (U, D in Mbps), so over a session
                          E[mJ] = a_u * Mbit_up + a_d * Mbit_down + b * t  (linear: exact for any rate)
    waking from idle:     a promotion of ``delay_s`` at ``power_mw`` before the first byte
    after the last byte:  the tail, a sequence of states (LTE: continuous reception, short DRX,
                          long DRX; 3G: DCH, FACH) each at its average power, then idle
    inside a tail:        a new transfer cuts the tail short, needs no promotion and restarts the
                          tail when it ends, so requests close together share one tail
    3G FACH:              inside the FACH state, a session whose uplink and downlink bytes fit
                          the RLC buffer thresholds is sent in FACH at FACH power (no promotion);
                          a larger one pays the FACH->DCH promotion first

Idle power (LTE paging, WiFi standby) is drawn whatever the device does, so it is left out: every
energy here is the radio's energy above idle, like Huang's measurements. While a request waits for
its answer (round trip and server time) the radio sits in its connected states with no data, so
that wait is priced by the tail's own power profile (:meth:`RadioProfile.wait_energy_mj`).

A session is classified by :func:`classify_sessions` from the gap since the previous session ended;
the stateful :class:`Radio` (one call per session, used by the reference replay) and the vectorised
replay share that function, so both make the same decisions. The named profiles live in
:mod:`specedge.simulator.radio_profiles`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import TypeVar

import numpy as np
from numpy.typing import ArrayLike

from specedge.errors import ConfigError

__all__ = [
    "CONNECTED",
    "FACH_PROMOTION",
    "FACH_SESSION",
    "IDLE_PROMOTION",
    "FachRules",
    "Promotion",
    "Radio",
    "RadioProfile",
    "SessionStart",
    "TailState",
    "TransferPowerModel",
    "classify_sessions",
]

#: A float or an array of them: the replay prices whole runs at once.
Num = TypeVar("Num", float, np.ndarray)

# Session categories (small ints so the vectorised replay can hold them in arrays).
IDLE_PROMOTION = 0  # the radio was idle: promotion from idle, then a connected session
CONNECTED = 1  # inside a tail's connected states: no promotion
FACH_SESSION = 2  # inside 3G FACH, small enough for the RLC buffers: stays in FACH
FACH_PROMOTION = 3  # inside 3G FACH, too large: FACH->DCH promotion, then a connected session

_BITS_PER_MBIT = 1e6


@dataclass(frozen=True)
class TransferPowerModel:
    """Huang 2012 linear power of a radio that is moving data: ``a_u * U + a_d * D + b``."""

    uplink_mw_per_mbps: float
    downlink_mw_per_mbps: float
    base_mw: float

    def power_mw(self, uplink_mbps: float, downlink_mbps: float) -> float:
        """Radio power while moving data at the given throughputs."""
        return self.uplink_mw_per_mbps * uplink_mbps + self.downlink_mw_per_mbps * downlink_mbps + self.base_mw

    def energy_mj(self, uplink_bytes: Num, downlink_bytes: Num, duration_s: Num) -> Num:
        """Energy of moving the bytes in ``duration_s`` (the model is linear, so any rate profile gives this)."""
        up_mbit = uplink_bytes * 8 / _BITS_PER_MBIT
        down_mbit = downlink_bytes * 8 / _BITS_PER_MBIT
        return self.uplink_mw_per_mbps * up_mbit + self.downlink_mw_per_mbps * down_mbit + self.base_mw * duration_s


@dataclass(frozen=True)
class Promotion:
    """A state promotion: the radio signals for ``delay_s`` at ``power_mw`` before data can move."""

    delay_s: float
    power_mw: float

    @property
    def energy_mj(self) -> float:
        """Energy of one promotion (mW x s = mJ)."""
        return self.delay_s * self.power_mw


@dataclass(frozen=True)
class TailState:
    """One state of the tail after the last byte, held ``duration_s`` at average ``power_mw``."""

    name: str
    duration_s: float
    power_mw: float


@dataclass(frozen=True)
class FachRules:
    """3G FACH behaviour (ARO's RRC model): RLC thresholds and the FACH->DCH promotion."""

    state: int  # index of the FACH state in the profile's tail
    uplink_threshold_bytes: int  # a session at most this large (and downlink likewise) stays in FACH
    downlink_threshold_bytes: int
    promotion: Promotion  # FACH -> DCH for a larger session


@dataclass(frozen=True)
class RadioProfile:
    """A radio's power model and RRC state machine, with where each number comes from.

    Args:
        name: the profile's name (e.g. ``"huang2012-lte"``).
        transfer: power while moving data.
        promotion: idle -> connected.
        tail: the states after the last byte, in order; empty for a radio without a tail.
        fach: 3G FACH rules, or None where the technology has no such state.
        source: the publication or file the profile follows.
        provenance: per parameter, its mark ([V] read from a public file or recomputed, [R] as
            cited in a paper's text, or "assumed") and origin; not part of equality.
    """

    name: str
    transfer: TransferPowerModel
    promotion: Promotion
    tail: tuple[TailState, ...]
    fach: FachRules | None
    source: str
    provenance: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        numbers = {
            "promotion.delay_s": self.promotion.delay_s,
            "promotion.power_mw": self.promotion.power_mw,
            "transfer.base_mw": self.transfer.base_mw,
            "transfer.uplink_mw_per_mbps": self.transfer.uplink_mw_per_mbps,
            "transfer.downlink_mw_per_mbps": self.transfer.downlink_mw_per_mbps,
            **{f"tail[{s.name}].duration_s": s.duration_s for s in self.tail},
            **{f"tail[{s.name}].power_mw": s.power_mw for s in self.tail},
        }
        bad = {k: v for k, v in numbers.items() if not (np.isfinite(v) and v >= 0)}
        if bad:
            raise ConfigError(f"radio profile {self.name!r}: values must be finite and >= 0; got {bad}")
        if self.fach is not None and not 0 <= self.fach.state < len(self.tail):
            raise ConfigError(
                f"radio profile {self.name!r}: FACH state index {self.fach.state} is outside its "
                f"{len(self.tail)} tail states"
            )

    # --- the tail as a piecewise-linear energy curve -------------------------------------------

    @cached_property
    def _curves(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per starting state: cumulative (time s, energy mJ) at the state boundaries."""
        starts = {0} | ({self.fach.state} if self.fach is not None else set())
        curves = {}
        for start in starts:
            states = self.tail[start:]
            times = np.concatenate([[0.0], np.cumsum([s.duration_s for s in states])])
            energies = np.concatenate([[0.0], np.cumsum([s.duration_s * s.power_mw for s in states])])
            curves[start] = (times, energies)
        return curves

    def tail_s(self, from_state: int = 0) -> float:
        """Length of the tail entered at state ``from_state`` (0: after a connected session)."""
        return float(self._curves[from_state][0][-1])

    def tail_energy_mj(self, elapsed_s: ArrayLike, from_state: int = 0) -> np.ndarray:
        """Tail energy spent ``elapsed_s`` after the last byte (the whole tail once it has ended)."""
        times, energies = self._curves[from_state]
        return np.asarray(np.interp(np.asarray(elapsed_s, dtype=np.float64), times, energies), dtype=np.float64)

    def fach_offset_s(self, from_state: int) -> float:
        """When the FACH state begins, measured from entering the tail at ``from_state``."""
        if self.fach is None:
            raise ConfigError(f"radio profile {self.name!r} has no FACH state")
        return float(sum(s.duration_s for s in self.tail[from_state : self.fach.state]))

    # --- energy of one session by category -------------------------------------------------------

    def _fach_power_mw(self) -> float:
        return self.tail[self.fach.state].power_mw if self.fach is not None else 0.0

    def promotion_s(self, category: np.ndarray) -> np.ndarray:
        """Promotion delay of sessions of the given categories."""
        fach_delay = self.fach.promotion.delay_s if self.fach is not None else 0.0
        return np.select(
            [category == IDLE_PROMOTION, category == FACH_PROMOTION], [self.promotion.delay_s, fach_delay], 0.0
        )

    def promotion_mj(self, category: np.ndarray) -> np.ndarray:
        """Promotion energy of sessions of the given categories."""
        fach_energy = self.fach.promotion.energy_mj if self.fach is not None else 0.0
        return np.select(
            [category == IDLE_PROMOTION, category == FACH_PROMOTION], [self.promotion.energy_mj, fach_energy], 0.0
        )

    def transfer_energy_mj(
        self, uplink_bytes: np.ndarray, downlink_bytes: np.ndarray, duration_s: np.ndarray, category: np.ndarray
    ) -> np.ndarray:
        """Energy of moving data: Huang's model, or flat FACH power for a FACH session."""
        huang = self.transfer.energy_mj(uplink_bytes, downlink_bytes, duration_s)
        return np.where(category == FACH_SESSION, self._fach_power_mw() * duration_s, huang)

    def wait_energy_mj(self, wait_s: np.ndarray, category: np.ndarray) -> np.ndarray:
        """Energy while connected with no data (round trip, server time): the tail's power profile."""
        connected = self.tail_energy_mj(np.asarray(wait_s, dtype=np.float64))
        return np.where(category == FACH_SESSION, self._fach_power_mw() * wait_s, connected)


def classify_sessions(
    profile: RadioProfile,
    gap_s: np.ndarray,
    small: np.ndarray,
    previous_in_fach: np.ndarray,
) -> np.ndarray:
    """Category of each session from the time since the previous session ended.

    Args:
        profile: the radio.
        gap_s: seconds from the end of the previous session (``inf`` for the first one).
        small: whether the session's uplink and downlink bytes fit the FACH RLC thresholds.
        previous_in_fach: whether the previous session ran in FACH (its tail then starts in FACH).

    Returns:
        One of IDLE_PROMOTION, CONNECTED, FACH_SESSION, FACH_PROMOTION per session.
    """
    gap_s = np.asarray(gap_s, dtype=np.float64)
    if profile.fach is None:
        return np.where(gap_s >= profile.tail_s(0), IDLE_PROMOTION, CONNECTED)
    fach = profile.fach.state
    remaining = np.where(previous_in_fach, profile.tail_s(fach), profile.tail_s(0))
    fach_begins = np.where(previous_in_fach, 0.0, profile.fach_offset_s(0))
    idle = gap_s >= remaining
    in_fach = ~idle & (gap_s >= fach_begins)
    return np.select(
        [idle, in_fach & small, in_fach],
        [IDLE_PROMOTION, FACH_SESSION, FACH_PROMOTION],
        CONNECTED,
    )


@dataclass(frozen=True)
class SessionStart:
    """What waking the radio for one session costs, and what the previous tail cost until now."""

    category: int
    promotion_s: float
    promotion_mj: float
    previous_tail_mj: float  # the tail of the previous session, cut short at this session's start


class Radio:
    """One device's radio driven through time, one session (upload, wait, download) at a time.

    Call :meth:`begin` when a session's first byte is ready, :meth:`end` after its last byte, and
    :meth:`finish` once no session follows, to collect the final tail. Time is passed in; sessions
    must not overlap (one device talks to the cloud one request at a time).
    """

    def __init__(self, profile: RadioProfile) -> None:
        self.profile = profile
        self._last_end_s: float | None = None
        self._last_in_fach = False
        self._open: int | None = None  # category of the session in progress

    def begin(self, at_s: float, *, uplink_bytes: float, downlink_bytes: float) -> SessionStart:
        """Start a session at ``at_s``: classify it, price its promotion and the tail it cuts short."""
        if self._open is not None:
            raise ConfigError(f"radio session started at {at_s} s while another one is still open")
        gap_s = np.inf if self._last_end_s is None else at_s - self._last_end_s
        if gap_s < 0:
            raise ConfigError(
                f"radio session starts at {at_s} s, before the previous one ended at {self._last_end_s} s"
            )
        category = self._classify(gap_s, uplink_bytes=uplink_bytes, downlink_bytes=downlink_bytes)
        previous_tail_mj = 0.0 if self._last_end_s is None else self._tail_mj(gap_s)
        self._open = category
        promotion = {IDLE_PROMOTION: self.profile.promotion}
        if self.profile.fach is not None:
            promotion[FACH_PROMOTION] = self.profile.fach.promotion
        paid = promotion.get(category)
        return SessionStart(
            category=category,
            promotion_s=0.0 if paid is None else paid.delay_s,
            promotion_mj=0.0 if paid is None else paid.energy_mj,
            previous_tail_mj=previous_tail_mj,
        )

    def _classify(self, gap_s: float, *, uplink_bytes: float, downlink_bytes: float) -> int:
        """:func:`classify_sessions` for one session, without arrays (the reference replay calls it per request).

        The vectorised replay uses :func:`classify_sessions` itself; tests hold the two replays equal.
        """
        profile, fach = self.profile, self.profile.fach
        if fach is None:
            return IDLE_PROMOTION if gap_s >= profile.tail_s(0) else CONNECTED
        remaining = profile.tail_s(fach.state) if self._last_in_fach else profile.tail_s(0)
        if gap_s >= remaining:
            return IDLE_PROMOTION
        fach_begins = 0.0 if self._last_in_fach else profile.fach_offset_s(0)
        if gap_s < fach_begins:
            return CONNECTED
        small = uplink_bytes <= fach.uplink_threshold_bytes and downlink_bytes <= fach.downlink_threshold_bytes
        return FACH_SESSION if small else FACH_PROMOTION

    def end(self, at_s: float) -> None:
        """The session's last byte arrived at ``at_s``: its tail starts."""
        if self._open is None:
            raise ConfigError(f"radio session ended at {at_s} s but none was open")
        self._last_in_fach = self._open == FACH_SESSION
        self._last_end_s = at_s
        self._open = None

    def finish(self) -> float:
        """Energy of the whole tail after the last session (0 if there was none); the radio is idle after."""
        if self._open is not None:
            raise ConfigError("cannot finish the radio while a session is open; call end() first")
        energy = 0.0 if self._last_end_s is None else self._tail_mj(np.inf)
        self._last_end_s = None
        self._last_in_fach = False
        return energy

    def _tail_mj(self, elapsed_s: float) -> float:
        from_state = self.profile.fach.state if self._last_in_fach and self.profile.fach is not None else 0
        return float(self.profile.tail_energy_mj(elapsed_s, from_state))
