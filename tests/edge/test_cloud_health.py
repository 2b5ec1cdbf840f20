"""CloudHealth: HEALTHY/SLOW/DOWN transitions, back-off, probes; time is passed in."""

from __future__ import annotations

import pytest

from specedge.edge.cloud_health import REQUEST_FAILURES, SERVER_FAILURES, CloudHealth, HealthState
from specedge.errors import ConfigError

PREDICTED_S = 0.1  # slow above 0.1 x 3 + 0.05 = 0.35 s with the defaults
FAST_S, SLOW_S = 0.12, 0.5


def test_starts_healthy_and_always_allows() -> None:
    health = CloudHealth()
    assert health.state is HealthState.HEALTHY and health.next_probe_s is None and health.failures == 0
    assert health.allow(0.0) and health.allow(1e9)
    assert health.describe() == "healthy"


def test_one_slow_round_trip_is_not_enough_and_a_fast_one_resets_the_streak() -> None:
    health = CloudHealth(slow_after=2)
    health.record_success(1.0, SLOW_S, PREDICTED_S)
    assert health.state is HealthState.HEALTHY and health.slow_streak == 1
    health.record_success(2.0, FAST_S, PREDICTED_S)
    health.record_success(3.0, SLOW_S, PREDICTED_S)
    assert health.state is HealthState.HEALTHY
    health.record_success(3.5, 0.35, PREDICTED_S)  # exactly at the limit: not slow
    assert health.state is HealthState.HEALTHY and health.slow_streak == 0


def test_consecutive_slow_round_trips_make_it_slow_until_a_probe_is_fast() -> None:
    health = CloudHealth(slow_after=2, probe_interval_s=1.0)
    health.record_success(1.0, SLOW_S, PREDICTED_S)
    health.record_success(2.0, SLOW_S, PREDICTED_S)
    assert health.state is HealthState.SLOW and health.next_probe_s == 3.0
    assert not health.allow(2.5) and health.allow(3.0)
    assert health.describe() == ("slow since 2.000 s: round trips above 3x prediction + 50 ms; next probe at 3.000 s")
    health.record_success(3.1, SLOW_S, PREDICTED_S)  # the probe: still slow, fixed interval
    assert health.state is HealthState.SLOW and health.next_probe_s == pytest.approx(4.1)
    assert health.since_s == 2.0
    health.record_success(4.2, FAST_S, PREDICTED_S)
    assert health.state is HealthState.HEALTHY and health.next_probe_s is None and health.allow(4.3)


@pytest.mark.parametrize("kind", sorted(SERVER_FAILURES))
def test_server_failures_mark_it_down_with_doubling_backoff_up_to_the_cap(kind: str) -> None:
    health = CloudHealth(backoff_initial_s=0.5, backoff_max_s=3.0)
    now = 10.0
    waits = []
    for _ in range(6):
        health.record_failure(now, kind)
        assert health.state is HealthState.DOWN
        assert health.next_probe_s is not None
        waits.append(health.next_probe_s - now)
        assert not health.allow(now) and health.allow(health.next_probe_s)
        now = health.next_probe_s  # the probe is due, is sent, and fails again
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert health.failures == 6 and health.last_failure == kind
    assert health.describe() == f"down since 10.000 s after 6 failure(s) (last: {kind}); next probe at {now:.3f} s"


def test_a_successful_probe_brings_it_back_and_resets_the_backoff() -> None:
    health = CloudHealth(backoff_initial_s=0.5)
    health.record_failure(0.0, "unavailable")
    health.record_failure(0.5, "timeout")
    health.record_success(2.0, FAST_S, PREDICTED_S)
    assert health.state is HealthState.HEALTHY and health.failures == 0 and health.allow(2.0)
    health.record_failure(3.0, "overloaded")
    assert health.next_probe_s == 3.5  # back to the initial back-off


def test_a_slow_answer_to_a_probe_while_down_makes_it_slow() -> None:
    health = CloudHealth(probe_interval_s=2.0)
    health.record_failure(0.0, "overloaded")
    health.record_success(1.0, SLOW_S, PREDICTED_S)
    assert health.state is HealthState.SLOW and health.failures == 0 and health.next_probe_s == 3.0


def test_a_failure_while_slow_marks_it_down() -> None:
    health = CloudHealth(slow_after=1)
    health.record_success(0.0, SLOW_S, PREDICTED_S)
    assert health.state is HealthState.SLOW
    health.record_failure(1.0, "timeout")
    assert health.state is HealthState.DOWN and health.next_probe_s == 1.5


@pytest.mark.parametrize("kind", sorted(REQUEST_FAILURES))
def test_rejected_and_protocol_failures_concern_the_request_not_the_server(kind: str) -> None:
    health = CloudHealth()
    for now in range(5):
        health.record_failure(float(now), kind)
    assert health.state is HealthState.HEALTHY and health.failures == 0 and health.request_failures == 5
    health.record_failure(10.0, "unavailable")
    health.record_failure(10.6, kind)  # a probe the server answered by rejecting it: still down, still due
    assert health.state is HealthState.DOWN and health.next_probe_s == 10.5 and health.allow(10.6)


def test_unknown_failure_kinds_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown cloud failure kind 'boom'; expected one of: overloaded, protocol"):
        CloudHealth().record_failure(0.0, "boom")


def test_non_finite_timings_count_as_an_answer_but_not_as_slow() -> None:
    health = CloudHealth()
    health.record_failure(0.0, "timeout")
    health.record_success(1.0, float("nan"), PREDICTED_S)
    assert health.state is HealthState.HEALTHY


@pytest.mark.parametrize(
    "settings",
    [
        {"slow_factor": 0.5},
        {"slow_margin_s": -1.0},
        {"slow_after": 0},
        {"backoff_initial_s": 0.0},
        {"backoff_initial_s": 5.0, "backoff_max_s": 1.0},
        {"probe_interval_s": float("nan")},
        {"backoff_max_s": float("inf")},
    ],
)
def test_settings_are_validated(settings: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="invalid cloud health settings"):
        CloudHealth(**settings)  # type: ignore[arg-type]
