"""The emulator's schedules against hand-computed ones: constant rate, a trace, radio promotion."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from specedge.emulator import TRACE_BASE_LINK, DirectionScheduler, RadioWakeup, resolve_link
from specedge.errors import ConfigError, TraceError
from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import get_link_profile
from specedge.simulator.radio import TailState
from specedge.simulator.traces import TraceChannel

# 8 Mbit/s moves exactly one byte per microsecond, so schedules are easy to compute by hand.
ONE_MB_PER_S = ConstantRate(8.0)


def test_constant_rate_serialises_then_adds_the_delay() -> None:
    scheduler = DirectionScheduler(ONE_MB_PER_S, delay_s=0.05)
    # 1000 B at t=0: transmitted 0 -> 0.001, delivered 0.051.
    assert scheduler.deliver_s(1000, 0.0) == pytest.approx(0.051)
    # 2000 B arriving at 0.0005 waits for the first to finish (0.001), transmits until 0.003.
    assert scheduler.deliver_s(2000, 0.0005) == pytest.approx(0.053)
    # After an idle second the channel is free again: 1.0 -> 1.001, + 0.05.
    assert scheduler.deliver_s(1000, 1.0) == pytest.approx(1.051)


def test_end_of_stream_follows_the_data_and_takes_no_capacity() -> None:
    scheduler = DirectionScheduler(ONE_MB_PER_S, delay_s=0.01)
    assert scheduler.deliver_s(0, 0.0) == pytest.approx(0.01)
    assert scheduler.deliver_s(5000, 0.0) == pytest.approx(0.015)
    assert scheduler.deliver_s(0, 0.001) == pytest.approx(0.015)  # right behind the data
    assert scheduler.deliver_s(1000, 0.006) == pytest.approx(0.017)  # the marker used no capacity


def test_trace_channel_stalls_and_loops() -> None:
    # 1000 B over the first second, nothing in the second, period 2 s.
    trace = TraceChannel(name="hand", times_s=np.array([0.0, 1.0, 2.0]), cumulative_bytes=np.array([0.0, 1e3, 1e3]))
    scheduler = DirectionScheduler(trace, delay_s=0.0)
    assert scheduler.deliver_s(500, 0.0) == pytest.approx(0.5)
    # 1000 B behind it: 500 B fill up to 1.0 s, the stall lasts to 2.0 s, 500 B more end at 2.5 s.
    assert scheduler.deliver_s(1000, 0.2) == pytest.approx(2.5)
    # On fresh schedulers with a 0.1 s delay: 250 B at 2.0 s (the next period) end at 2.25 s; at 3.0 s
    # the trace is in its stall, so they wait for 4.0 s and end at 4.25 s.
    assert DirectionScheduler(trace, delay_s=0.1).deliver_s(250, 2.0) == pytest.approx(2.35)
    assert DirectionScheduler(trace, delay_s=0.1).deliver_s(250, 3.0) == pytest.approx(4.35)


def test_mahimahi_trace_file(tmp_path: Path) -> None:
    # Two 1500 B packets in millisecond 1 (spread over 0..1 ms), one in millisecond 3; period 3 ms.
    path = tmp_path / "tiny.up"
    path.write_text("1\n1\n3\n")
    trace = resolve_link(str(path)).uplink
    assert isinstance(trace, TraceChannel)
    scheduler = DirectionScheduler(trace.shifted(0.0), delay_s=0.0)
    assert scheduler.deliver_s(1500, 0.0) == pytest.approx(0.0005)
    assert scheduler.deliver_s(3000, 0.0) == pytest.approx(0.003)  # 1500 B left in ms 1, the rest in ms 3


def test_deliveries_keep_arrival_order(rng: np.random.Generator) -> None:
    capacity_bytes = np.concatenate([[0.0], np.cumsum(rng.integers(0, 50_000, 10))])  # stalls where 0
    trace = TraceChannel(name="random", times_s=np.arange(11.0), cumulative_bytes=capacity_bytes)
    for channel in (ConstantRate(1.0), trace):
        scheduler = DirectionScheduler(channel, delay_s=0.03)
        arrivals = np.cumsum(rng.exponential(0.05, 200))
        sizes = rng.integers(0, 20_000, 200)
        delivered = [scheduler.deliver_s(int(n), float(t)) for n, t in zip(sizes, arrivals, strict=True)]
        assert np.all(np.diff(delivered) >= 0)
        assert np.all(np.array(delivered) >= arrivals + 0.03)


def _radio(promotion_s: float = 0.5, tail_s: float = 2.0) -> RadioWakeup:
    lte = get_link_profile("lte").radio
    profile = replace(
        lte, promotion=replace(lte.promotion, delay_s=promotion_s), tail=(TailState("tail", tail_s, 1000.0),)
    )
    return RadioWakeup(profile)


def test_radio_promotion_after_idle_gaps_only() -> None:
    radio = _radio(promotion_s=0.5, tail_s=2.0)
    up = DirectionScheduler(ONE_MB_PER_S, delay_s=0.0, radio=radio)
    down = DirectionScheduler(ONE_MB_PER_S, delay_s=0.0, radio=radio)
    # First data ever: promotion 0 -> 0.5, then 1000 B until 0.501.
    assert up.deliver_s(1000, 0.0) == pytest.approx(0.501)
    # The other direction during the promotion waits for it, and pays no second one.
    assert down.deliver_s(1000, 0.1) == pytest.approx(0.501)
    # The answer right after: connected, no promotion.
    assert down.deliver_s(1000, 0.6) == pytest.approx(0.601)
    # 1.9 s after the last byte (0.601): still inside the 2 s tail.
    assert up.deliver_s(1000, 2.501) == pytest.approx(2.502)
    # 2 s or more after the last byte (2.502): idle again, promotion 4.502 -> 5.002.
    assert down.deliver_s(1000, 4.502) == pytest.approx(5.003)
    assert radio.promotions == 2


def test_radio_promotion_uses_the_profile_numbers() -> None:
    profile = get_link_profile("lte").radio
    radio = RadioWakeup(profile)
    assert (radio.promotion_s, radio.tail_s) == (profile.promotion.delay_s, profile.tail_s(0))
    scheduler = DirectionScheduler(ONE_MB_PER_S, delay_s=0.03, radio=radio)
    assert scheduler.deliver_s(1000, 10.0) == pytest.approx(10.0 + profile.promotion.delay_s + 0.001 + 0.03)


def test_bad_scheduler_arguments() -> None:
    with pytest.raises(ConfigError, match="one-way delay"):
        DirectionScheduler(ONE_MB_PER_S, delay_s=-1.0)
    with pytest.raises(ConfigError, match="negative size"):
        DirectionScheduler(ONE_MB_PER_S, delay_s=0.0).deliver_s(-1, 0.0)


def test_resolve_link_names_and_traces(tmp_path: Path) -> None:
    assert resolve_link("WiFi") is get_link_profile("wifi")
    path = tmp_path / "rate.txt"
    path.write_text("0 1\n1 2\n2 4\n")
    link = resolve_link(str(path), seed=3)
    base = get_link_profile(TRACE_BASE_LINK)
    assert isinstance(link.uplink, TraceChannel) and isinstance(link.downlink, TraceChannel)
    assert link.uplink.mean_mbps == pytest.approx(3.0)
    assert (link.rtt_ms, link.radio) == (base.rtt_ms, base.radio)
    assert "rate.txt" in link.name
    assert resolve_link(str(path), seed=3).uplink.offset_s == link.uplink.offset_s  # seeded


def test_resolve_link_errors_name_the_value(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'lte5'.*3g, lte, wifi, 5g"):
        resolve_link("lte5")
    bad = tmp_path / "bad.trace"
    bad.write_text("fast\n")
    with pytest.raises(TraceError, match=r"bad\.trace"):
        resolve_link(str(bad))
    with pytest.raises(TraceError, match="cannot read trace"):
        resolve_link(str(tmp_path))
