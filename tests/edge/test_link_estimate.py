"""LinkEstimate: learning RTT and bandwidth from calls, and pricing E_t like the simulator's replay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from specedge.edge.link_estimate import LinkEstimate
from specedge.errors import ConfigError
from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import LinkProfile, get_link_profile
from specedge.simulator.replay import replay
from specedge.simulator.stream import RequestStream

REQUEST_BYTES, RESPONSE_BYTES, SERVER_S = 3200, 120, 0.015  # a 28x28x4 batch-1 request, 10 logits


def _true_round_trip(link: LinkProfile, request_bytes: float, response_bytes: float, server_s: float) -> float:
    """What a real call on ``link`` (no radio wake-up) takes: RTT + wire bytes at the link's rates + server."""
    up, down = link.connection.wire_bytes(request_bytes, response_bytes)
    return (
        link.rtt_s
        + float(up) * 8 / (link.uplink.mean_mbps * 1e6)
        + float(down) * 8 / (link.downlink.mean_mbps * 1e6)
        + server_s
    )


def test_starts_from_the_profile() -> None:
    lte = get_link_profile("lte")
    estimate = LinkEstimate(lte)
    assert (estimate.rtt_s, estimate.uplink_mbps, estimate.downlink_mbps, estimate.samples) == (0.06, 5.85, 13.0, 0)
    assert estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S) == pytest.approx(
        _true_round_trip(lte, REQUEST_BYTES, RESPONSE_BYTES, SERVER_S)
    )
    assert estimate.transfer_s(REQUEST_BYTES, RESPONSE_BYTES) == pytest.approx(
        estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S) - SERVER_S
    )
    assert estimate.to_dict()["profile"] == "LTE"


@pytest.mark.parametrize("smoothing", [0, -0.1, 1.5, float("nan")])
def test_smoothing_is_validated(smoothing: float) -> None:
    with pytest.raises(ConfigError, match=r"smoothing must be in \(0, 1\]"):
        LinkEstimate(get_link_profile("lte"), smoothing=smoothing)


def test_converges_to_a_link_four_times_slower_than_its_seed(rng: np.random.Generator) -> None:
    seed = get_link_profile("lte")
    truth = seed.with_channels(uplink=ConstantRate(5.85 / 4), downlink=ConstantRate(13.0 / 4))
    truth = LinkProfile(truth.name, truth.uplink, truth.downlink, seed.rtt_ms * 4, seed.radio)
    estimate = LinkEstimate(seed)
    for _ in range(60):
        estimate.observe_probe(_true_round_trip(truth, 0, 0, 0.0))
        request_bytes = float(rng.integers(1_000, 20_000))
        server_s = float(rng.uniform(0.005, 0.05))
        estimate.observe(
            request_bytes, RESPONSE_BYTES, _true_round_trip(truth, request_bytes, RESPONSE_BYTES, server_s), server_s
        )
    assert estimate.rtt_s == pytest.approx(0.24, rel=1e-3)
    assert estimate.uplink_mbps == pytest.approx(5.85 / 4, rel=1e-3)
    assert estimate.downlink_mbps == pytest.approx(13.0 / 4, rel=1e-3)
    assert estimate.samples == 120 and estimate.ignored == 0
    assert estimate.round_trip_s(8_000, RESPONSE_BYTES, 0.02) == pytest.approx(
        _true_round_trip(truth, 8_000, RESPONSE_BYTES, 0.02), rel=1e-3
    )


def test_noisy_round_trips_converge_near_the_truth(rng: np.random.Generator) -> None:
    lte = get_link_profile("lte")
    estimate = LinkEstimate(lte, smoothing=0.05)
    for _ in range(400):
        estimate.observe_probe(_true_round_trip(lte, 0, 0, 0.0) + float(rng.normal(0, 0.005)))
        true = _true_round_trip(lte, REQUEST_BYTES, RESPONSE_BYTES, SERVER_S)
        estimate.observe(REQUEST_BYTES, RESPONSE_BYTES, true + float(rng.normal(0, 0.005)), SERVER_S)
    assert estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S) == pytest.approx(true, rel=0.05)


@pytest.mark.parametrize(
    "bad",
    [
        (REQUEST_BYTES, RESPONSE_BYTES, math.nan, SERVER_S),
        (REQUEST_BYTES, RESPONSE_BYTES, math.inf, SERVER_S),
        (REQUEST_BYTES, RESPONSE_BYTES, -0.1, SERVER_S),
        (REQUEST_BYTES, RESPONSE_BYTES, 0.2, -0.01),
        (REQUEST_BYTES, RESPONSE_BYTES, 0.2, math.nan),
        (-1, RESPONSE_BYTES, 0.2, SERVER_S),
        (REQUEST_BYTES, math.nan, 0.2, SERVER_S),
        (REQUEST_BYTES, RESPONSE_BYTES, 0.1, 0.2),  # the server cannot take longer than the whole call
    ],
)
def test_garbage_observations_are_ignored_and_counted(bad: tuple[float, float, float, float]) -> None:
    estimate = LinkEstimate(get_link_profile("3g"))
    before = estimate.to_dict()
    estimate.observe(*bad)
    estimate.observe_probe(bad[2] if not 0 <= bad[2] < math.inf else math.nan)
    estimate.observe_probe(0.2, at_s=math.nan)
    estimate.mark_transfer(math.nan, 1.0)
    estimate.mark_transfer(2.0, 1.0)
    after = estimate.to_dict()
    assert after.pop("ignored") == 5 and before.pop("ignored") == 0
    assert after == before


