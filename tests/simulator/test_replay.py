"""The time-ordered replay: queueing, promotion, shared tails, handshakes, traces, and fast == reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specedge.errors import ConfigError
from specedge.simulator.arrivals import poisson_arrivals
from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import ConnectionProfile, LinkProfile, get_link_profile
from specedge.simulator.radio import CONNECTED, FACH_PROMOTION, FACH_SESSION, IDLE_PROMOTION
from specedge.simulator.radio_profiles import RADIO_PROFILES, get_radio_profile
from specedge.simulator.replay import replay
from specedge.simulator.replay_fast import lindley_schedule, replay_vectorised
from specedge.simulator.replay_reference import replay_reference
from specedge.simulator.stream import ENERGY_COMPONENTS, LATENCY_COMPONENTS, NO_SESSION, RequestStream
from specedge.simulator.traces import TraceChannel

LTE = get_link_profile("lte")
PLAIN = ConnectionProfile(tls_version=None)  # TCP handshake only


def _lte(**connection: object) -> LinkProfile:
    return replace(LTE, connection=replace(PLAIN, **connection))


def test_1mb_upload_on_lte_is_the_worked_check_plus_the_handshake() -> None:
    link = replace(LTE, rtt_ms=0.0)
    result = replay(RequestStream.build([0.0], to_cloud=True, request_bytes=1e6), link)
    energy_j = (result.energy_mj.sum() - result.handshake_mj.sum()) / 1e3
    assert energy_j == pytest.approx(17.9, rel=0.02)
    assert result.final_tail_mj == pytest.approx(11.576 * 1060)
    assert result.tail_mj[0] == result.final_tail_mj  # charged to the request it follows
    assert result.upload_s[0] == pytest.approx(8e6 / 5.85e6)
    assert result.promotion_s[0] == pytest.approx(0.2601)


def test_simple_model_has_no_promotion_tail_or_handshake() -> None:
    stream = RequestStream.build(
        [0.0, 1.0], local_s=0.01, local_mj=3.0, to_cloud=[True, False], request_bytes=10_000, server_s=0.004
    )
    result = replay(stream, LTE, kind="simple")
    assert result.promotion_s.sum() == result.handshake_s.sum() == result.tail_mj.sum() == 0.0
    upload_s = 10_000 * 8 / 5.85e6
    assert result.latency_s == pytest.approx([0.01 + upload_s + 0.060 + 0.004, 0.01])
    b = LTE.radio.transfer.base_mw
    upload_mj = 438.39 * 0.08 + b * upload_s
    assert result.energy_mj == pytest.approx([3.0 + upload_mj + b * 0.064, 3.0])


def test_requests_one_second_apart_share_one_promotion_and_tail_on_lte() -> None:
    link = _lte()
    pair = replay(RequestStream.build([0.0, 1.0], to_cloud=True, request_bytes=1000, response_bytes=100), link)
    single = replay(RequestStream.build([0.0], to_cloud=True, request_bytes=1000, response_bytes=100), link)
    assert list(pair.category) == [IDLE_PROMOTION, CONNECTED]
    assert pair.promotion_mj.sum() == pytest.approx(single.promotion_mj.sum())
    assert pair.tail_mj.sum() < 2 * single.tail_mj.sum()
    gap_s = 1.0 - pair.finish_s[0]
    assert pair.tail_mj[0] == pytest.approx(gap_s * 1060)  # cut short by the second request
    assert pair.handshake_mj[1] == 0.0  # the kept-open connection


def test_tail_resets_at_each_request_and_idles_after_it() -> None:
    link = _lte()
    tail_s = link.radio.tail_s()
    stream = RequestStream.build([0.0, 11.0, 11.0 + 2 * tail_s], to_cloud=True, request_bytes=1000)
    result = replay(stream, link)
    assert list(result.category) == [IDLE_PROMOTION, CONNECTED, IDLE_PROMOTION]
    assert result.tail_mj[0] == pytest.approx((11.0 - result.finish_s[0]) * 1060)
    assert result.tail_mj[1] == pytest.approx(tail_s * 1060)
    assert result.final_tail_mj == pytest.approx(tail_s * 1060)


def test_handshakes_are_paid_once_per_kept_open_connection() -> None:
    arrivals = [0.0, 5.0, 10.0, 100.0]
    stream = RequestStream.build(arrivals, to_cloud=True, request_bytes=1000, response_bytes=100)
    kept = replay(stream, _lte(idle_timeout_s=None))
    assert kept.handshake_s[0] == pytest.approx(
        0.060 + LTE.uplink.duration_s(PLAIN.setup_bytes[0]) + LTE.downlink.duration_s(PLAIN.setup_bytes[1])
    )
    assert np.count_nonzero(kept.handshake_s) == 1
    timed_out = replay(stream, _lte(idle_timeout_s=30.0))
    assert list(timed_out.handshake_s > 0) == [True, False, False, True]
    fresh = replay(stream, _lte(reuse=False))
    assert np.all(fresh.handshake_s > 0) and np.all(fresh.handshake_mj > 0)
    tls12 = replay(stream, replace(LTE, connection=ConnectionProfile(tls_version="1.2", idle_timeout_s=None)))
    assert tls12.handshake_s[0] > kept.handshake_s[0] + 2 * 0.060 - 1e-9  # two more round trips


def test_busy_device_queues_later_requests() -> None:
    link = replace(_lte(), rtt_ms=100.0)
    stream = RequestStream.build([0.0, 0.01, 0.02], local_s=0.005, to_cloud=[True, False, False], request_bytes=100)
    result = replay(stream, link, kind="simple")
    first_done = result.finish_s[0]
    assert result.queue_s[1] == pytest.approx(first_done - 0.01)
    assert result.start_s[2] == pytest.approx(first_done + 0.005)
    for r in (result, replay(stream, link)):
        parts = sum(getattr(r, name) for name in LATENCY_COMPONENTS)
        assert parts == pytest.approx(r.latency_s, abs=1e-12)


def test_local_only_requests_cost_only_local_energy() -> None:
    result = replay(RequestStream.build([0.0, 1.0], local_s=0.02, local_mj=7.0), LTE)
    assert result.energy_mj == pytest.approx([7.0, 7.0])
    assert list(result.category) == [NO_SESSION, NO_SESSION]
    assert result.final_tail_mj == 0.0


def test_3g_fach_sessions_in_a_replay() -> None:
    link = replace(_lte(idle_timeout_s=None), radio=get_radio_profile("aro-3g-i997"))
    stream = RequestStream.build([0.0, 8.0, 10.0], to_cloud=True, request_bytes=[2000, 500, 700], response_bytes=100)
    for result in (replay_reference(stream, link), replay_vectorised(stream, link)):
        assert list(result.category) == [IDLE_PROMOTION, FACH_SESSION, FACH_PROMOTION]
        assert result.promotion_s[1:] == pytest.approx([0.0, 1.5])


def test_trace_link_uses_the_reference_and_stalls() -> None:
    # 8 Mbps for 1 s, then nothing for 1 s, looping.
    trace = TraceChannel("test", np.array([0.0, 1.0, 2.0]), np.array([0.0, 1e6, 1e6]))
    link = LTE.with_channels(uplink=trace)
    stream = RequestStream.build([0.5], to_cloud=True, request_bytes=1e6, response_bytes=100)
    result = replay(stream, link, kind="simple")
    assert result.method == "reference"
    assert result.upload_s[0] == pytest.approx(2.0)  # 0.5 MB by 1 s, stall to 2 s, 0.5 MB more
    with pytest.raises(ConfigError, match="needs constant-rate channels"):
        replay_vectorised(stream, link)


def test_same_seed_same_run() -> None:
    def run(seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        arrivals = poisson_arrivals(200, rate_hz=2.0, rng=rng)
        trace = TraceChannel("t", np.array([0.0, 1.0, 3.0]), np.array([0.0, 2e5, 1e6])).random_segment(rng)
        stream = RequestStream.build(arrivals, to_cloud=rng.random(200) < 0.3, request_bytes=5000, server_s=0.01)
        return replay(stream, LTE.with_channels(uplink=trace)).energy_mj

    assert np.array_equal(run(3), run(3))
    assert not np.array_equal(run(3), run(4))


def test_energy_components_sum_to_the_total() -> None:
    rng = np.random.default_rng(1)
    stream = RequestStream.build(
        np.cumsum(rng.exponential(2.0, 50)),
        local_s=0.003,
        local_mj=2.0,
        to_cloud=rng.random(50) < 0.5,
        request_bytes=900,
    )
    result = replay(stream, LTE)
    totals = result.totals()
    assert sum(totals[name] for name in ENERGY_COMPONENTS) == pytest.approx(result.energy_mj.sum())
    assert result.radio_mj.sum() == pytest.approx(result.energy_mj.sum() - 100.0)


def test_lindley_schedule() -> None:
    start, finish = lindley_schedule(np.array([0.0, 1.0, 1.5, 10.0]), np.array([2.0, 1.0, 1.0, 1.0]))
    assert start == pytest.approx([0.0, 2.0, 3.0, 10.0])
    assert finish == pytest.approx([2.0, 3.0, 4.0, 11.0])


def test_stream_validation() -> None:
    with pytest.raises(ConfigError, match="must not decrease"):
        RequestStream.build([1.0, 0.5])
    with pytest.raises(ConfigError, match=r"local_s has shape \(3,\); expected \(2,\)"):
        RequestStream.build([0.0, 1.0], local_s=[1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match="server_s must be >= 0"):
        RequestStream.build([0.0], server_s=-1.0)
    with pytest.raises(ConfigError, match="unknown model kind 'fast'; expected one of: simple, realistic"):
        replay(RequestStream.build([0.0]), LTE, kind="fast")  # type: ignore[arg-type]


# --- the vectorised fast path equals the reference ----------------------------------------------------

_FIELDS = ("start_s", "finish_s", *LATENCY_COMPONENTS, *ENERGY_COMPONENTS)


def _assert_same(a, b) -> None:
    assert np.array_equal(a.category, b.category)
    for name in _FIELDS:
        np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-9, atol=1e-9, err_msg=name)
    assert a.final_tail_mj == pytest.approx(b.final_tail_mj, rel=1e-9, abs=1e-9)


@st.composite
def _streams(draw: st.DrawFn) -> RequestStream:
    n = draw(st.integers(0, 40))
    gaps = draw(st.lists(st.floats(0.0, 20.0), min_size=n, max_size=n))
    return RequestStream.build(
        np.cumsum(gaps),
        local_s=draw(st.lists(st.floats(0.0, 0.5), min_size=n, max_size=n)) or 0.0,
        local_mj=1.0,
        to_cloud=draw(st.lists(st.booleans(), min_size=n, max_size=n)) or False,
        request_bytes=draw(st.lists(st.integers(0, 200_000), min_size=n, max_size=n)) or 0,
        response_bytes=draw(st.lists(st.integers(0, 2_000), min_size=n, max_size=n)) or 0,
        server_s=draw(st.lists(st.floats(0.0, 2.0), min_size=n, max_size=n)) or 0.0,
    )


@settings(max_examples=150, deadline=None, database=None)
@given(
    stream=_streams(),
    radio=st.sampled_from(sorted(RADIO_PROFILES)),
    kind=st.sampled_from(["simple", "realistic"]),
    connection=st.sampled_from(
        [ConnectionProfile(), ConnectionProfile(reuse=False), ConnectionProfile(tls_version="1.2", idle_timeout_s=3.0)]
    ),
    rtt_ms=st.sampled_from([0.0, 20.0, 200.0]),
)
def test_vectorised_replay_equals_the_reference(stream, radio, kind, connection, rtt_ms) -> None:
    link = replace(LTE, radio=RADIO_PROFILES[radio], connection=connection, rtt_ms=rtt_ms)
    _assert_same(replay_reference(stream, link, kind=kind), replay_vectorised(stream, link, kind=kind))


def test_vectorised_replay_equals_the_reference_on_a_long_busy_run() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    stream = RequestStream.build(
        np.cumsum(rng.exponential(0.05, n)),  # often busy: queues and back-to-back sessions
        local_s=rng.uniform(0.0, 0.02, n),
        local_mj=1.0,
        to_cloud=rng.random(n) < 0.3,
        request_bytes=rng.choice([400, 3000, 150_000], n),
        response_bytes=300,
        server_s=0.005,
    )
    for radio in ("huang2012-lte", "aro-3g-i997", "huang2012-wifi"):
        link = replace(get_link_profile("3g"), radio=RADIO_PROFILES[radio])
        _assert_same(replay_reference(stream, link), replay_vectorised(stream, link))


def test_fast_path_falls_back_to_the_reference_when_it_cannot_settle() -> None:
    stream = RequestStream.build(np.arange(20.0) * 12.0, to_cloud=True, request_bytes=1000)
    link = replace(LTE, uplink=ConstantRate(5.85))
    result = replay_vectorised(stream, link, max_rounds=1)
    assert result.method == "reference"
    _assert_same(result, replay_vectorised(stream, link))


def test_replay_speed_reports_a_throughput() -> None:
    from specedge.simulator.speed import replay_speed

    speed = replay_speed(2000, link="3g", kind="simple", repeats=1)
    assert speed.num_requests == 2000 and speed.requests_per_s > 0 and speed.link == "3G"
