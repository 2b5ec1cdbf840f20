"""The full-system evaluation: strategies, selectors, reports, against hand-computed oracles."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from specedge.errors import ConfigError
from specedge.simulator import constant_rate_arrivals, get_link_profile
from specedge.simulator.report import evaluation_row, markdown_report, verdict
from specedge.simulator.sweep import run_scenarios, scenarios
from specedge.simulator.system import CLOUD_ONLY, MOBILE_ONLY, SPECEDGE, LocalCost, Workload, evaluate_system

N = 400


def _workload(*, escalation: float = 0.05, audit: float = 0.0, master_ms: float = 5.0, seed: int = 0) -> Workload:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, N)
    master = np.where(rng.random(N) < 0.98, labels, (labels + 1) % 10)
    speculative = np.where(rng.random(N) < 0.95, labels, (labels + 2) % 10)
    escalate = rng.random(N) < escalation
    return Workload(
        name="synthetic",
        escalate=escalate,
        audit=~escalate & (rng.random(N) < audit),
        speculative_predictions=speculative,
        master_predictions=master,
        labels=labels,
        request_bytes=np.full(N, 3200.0),
        compressed_request_bytes=np.full(N, 800.0),
        response_bytes=np.full(N, 120.0),
        server_s=np.full(N, 0.002),
        speculative=LocalCost("small", 0.0005, 2.0, "test-device", "given"),
        master=LocalCost("big", master_ms / 1e3, 20.0 * master_ms, "test-device", "given"),
        escalation_probability=escalation,
        audit_share=audit,
    )


def test_the_three_strategies_send_what_they_should():
    workload = _workload(escalation=0.1, audit=0.05)
    result = evaluate_system(
        workload, get_link_profile("lte"), arrival_s=constant_rate_arrivals(N, rate_hz=1.0), selector="always"
    )
    assert result[CLOUD_ONLY].to_cloud.all() and not result[MOBILE_ONLY].to_cloud.any()
    np.testing.assert_array_equal(result[SPECEDGE].to_cloud, workload.escalate | workload.audit)
    np.testing.assert_array_equal(result[SPECEDGE].predictions, workload.speculative_final)
    assert result[SPECEDGE].accuracy(workload.labels) == pytest.approx(
        (
            np.where(workload.escalate, workload.master_predictions, workload.speculative_predictions)
            == workload.labels
        ).mean()
    )
    local = result[MOBILE_ONLY].components_mj()
    assert local["local"] == pytest.approx(100.0) and sum(local.values()) == pytest.approx(100.0)


def test_simple_model_matches_sieves_transfer_formula():
    """Isolated requests on the simple model: latency = upload + RTT + server + download, no tails."""
    workload = _workload()
    link = get_link_profile("3g")
    result = evaluate_system(
        workload, link, arrival_s=constant_rate_arrivals(N, rate_hz=0.5), kind="simple", selector="always"
    )
    up, down = link.connection.wire_bytes(workload.request_bytes, workload.response_bytes)
    expected_s = up * 8 / 1.1e6 + down * 8 / 2.02e6 + link.rtt_s + 0.002
    np.testing.assert_allclose(result[CLOUD_ONLY].result.latency_s, expected_s, rtol=1e-9)
    assert result[CLOUD_ONLY].components_mj()["tail"] == 0.0


def test_sparse_escalations_each_pay_promotion_and_a_full_tail_on_lte():
    every_25th = np.arange(N) % 25 == 0  # 50 s apart at 0.5 frame/s, far more than LTE's ~11.6 s tail
    workload = dataclasses.replace(_workload(escalation=0.04), escalate=every_25th)
    link = get_link_profile("lte")
    result = evaluate_system(workload, link, arrival_s=constant_rate_arrivals(N, rate_hz=0.5), selector="always")
    spec = result.speculating
    sent = int(spec.to_cloud.sum())
    components = spec.components_mj()
    full_tail_mj = float(link.radio.tail_energy_mj(link.radio.tail_s()))
    # Every escalation wakes the radio and its tail runs out (the last one's too).
    assert components["tail"] * N == pytest.approx(sent * full_tail_mj, rel=0.05)
    assert components["promotion"] * N == pytest.approx(
        sent * float(link.radio.promotion.power_mw * link.radio.promotion.delay_s),
        rel=0.05,  # mW x s = mJ
    )
    assert "Promotion and tail are" in verdict(result)


def test_compressed_inputs_move_fewer_bytes():
    workload = _workload(escalation=0.0)
    link = get_link_profile("3g")
    arrivals = constant_rate_arrivals(N, rate_hz=0.5)
    raw = evaluate_system(workload, link, arrival_s=arrivals, kind="simple", selector="always")
    packed = evaluate_system(workload, link, arrival_s=arrivals, kind="simple", compress=True, selector="always")
    assert packed[CLOUD_ONLY].components_ms()["upload"] < raw[CLOUD_ONLY].components_ms()["upload"] / 3


@pytest.mark.parametrize("objective", ["latency", "energy"])
def test_predictive_selector_picks_the_cheapest_option_when_p_r_is_right(objective):
    for master_ms, link in ((50.0, "wifi"), (0.1, "lte"), (5.0, "3g")):
        workload = _workload(escalation=0.05, master_ms=master_ms)
        arrivals = constant_rate_arrivals(N, rate_hz=1.0)
        result = evaluate_system(workload, get_link_profile(link), arrival_s=arrivals, objective=objective)
        assert result.predicted[result.chosen] == min(result.predicted.values())
        metric = "latency_ms" if objective == "latency" else "energy_mj"
        costs = {
            "speculate": getattr(result.speculating, metric),
            "cloud": getattr(result[CLOUD_ONLY], metric),
            "mobile": getattr(result[MOBILE_ONLY], metric),
        }
        # Its prediction used random stand-in escalations at P_r: within a few % of the real replay.
        assert getattr(result[SPECEDGE], metric) <= min(costs.values()) * 1.1


def test_sieve_selector_uses_first_order_costs():
    workload = _workload(escalation=0.05, master_ms=50.0)
    link = get_link_profile("wifi")
    result = evaluate_system(
        workload, link, arrival_s=constant_rate_arrivals(N, rate_hz=1.0), selector="sieve", objective="latency"
    )
    up, down = link.connection.wire_bytes(workload.request_bytes, workload.response_bytes)
    latency_t = float(up[0] * 8 / 18.88e6 + down[0] * 8 / 18.88e6 + link.rtt_s + 0.002)
    assert result.predicted["cloud"] == pytest.approx(latency_t)
    assert result.predicted["speculate"] == pytest.approx(0.0005 + 0.05 * latency_t)
    assert result.chosen == "speculate"


def test_rows_have_the_benchmark_keys_and_consistent_ratios():
    workload = _workload(escalation=0.05)
    cases = scenarios(["3g", "wifi"], fps=[1.0], kinds=["simple", "realistic"])
    evaluations = run_scenarios(workload, cases, selector="always")
    for e in evaluations:
        row = evaluation_row(e, model="synthetic", device="test-device")
        assert row["latency_vs_cloud"] == pytest.approx(row["latency_ms"][CLOUD_ONLY] / row["latency_ms"][SPECEDGE])
        assert row["energy_vs_mobile"] == pytest.approx(row["energy_mj"][SPECEDGE] / row["energy_mj"][MOBILE_ONLY])
        assert 0.9 < row["accuracy_ratio"] < 1.0
        assert row["escalation_rate"] == pytest.approx(workload.escalate.mean())
    assert "| 3G | simple |" in markdown_report(evaluations, title="t")


def test_a_saturated_stream_is_flagged():
    workload = _workload()
    result = evaluate_system(
        workload, get_link_profile("3g"), arrival_s=constant_rate_arrivals(N, rate_hz=30.0), selector="always"
    )
    assert result[CLOUD_ONLY].saturated and not result[MOBILE_ONLY].saturated
    assert "cannot keep up with the frame rate" in verdict(result)


def test_bad_workloads_and_options_are_named():
    with pytest.raises(ConfigError, match="both escalated and audited"):
        w = _workload()
        dataclasses.replace(w, audit=w.escalate.copy())
    with pytest.raises(ConfigError, match="unknown selector 'oracle'"):
        evaluate_system(_workload(), get_link_profile("lte"), arrival_s=np.zeros(N), selector="oracle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="one arrival time per input"):
        evaluate_system(_workload(), get_link_profile("lte"), arrival_s=np.zeros(3))
