"""The replay, vectorised for constant-rate links: whole runs as numpy arrays.

With constant rates a session's upload, wait and download take fixed times, so a request's
service time is known once its radio category (promotion or not) and handshake are. Those depend
on the gap since the previous session ended, which depends on the schedule: a fixed point. It is
found by iteration:

1. guess every session's category and handshake (start: connected, no handshake);
2. schedule all requests at once with the Lindley recursion as a cumulative maximum
   (``finish_i = C_i + max_{j<=i}(a_j - C_{j-1})``, ``C`` the cumulative service time);
3. recompute every category and handshake from the gaps of that schedule (and the previous
   session's category, for 3G FACH); stop when nothing changed.

The decisions are causal: a session's category depends only on earlier sessions. So after round k
at least the first k sessions are right, the iteration cannot settle anywhere but on the
reference's answer, and in practice it settles in a few rounds (a change propagates only through
requests queued back to back). If it has not settled after ``max_rounds`` the exact reference loop
runs instead. Tails are then priced all at once as a function of the gap to the next session.
"""

from __future__ import annotations

import numpy as np

from specedge.errors import ConfigError
from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import LinkProfile
from specedge.simulator.radio import CONNECTED, FACH_SESSION, classify_sessions
from specedge.simulator.replay_reference import replay_reference, session_energies
from specedge.simulator.stream import NO_SESSION, ModelKind, ReplayResult, RequestStream, check_kind

__all__ = ["lindley_schedule", "replay_vectorised"]


def lindley_schedule(arrival_s: np.ndarray, service_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and finish of requests served one at a time in arrival order (a single FIFO server)."""
    cumulative = np.cumsum(service_s)
    finish = cumulative + np.maximum.accumulate(arrival_s - (cumulative - service_s))
    previous_finish = np.concatenate([[-np.inf], finish[:-1]])
    return np.maximum(arrival_s, previous_finish), finish


def _rates(link: LinkProfile) -> tuple[ConstantRate, ConstantRate]:
    if not (isinstance(link.uplink, ConstantRate) and isinstance(link.downlink, ConstantRate)):
        raise ConfigError(
            f"the vectorised replay needs constant-rate channels; link {link.name!r} has "
            f"{type(link.uplink).__name__} / {type(link.downlink).__name__} (use replay() or replay_reference())"
        )
    return link.uplink, link.downlink


def replay_vectorised(
    stream: RequestStream, link: LinkProfile, *, kind: ModelKind = "realistic", max_rounds: int = 64
) -> ReplayResult:
    """Replay ``stream`` on a constant-rate ``link``; same result as :func:`replay_reference`."""
    check_kind(kind)
    uplink, downlink = _rates(link)
    n = len(stream)
    cloud = np.flatnonzero(stream.to_cloud)
    rtt_s = link.rtt_s
    radio, connection = link.radio, link.connection
    setup_up, setup_down = connection.setup_bytes
    setup_moving_s = float(uplink.duration_s(np.array(setup_up)) + downlink.duration_s(np.array(setup_down)))
    setup_wait_s = connection.handshake_rtts * rtt_s

    request_bytes = stream.request_bytes[cloud]
    response_bytes = stream.response_bytes[cloud]
    upload_s = uplink.duration_s(request_bytes)
    download_s = downlink.duration_s(response_bytes)
    wait_s = rtt_s + stream.server_s[cloud]
    base_service = stream.local_s.copy()
    base_service[cloud] += upload_s + wait_s + download_s

    sessions = len(cloud)
    category = np.full(sessions, CONNECTED, dtype=np.int64)
    handshake = np.zeros(sessions, dtype=bool)
    gap_s = np.full(sessions, np.inf)
    if kind == "simple" or sessions == 0:
        start, finish = lindley_schedule(stream.arrival_s, base_service)
    else:
        fach = radio.fach
        for _ in range(max_rounds):
            service = base_service.copy()
            service[cloud] += radio.promotion_s(category) + np.where(handshake, setup_moving_s + setup_wait_s, 0.0)
            start, finish = lindley_schedule(stream.arrival_s, service)
            session_start = start[cloud] + stream.local_s[cloud]
            gap_s = np.concatenate([[np.inf], session_start[1:] - finish[cloud][:-1]])
            new_handshake = connection.needs_handshake(gap_s)
            if fach is None:
                small = np.zeros(sessions, dtype=bool)
            else:
                extra = np.where(new_handshake, 1.0, 0.0)
                small = (request_bytes + extra * setup_up <= fach.uplink_threshold_bytes) & (
                    response_bytes + extra * setup_down <= fach.downlink_threshold_bytes
                )
            previous_in_fach = np.concatenate([[False], category[:-1] == FACH_SESSION])
            new_category = classify_sessions(radio, gap_s, small, previous_in_fach)
            if np.array_equal(new_category, category) and np.array_equal(new_handshake, handshake):
                break
            category, handshake = new_category, new_handshake
        else:
            return replay_reference(stream, link, kind=kind)

    energies = session_energies(
        kind,
        radio,
        category,
        request_bytes=request_bytes,
        response_bytes=response_bytes,
        upload_s=upload_s,
        download_s=download_s,
        wait_s=wait_s,
        handshake=handshake,
        setup_bytes=(setup_up, setup_down),
        setup_moving_s=np.full(sessions, setup_moving_s),
        setup_wait_s=setup_wait_s,
    )
    tail = np.zeros(sessions)
    final_tail_mj = 0.0
    if kind == "realistic" and sessions:
        # Each session's tail runs until the next session starts (the whole tail after the last one).
        gap_to_next = np.concatenate([gap_s[1:], [np.inf]])
        tail = radio.tail_energy_mj(gap_to_next, 0)
        if radio.fach is not None:
            tail = np.where(category == FACH_SESSION, radio.tail_energy_mj(gap_to_next, radio.fach.state), tail)
        final_tail_mj = float(tail[-1])

    def spread(values: np.ndarray) -> np.ndarray:
        out = np.zeros(n)
        out[cloud] = values
        return out

    session_category = np.full(n, NO_SESSION, dtype=np.int64)
    session_category[cloud] = category
    return ReplayResult(
        kind=kind,
        method="vectorised",
        arrival_s=stream.arrival_s,
        start_s=start,
        finish_s=finish,
        category=session_category,
        queue_s=start - stream.arrival_s,
        local_s=stream.local_s.copy(),
        promotion_s=spread(radio.promotion_s(category)),  # 0 for CONNECTED, the only category of "simple"
        handshake_s=spread(np.where(handshake, setup_moving_s + setup_wait_s, 0.0)),
        upload_s=spread(upload_s),
        wait_s=spread(wait_s),
        download_s=spread(download_s),
        local_mj=stream.local_mj.copy(),
        tail_mj=spread(tail),
        final_tail_mj=final_tail_mj,
        **{name: spread(values) for name, values in energies.items()},
    )
