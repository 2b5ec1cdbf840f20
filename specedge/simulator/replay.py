"""Replay one device's requests in time order over a link: latency and energy per request.

This is the simulator's core (thesis section 4.3.2 for SIEVE's cost model,
4.5.8 for its "realistic" variant). Each request arrives, waits while the device is busy with
earlier work, runs its local compute, and, if it goes to the cloud, holds the device through one
radio session::

    [queue] [local] [promotion] [handshake] [upload] [RTT/2 + server + RTT/2 = wait] [download]

The device answers one request at a time (``CloudClient.infer`` blocks), so sessions never
overlap. After a session the radio's tail runs until the next session cuts it short (that part
of the tail is charged to the request it follows) or, after the last one, in full (charged to the
last cloud request and reported as ``final_tail_mj`` too). Every array of the result sums to the
run's total; nothing is counted twice.

Two model kinds:

* ``"simple"``: SIEVE's transfer model: bytes / bandwidth + RTT, Huang's transfer power while
  moving data and its base power ``b`` while waiting; no promotion, tail or handshake.
* ``"realistic"``: the radio's state machine (promotion, tails shared between close requests, 3G
  FACH), the connection's handshakes (once per kept-open connection) and the wait priced by the
  radio's connected-state power. Traces come in through the link's channels; input compression
  through smaller ``request_bytes`` (:func:`specedge.simulator.wire.compressed_request_bytes`).

Simplifications, all small at the sizes SpecEdge sends: energies are above idle (device and radio
idle power is paid whatever the strategy); no DRX wake-up delay inside an LTE tail; a wait longer
than the whole tail costs the whole tail and the reply needs no new promotion; a 3G FACH session
moves its few hundred bytes at the link's rate, not FACH's lower one.

:func:`replay_reference` is the sequential definition (a plain loop over requests driving a
:class:`~specedge.simulator.radio.Radio`; any channel). :func:`replay` uses the vectorised
:func:`~specedge.simulator.replay_fast.replay_vectorised` when both channels have constant rates
and the reference otherwise; tests check that the two agree.
"""

from __future__ import annotations

from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import LinkProfile
from specedge.simulator.replay_fast import replay_vectorised
from specedge.simulator.replay_reference import replay_reference
from specedge.simulator.stream import ModelKind, ReplayResult, RequestStream

__all__ = ["replay"]


def replay(stream: RequestStream, link: LinkProfile, *, kind: ModelKind = "realistic") -> ReplayResult:
    """Replay ``stream`` on ``link``: vectorised for constant-rate channels, the reference loop otherwise."""
    if isinstance(link.uplink, ConstantRate) and isinstance(link.downlink, ConstantRate):
        return replay_vectorised(stream, link, kind=kind)
    return replay_reference(stream, link, kind=kind)
