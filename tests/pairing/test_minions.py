"""M&MNet minion pairing on synthetic stored outputs: brute force, unreachable targets, bad pools."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from specedge.detector import score_logits
from specedge.errors import ConfigError
from specedge.pairing import (
    MasterReference,
    PoolMember,
    analyse_minions,
    minions_markdown,
    minions_report,
    offload_cost,
)
from specedge.simulator import get_link_profile

K = 3


def _logits(rng: np.random.Generator, labels: np.ndarray, strength: float) -> np.ndarray:
    z = rng.normal(size=(len(labels), K))
    z[np.arange(len(labels)), labels] += strength
    return z


def _setup(seed: int = 0, n: int = 40) -> tuple[list[PoolMember], MasterReference, np.random.Generator]:
    rng = np.random.default_rng(seed)
    val_y, test_y = rng.integers(0, K, n), rng.integers(0, K, n)
    costs = [(0.011, 13.0), (0.017, 11.0), (0.023, 29.0), (0.031, 17.0)]
    pool = [
        PoolMember(f"m{i}", _logits(rng, val_y, s), _logits(rng, test_y, s), lat, en, 1000 * (i + 1), 100)
        for i, (s, (lat, en)) in enumerate(zip([0.8, 1.4, 2.0, 2.6], costs, strict=True))
    ]
    master = MasterReference(
        "master", _logits(rng, val_y, 3.0).argmax(1), _logits(rng, test_y, 3.0).argmax(1), val_y, test_y
    )
    return pool, master, rng


def _brute_force_rate(first: PoolMember, second: PoolMember, master: MasterReference, target: float) -> float | None:
    """Fewest escalations over every pair of thresholds, enumerated one by one."""
    s1, s2 = score_logits(first.val_logits, "max_softmax"), score_logits(second.val_logits, "max_softmax")
    v1, v2 = first.val_logits.argmax(1), second.val_logits.argmax(1)
    agree = v1 == v2
    needed = math.ceil(target * (master.val_predictions == master.val_labels).sum() - 1e-9)
    best = None
    for t1 in [*np.unique(s1), s1.max() + 1]:
        for t2 in [*np.unique(s2), s2.max() + 1]:
            escalate = ~agree | (s1 < t1) | (s2 < t2)
            final = np.where(escalate, master.val_predictions, v1)
            if (final == master.val_labels).sum() >= needed:
                count = int(escalate.sum())
                best = count if best is None else min(best, count)
    return None if best is None else best / len(v1)


@pytest.mark.parametrize("target", [1.0, 0.95])
def test_pair_choice_matches_brute_force(target: float) -> None:
    pool, master, _ = _setup()
    links = {"3g": (1.3, 2200.0), "lte": (0.28, 900.0), "5g": (0.005, 20.0)}
    analysis = analyse_minions(pool, master, links, target=target)
    expected = {
        (first.name, second.name): _brute_force_rate(first, second, master, target)
        for first, second in itertools.combinations(pool, 2)
    }
    got = {pair.members: pair.escalation_rate for pair in analysis.pairs}
    assert got.keys() == expected.keys()
    for key, rate in expected.items():
        assert got[key] == pytest.approx(rate), key
    members = {m.name: m for m in pool}
    for choice in analysis.links:
        link = links[choice.link]
        costs = {
            key: (
                sum(members[n].latency_s for n in key) + rate * link[0],
                sum(members[n].energy_mj for n in key) + rate * link[1],
            )
            for key, rate in expected.items()
            if rate is not None
        }
        best = min(costs, key=lambda key: costs[key])
        assert choice.pair is not None and choice.pair.members == best
        assert choice.pair_cost == pytest.approx(costs[best])
        assert choice.recovery_host == "cloud"
        assert choice.best_alternative == "cloud-only"
    assert len({choice.pair.members for choice in analysis.links if choice.pair}) > 1  # the link matters
    rows = json.loads(json.dumps(minions_report(analysis), allow_nan=False))["pairs_by_link"]
    assert [(row["link"], tuple(row["pair"])) for row in rows] == [(c.link, c.pair.members) for c in analysis.links]
    markdown = minions_markdown(analysis)
    assert all(f"| {c.link} | {' + '.join(c.pair.members)} |" in markdown for c in analysis.links if c.pair)


def test_test_split_evaluation_replays_the_fitted_rule() -> None:
    pool, master, _ = _setup()
    analysis = analyse_minions(pool, master, {"lte": (0.28, 900.0)})
    pair = analysis.pairs[0]
    assert pair.detector is not None
    logits = np.stack([pool[0].test_logits, pool[1].test_logits], axis=1)
    decisions = pair.detector.decide(logits)
    final = np.where(decisions.escalate, master.test_predictions, decisions.predictions)
    assert pair.test_escalation_rate == pytest.approx(decisions.escalate.mean())
    assert pair.test_accuracy_ratio == pytest.approx((final == master.test_labels).mean() / master.test_accuracy)


def test_master_on_the_device_recovers_where_it_is_faster_and_is_an_alternative() -> None:
    pool, master, _ = _setup()
    on_device = MasterReference(
        "master", master.val_predictions, master.test_predictions, master.val_labels, master.test_labels, 0.5, 700.0
    )
    analysis = analyse_minions(pool, on_device, {"3g": (1.3, 2200.0), "wifi": (0.09, 370.0)})
    slow, fast = analysis.links
    assert slow.recovery_host == "device" and fast.recovery_host == "cloud"
    assert slow.alternatives["mobile-only"] == (0.5, 700.0)
    assert slow.best_alternative == "mobile-only" and fast.best_alternative == "cloud-only"
    assert slow.pair is not None and slow.pair.escalation_rate is not None
    assert slow.pair_cost is not None
    assert slow.pair_cost[0] == pytest.approx(slow.pair.latency_s + slow.pair.escalation_rate * 0.5)


def test_single_model_comparison_uses_the_threshold_policy() -> None:
    pool, master, rng = _setup()
    single = PoolMember(
        "solo", _logits(rng, master.val_labels, 2.2), _logits(rng, master.test_labels, 2.2), 0.02, 15.0, 1, 1
    )
    analysis = analyse_minions(pool, master, {"lte": (0.28, 900.0)}, single=single)
    assert analysis.single is not None and analysis.single.detector is not None
    assert analysis.single.detector.policy == "threshold"
    choice = analysis.links[0]
    assert analysis.single.escalation_rate is not None
    assert choice.alternatives["single:solo"] == pytest.approx(
        (0.02 + analysis.single.escalation_rate * 0.28, 15.0 + analysis.single.escalation_rate * 900.0)
    )


def test_single_model_may_also_be_a_pool_member() -> None:
    pool, master, _ = _setup()
    analysis = analyse_minions(pool, master, {"lte": (0.28, 900.0)}, single=pool[3])
    assert analysis.single is not None and analysis.single.members == ("m3",)
    assert "single:m3" in analysis.links[0].alternatives


def test_unreachable_target_is_reported_with_the_best_alternative() -> None:
    rng = np.random.default_rng(1)
    n = 50
    val_y, test_y = rng.integers(0, K, n), rng.integers(0, K, n)
    wrong = np.arange(n) % 10 == 0  # the master misses every tenth input

    def copy_of_master(labels: np.ndarray) -> np.ndarray:
        predictions = np.where(wrong, (labels + 1) % K, labels)
        return _logits(rng, predictions, 4.0)

    pool = [PoolMember(f"copy{i}", copy_of_master(val_y), copy_of_master(test_y), 0.01, 5.0, 1, 1) for i in range(3)]
    master = MasterReference(
        "master", np.where(wrong, (val_y + 1) % K, val_y), np.where(wrong, (test_y + 1) % K, test_y), val_y, test_y
    )
    oracle = PoolMember("oracle", _logits(rng, val_y, 6.0), _logits(rng, test_y, 6.0), 0.03, 20.0, 1, 1)
    # Minions that copy the master never beat it; the oracle does, so 105% of the master is for it alone.
    analysis = analyse_minions(pool, master, {"lte": (0.28, 900.0)}, target=1.05, single=oracle)
    assert not analysis.reachable
    assert all(not pair.reachable and "out of reach" in pair.reason for pair in analysis.pairs)
    choice = analysis.links[0]
    assert choice.pair is None and choice.pair_cost is None and not choice.pair_wins
    assert choice.best_alternative == "single:oracle"
    report = minions_report(analysis)
    row = report["pairs_by_link"][0]
    assert row["reachable"] is False and row["pair"] is None
    assert row["best_alternative"]["option"] == "single:oracle"
    json.dumps(report, allow_nan=False)
    assert "unreachable" in minions_markdown(analysis)

    alone = analyse_minions(pool, master, {"lte": (0.28, 900.0)}, target=1.05)
    assert alone.links[0].best_alternative == "cloud-only"


def test_empty_and_mismatched_pools_are_config_errors() -> None:
    pool, master, rng = _setup()
    links = {"lte": (0.28, 900.0)}
    with pytest.raises(ConfigError, match="at least two"):
        analyse_minions([], master, links)
    with pytest.raises(ConfigError, match="at least two"):
        analyse_minions(pool[:1], master, links)
    short = PoolMember("short", pool[0].val_logits[:-1], pool[0].test_logits, 0.01, 1.0, 1, 1)
    with pytest.raises(ConfigError, match="'short' has 39 validation"):
        analyse_minions([*pool, short], master, links)
    wide = PoolMember("wide", rng.normal(size=(40, K + 1)), rng.normal(size=(40, K + 1)), 0.01, 1.0, 1, 1)
    with pytest.raises(ConfigError, match="'wide' has 4 classes; the pool has 3"):
        analyse_minions(pool, master, links, single=wide)
    with pytest.raises(ConfigError, match="unique"):
        analyse_minions([pool[0], pool[0]], master, links)
    with pytest.raises(ConfigError, match="unknown link profile"):
        analyse_minions(pool, master, {"lte5": (0.1, 1.0)})
    with pytest.raises(ConfigError, match="at least one link"):
        analyse_minions(pool, master, {})


@pytest.mark.parametrize(
    ("logits", "latency_s", "match"),
    [
        (np.zeros((4,)), 0.01, "must be \\(N, K\\)"),
        (np.zeros((4, 1)), 0.01, "must be \\(N, K\\)"),
        (np.full((4, 3), np.nan), 0.01, "NaN"),
        (np.zeros((4, 3)), 0.0, "finite and > 0"),
    ],
)
def test_pool_member_rejects_bad_values(logits: np.ndarray, latency_s: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        PoolMember("bad", logits, np.zeros((4, 3)), latency_s, 1.0, 1, 1)


def test_offload_cost_is_the_first_order_transfer_model() -> None:
    link = get_link_profile("wifi")
    latency_s, energy_mj = offload_cost("wifi", 150_000, 300, server_s=0.005)
    up, down = link.connection.wire_bytes(150_000, 300)
    rate_bps = 18.88e6
    assert latency_s == pytest.approx(float(up) * 8 / rate_bps + float(down) * 8 / rate_bps + 0.020 + 0.005)
    bigger = offload_cost("wifi", 300_000, 300, server_s=0.005)
    assert bigger[0] > latency_s and bigger[1] > energy_mj > 0
    with pytest.raises(ConfigError, match="unknown link profile"):
        offload_cost("carrier-pigeon", 1, 1)
