"""The replay's sequential definition: one request at a time, driving a stateful radio.

See :mod:`specedge.simulator.replay` for the model. This loop works with any channels (constant
or trace-driven) and is what the vectorised fast path (:mod:`specedge.simulator.replay_fast`) is
tested against; both price sessions with :func:`session_energies`.
"""

from __future__ import annotations

import math

import numpy as np

from specedge.simulator.links import LinkProfile
from specedge.simulator.radio import CONNECTED, Radio, RadioProfile
from specedge.simulator.stream import NO_SESSION, ModelKind, ReplayResult, RequestStream, check_kind

__all__ = ["replay_reference", "session_energies"]


def session_energies(
    kind: ModelKind,
    radio: RadioProfile,
    category: np.ndarray,
    *,
    request_bytes: np.ndarray,
    response_bytes: np.ndarray,
    upload_s: np.ndarray,
    download_s: np.ndarray,
    wait_s: np.ndarray,
    handshake: np.ndarray,
    setup_bytes: tuple[int, int],
    setup_moving_s: np.ndarray,
    setup_wait_s: float,
) -> dict[str, np.ndarray]:
    """Promotion, handshake, upload, wait and download energy (mJ) of sessions of known category."""
    zeros = np.zeros_like(upload_s)
    upload = radio.transfer_energy_mj(request_bytes, zeros, upload_s, category)
    download = radio.transfer_energy_mj(zeros, response_bytes, download_s, category)
    if kind == "simple":
        return {
            "promotion_mj": zeros,
            "handshake_mj": zeros,
            "upload_mj": upload,
            "wait_mj": radio.transfer.base_mw * wait_s,
            "download_mj": download,
        }
    setup_up, setup_down = (np.full(zeros.shape, float(b)) for b in setup_bytes)
    setup = radio.transfer_energy_mj(setup_up, setup_down, setup_moving_s, category) + radio.wait_energy_mj(
        np.full(zeros.shape, setup_wait_s), category
    )
    return {
        "promotion_mj": radio.promotion_mj(category),
        "handshake_mj": np.where(handshake, setup, 0.0),
        "upload_mj": upload,
        "wait_mj": radio.wait_energy_mj(wait_s, category),
        "download_mj": download,
    }


def replay_reference(stream: RequestStream, link: LinkProfile, *, kind: ModelKind = "realistic") -> ReplayResult:
    """Replay ``stream`` one request at a time (any channels): the definition the fast path must match."""
    check_kind(kind)
    realistic = kind == "realistic"
    n = len(stream)
    rtt_s = link.rtt_s
    connection = link.connection
    setup_up, setup_down = connection.setup_bytes
    setup_wait_s = connection.handshake_rtts * rtt_s
    radio = Radio(link.radio)
    # ConnectionProfile.needs_handshake for one request (a first request's idle time is inf).
    idle_timeout_s = math.inf if connection.idle_timeout_s is None else connection.idle_timeout_s

    start = np.zeros(n)
    finish = np.zeros(n)
    category = np.full(n, NO_SESSION, dtype=np.int64)
    handshake = np.zeros(n, dtype=bool)
    promotion_s, promotion_mj = np.zeros(n), np.zeros(n)
    handshake_s, setup_moving_s = np.zeros(n), np.zeros(n)
    upload_s, wait_s, download_s = np.zeros(n), np.zeros(n), np.zeros(n)
    tail_mj = np.zeros(n)

    device_free_s = -math.inf
    last_end_s: float | None = None
    last_cloud = -1
    for i in range(n):
        start[i] = max(stream.arrival_s[i], device_free_s)
        t = start[i] + stream.local_s[i]
        if stream.to_cloud[i]:
            category[i] = CONNECTED
            if realistic:
                idle_s = math.inf if last_end_s is None else t - last_end_s
                handshake[i] = not connection.reuse or math.isinf(idle_s) or idle_s > idle_timeout_s
                wake = radio.begin(
                    t,
                    uplink_bytes=stream.request_bytes[i] + (setup_up if handshake[i] else 0),
                    downlink_bytes=stream.response_bytes[i] + (setup_down if handshake[i] else 0),
                )
                if last_cloud >= 0:
                    tail_mj[last_cloud] += wake.previous_tail_mj
                category[i] = wake.category
                promotion_s[i], promotion_mj[i] = wake.promotion_s, wake.promotion_mj
                t += wake.promotion_s
                if handshake[i]:
                    opened = t
                    t = link.downlink.transfer(setup_down, link.uplink.transfer(setup_up, t))
                    setup_moving_s[i] = t - opened
                    t += setup_wait_s
                    handshake_s[i] = t - opened
            sent = t
            uploaded = link.uplink.transfer(stream.request_bytes[i], sent)
            replied = uploaded + rtt_s / 2 + stream.server_s[i]
            downloaded = link.downlink.transfer(stream.response_bytes[i], replied)
            finish[i] = downloaded + rtt_s / 2
            upload_s[i], download_s[i] = uploaded - sent, downloaded - replied
            wait_s[i] = rtt_s + stream.server_s[i]
            if realistic:
                radio.end(finish[i])
                last_end_s, last_cloud = finish[i], i
        else:
            finish[i] = t
        device_free_s = finish[i]
    final_tail_mj = radio.finish() if realistic else 0.0
    if last_cloud >= 0:
        tail_mj[last_cloud] += final_tail_mj

    cloud = stream.to_cloud
    energies = session_energies(
        kind,
        link.radio,
        category[cloud],
        request_bytes=stream.request_bytes[cloud],
        response_bytes=stream.response_bytes[cloud],
        upload_s=upload_s[cloud],
        download_s=download_s[cloud],
        wait_s=wait_s[cloud],
        handshake=handshake[cloud],
        setup_bytes=(setup_up, setup_down),
        setup_moving_s=setup_moving_s[cloud],
        setup_wait_s=setup_wait_s,
    )
    energies["promotion_mj"] = promotion_mj[cloud]  # from the Radio itself, as the loop saw it
    per_request = {name: np.zeros(n) for name in energies}
    for name, values in energies.items():
        per_request[name][cloud] = values
    return ReplayResult(
        kind=kind,
        method="reference",
        arrival_s=stream.arrival_s,
        start_s=start,
        finish_s=finish,
        category=category,
        queue_s=start - stream.arrival_s,
        local_s=stream.local_s.copy(),
        promotion_s=promotion_s,
        handshake_s=handshake_s,
        upload_s=upload_s,
        wait_s=wait_s,
        download_s=download_s,
        local_mj=stream.local_mj.copy(),
        tail_mj=tail_mj,
        final_tail_mj=final_tail_mj,
        **per_request,
    )