def test_extreme_samples_are_bounded() -> None:
    estimate = LinkEstimate(get_link_profile("lte"), smoothing=1.0)
    estimate.observe(REQUEST_BYTES, RESPONSE_BYTES, 1e6, SERVER_S)  # a stall: 100x slower at most
    assert estimate.uplink_mbps == pytest.approx(5.85 / 100)
    estimate.observe(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S, SERVER_S)  # no network time at all
    assert estimate.uplink_mbps == pytest.approx(5.85 * 100)
    assert math.isfinite(estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S))


def test_a_promotion_is_discounted_from_observations_and_added_to_predictions() -> None:
    lte = get_link_profile("lte")
    promotion_s = lte.radio.promotion.delay_s
    estimate = LinkEstimate(lte, smoothing=1.0)
    assert estimate.wake_s(0.0) == promotion_s  # never used: idle
    estimate.observe_probe(promotion_s + _true_round_trip(lte, 0, 0, 0.0), at_s=0.0)
    assert estimate.rtt_s == pytest.approx(lte.rtt_s)
    estimate.mark_transfer(0.0, 0.4)
    assert estimate.wake_s(1.0) == 0.0  # inside the tail
    assert estimate.wake_s(0.4 + lte.radio.tail_s() + 1) == promotion_s  # idle again
    plain = estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S)
    assert estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S, at_s=1.0) == plain
    assert estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S, at_s=100.0) == pytest.approx(
        plain + promotion_s
    )


def test_energy_pays_a_promotion_after_idle_and_little_right_after_a_transfer() -> None:
    lte = get_link_profile("lte")
    estimate = LinkEstimate(lte)
    cold = estimate.transfer_energy_mj(REQUEST_BYTES, RESPONSE_BYTES, at_s=0.0)
    estimate.mark_transfer(0.0, 0.5)
    warm = estimate.transfer_energy_mj(REQUEST_BYTES, RESPONSE_BYTES, at_s=0.5)
    later = estimate.transfer_energy_mj(REQUEST_BYTES, RESPONSE_BYTES, at_s=5.5)
    idle = estimate.transfer_energy_mj(REQUEST_BYTES, RESPONSE_BYTES, at_s=100.0)
    whole_tail = float(lte.radio.tail_energy_mj(math.inf))
    assert idle == pytest.approx(cold)
    assert cold - warm == pytest.approx(lte.radio.promotion.energy_mj + whole_tail)  # right after: no new tail
    assert warm < later < idle  # 5 s into the tail: pays the 5 s of tail it extends, no promotion
    assert later - warm == pytest.approx(5.0 * lte.radio.tail[0].power_mw)


@pytest.mark.parametrize("name", ["3g", "lte", "wifi", "5g"])
def test_energy_of_an_isolated_request_matches_the_realistic_replay(name: str) -> None:
    """One request long after the connection opened (no handshake), with the radio idle: as replay() prices it."""
    link = get_link_profile(name)
    up, down = link.connection.wire_bytes(REQUEST_BYTES, RESPONSE_BYTES)
    stream = RequestStream.build(
        np.array([0.0, 100.0]), to_cloud=True, request_bytes=float(up), response_bytes=float(down), server_s=SERVER_S
    )
    result = replay(stream, link, kind="realistic")
    estimate = LinkEstimate(link)
    estimate.mark_transfer(float(result.start_s[0]), float(result.finish_s[0]))
    energy = estimate.transfer_energy_mj(REQUEST_BYTES, RESPONSE_BYTES, at_s=100.0, server_s=SERVER_S)
    assert energy == pytest.approx(float(result.energy_mj[1]), rel=1e-6)
    latency = estimate.round_trip_s(REQUEST_BYTES, RESPONSE_BYTES, SERVER_S, at_s=100.0)
    assert latency == pytest.approx(float(result.latency_s[1]), rel=1e-6)


def test_energy_of_a_request_inside_a_tail_matches_the_replay_total() -> None:
    """Marginal E_t: what the second of two close requests adds to the replay's whole-run energy."""
    link = get_link_profile("3g")
    up, down = link.connection.wire_bytes(REQUEST_BYTES, RESPONSE_BYTES)

    def total(arrivals: list[float]) -> float:
        stream = RequestStream.build(
            np.array(arrivals), to_cloud=True, request_bytes=float(up), response_bytes=float(down), server_s=SERVER_S
        )
        return float(replay(stream, link, kind="realistic").energy_mj.sum())

    first = replay(
        RequestStream.build(
            np.zeros(1), to_cloud=True, request_bytes=float(up), response_bytes=float(down), server_s=SERVER_S
        ),
        link,
    )
    estimate = LinkEstimate(link)
    estimate.mark_transfer(0.0, float(first.finish_s[0]))
    energy = estimate.transfer_energy_mj(REQUEST_BYTES, RESPONSE_BYTES, at_s=3.0, server_s=SERVER_S)
    assert energy == pytest.approx(total([0.0, 3.0]) - total([0.0]), rel=1e-6)
