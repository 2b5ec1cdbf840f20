"""Dynamic Duo on synthetic stored outputs: curves, correct sets, the odd-subset heuristic, duo.json."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specedge.detector import score_logits
from specedge.detector.bank import read_detectors
from specedge.errors import ConfigError
from specedge.pairing import (
    PoolMember,
    analyse_duo,
    correct_sets,
    duo_curve,
    duo_markdown,
    duo_report,
    read_duo,
    write_duo,
    write_report,
)

K = 4
N = 100
LABELS = np.arange(N) % K
BIG_RIGHT = np.arange(N) < 80  # the big model misses inputs 80..99


def _confident(right: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Logits answering the label where ``right`` (confidently) and the next class elsewhere (hesitantly)."""
    predictions = np.where(right, LABELS, (LABELS + 1) % K)
    z = rng.normal(scale=0.3, size=(N, K))
    z[np.arange(N), predictions] += np.where(right, 4.0, 1.0) + rng.uniform(0, 1, N)
    return z


def _little(name: str, common: int, odd: int, latency_s: float, rng: np.random.Generator) -> PoolMember:
    """Right on the first ``common`` inputs the big gets right and on ``odd`` inputs it misses."""
    right = (np.arange(N) < common) | ((np.arange(N) >= 80) & (np.arange(N) < 80 + odd))
    return PoolMember(name, _confident(right, rng), _confident(right, rng), latency_s, 10 * latency_s, 1, 1)


def _pool(cheap_outsider_s: float) -> list[PoolMember]:
    rng = np.random.default_rng(0)
    big = PoolMember("big", _confident(BIG_RIGHT, rng), _confident(BIG_RIGHT, rng), 1.0, 10.0, 10, 10)
    return [
        big,
        _little("l1", 50, 2, 0.30, rng),
        _little("l2", 50, 8, 0.31, rng),
        _little("l3", 50, 5, 0.32, rng),
        _little("l4", 50, 12, 0.33, rng),
        _little("l5", 75, 1, cheap_outsider_s, rng),  # the smallest odd subset, but the most common corrects
    ]


def _brute_force_rate(little: PoolMember, big: PoolMember, target: float) -> float:
    """Fewest recomputations over every threshold on the little's score, enumerated one by one."""
    scores = score_logits(little.val_logits, "max_softmax")
    little_pred, big_pred = little.val_logits.argmax(1), big.val_logits.argmax(1)
    needed = math.ceil(target * (big_pred == LABELS).sum() - 1e-9)
    counts = [
        int((scores < t).sum())
        for t in [*np.unique(scores), scores.max() + 1]
        if (np.where(scores < t, big_pred, little_pred) == LABELS).sum() >= needed
    ]
    return min(counts) / N


def _cheapest(pool: list[PoolMember], littles: list[str], target: float = 1.0) -> str | None:
    by_name = {m.name: m for m in pool}
    big = by_name["big"]
    costs = {
        name: (by_name[name].latency_s + _brute_force_rate(by_name[name], big, target) * big.latency_s, i)
        for i, name in enumerate(littles)
    }
    best = min(costs, key=lambda name: costs[name])
    return best if costs[best][0] < big.latency_s else None


def test_correct_sets_count_the_venn_diagram() -> None:
    little = np.array([0, 1, 2, 3, 0, 0])
    big = np.array([0, 1, 0, 0, 2, 0])
    labels = np.array([0, 1, 2, 3, 2, 1])
    sets = correct_sets(little, big, labels)
    assert (sets.common, sets.odd, sets.complex, sets.neither) == (2, 2, 1, 1)
    assert sets.fractions() == pytest.approx({"common": 2 / 6, "odd": 2 / 6, "complex": 1 / 6, "neither": 1 / 6})


def test_curve_is_monotonic_with_the_little_and_big_accuracy_at_its_ends() -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, K, 200)
    little = np.round(rng.normal(size=(200, K)) * 2) / 2  # coarse logits: many tied scores
    little[np.arange(200), labels] += 1.0
    big = np.where(rng.random(200) < 0.85, labels, (labels + 1) % K)
    curve = duo_curve(little, big, labels)
    assert np.all(np.diff(curve.thresholds) > 0) and np.all(np.diff(curve.rate) > 0)
    assert curve.rate[0] == 0 and curve.rate[-1] == 1
    assert curve.accuracy[0] == pytest.approx((little.argmax(1) == labels).mean())
    assert curve.accuracy[-1] == pytest.approx((big == labels).mean())
    scores = score_logits(little, "max_softmax")
    assert len(curve.rate) == len(np.unique(scores)) + 1
    for threshold, rate, accuracy in zip(curve.thresholds, curve.rate, curve.accuracy, strict=True):
        recompute = scores < threshold
        assert recompute.mean() == pytest.approx(rate)
        assert (np.where(recompute, big, little.argmax(1)) == labels).mean() == pytest.approx(accuracy)


@pytest.mark.parametrize("target", [1.0, 0.97])
def test_pair_rate_is_the_cheapest_point_of_its_curve_and_brute_force(target: float) -> None:
    pool = _pool(cheap_outsider_s=0.05)
    analysis = analyse_duo(pool, LABELS, LABELS, target=target)
    big = pool[0]
    for pair in analysis.pairs:
        if pair.big != "big":
            continue
        little = next(m for m in pool if m.name == pair.little)
        assert pair.fit.escalation_rate == pytest.approx(_brute_force_rate(little, big, target))
        needed = math.ceil(target * 80 - 1e-9) / N
        assert pair.fit.escalation_rate == pytest.approx(pair.curve.rate[pair.curve.accuracy >= needed - 1e-12].min())
        assert pair.cost is not None and pair.ratios is not None
        assert pair.cost[0] == pytest.approx(little.latency_s + pair.fit.escalation_rate * big.latency_s)
        assert pair.ratios[1] == pytest.approx(pair.cost[1] / big.energy_mj)


def test_heuristic_ranks_littles_by_odd_subset_and_can_miss_the_exhaustive_pick() -> None:
    pool = _pool(cheap_outsider_s=0.05)
    selection = analyse_duo(pool, LABELS, LABELS).selection
    assert selection.baseline == "big" and selection.single == "big"
    assert selection.ranking == (("l4", 12), ("l2", 8), ("l3", 5), ("l1", 2), ("l5", 1))
    assert selection.candidates == ("l4", "l2", "l3")
    assert selection.heuristic is not None and selection.exhaustive is not None
    assert selection.heuristic.little == _cheapest(pool, ["l4", "l2", "l3"])
    assert selection.exhaustive.little == _cheapest(pool, ["l1", "l2", "l3", "l4", "l5"]) == "l5"
    assert not selection.heuristic_agrees


def test_heuristic_agrees_when_the_outsider_is_not_cheap() -> None:
    pool = _pool(cheap_outsider_s=0.9)
    selection = analyse_duo(pool, LABELS, LABELS).selection
    assert selection.heuristic is not None and selection.exhaustive is not None
    assert selection.exhaustive.little == _cheapest(pool, ["l1", "l2", "l3", "l4", "l5"])
    assert selection.heuristic_agrees


def test_single_model_runs_when_no_pair_is_cheaper() -> None:
    rng = np.random.default_rng(0)
    big = PoolMember("big", _confident(BIG_RIGHT, rng), _confident(BIG_RIGHT, rng), 1.0, 10.0, 1, 1)
    slow = _little("slow", 40, 2, 0.95, rng)
    analysis = analyse_duo([big, slow], LABELS, LABELS)
    assert analysis.selection.heuristic is None and analysis.selection.exhaustive is None
    assert analysis.selection.heuristic_agrees and analysis.probe is None
    assert "single model big" in duo_markdown(analysis)


def test_per_class_thresholds_never_recompute_more_than_the_optimum_allows() -> None:
    analysis = analyse_duo(_pool(cheap_outsider_s=0.05), LABELS, LABELS)
    probe = analysis.probe
    assert probe is not None and (probe.little, probe.big) == ("l5", "big")
    rates = {policy: fit.escalation_rate for policy, fit in probe.fits.items()}
    assert set(rates) == {"threshold", "per-class-heuristic", "per-class-optimal"}
    assert all(rate is not None for rate in rates.values())
    assert rates["per-class-optimal"] <= rates["threshold"]
    assert rates[probe.best_policy] == min(rates.values())


def test_duo_json_round_trip(tmp_path: Path) -> None:
    pool = _pool(cheap_outsider_s=0.05)
    analysis = analyse_duo(pool, LABELS, LABELS)
    assert analysis.probe is not None
    path = write_duo(tmp_path, analysis.probe)
    config = read_duo(path)
    best = analysis.probe.fits[analysis.probe.best_policy]
    assert (config.little, config.big, config.policy, config.target) == ("l5", "big", best.detector.policy, 1.0)
    assert config.recompute_rate == best.escalation_rate
    little = next(m for m in pool if m.name == "l5")
    expected = best.detector.escalate(little.test_logits)
    assert np.array_equal(config.detector.escalate(little.test_logits), expected)
    assert {d.policy for d in read_detectors(tmp_path / "detectors.json")} == {
        "threshold",
        "per-class-heuristic",
        "per-class-optimal",
    }


def _junk_cases() -> dict[str, Callable[[dict[str, Any]], Any]]:
    def edit(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
        return lambda state: {**state, **changes}

    return {
        "a list": lambda state: [state],
        "wrong format": edit(format="specedge-trio"),
        "newer version": edit(format_version=2),
        "boolean version": edit(format_version=True),
        "same models": edit(big="l5"),
        "empty name": edit(little=""),
        "no detector": lambda state: {k: v for k, v in state.items() if k != "detector"},
        "junk detector": edit(detector={"kind": "horoscope"}),
        "rate above 1": edit(recompute_rate=1.5),
        "rate as text": edit(recompute_rate="0.1"),
        "target mismatch": edit(target=0.99),
        "policy mismatch": edit(policy="pair"),
    }


@pytest.mark.parametrize("case", list(_junk_cases()))
def test_read_duo_rejects_junk(tmp_path: Path, case: str) -> None:
    analysis = analyse_duo(_pool(cheap_outsider_s=0.05), LABELS, LABELS)
    assert analysis.probe is not None
    path = write_duo(tmp_path, analysis.probe)
    path.write_text(json.dumps(_junk_cases()[case](json.loads(path.read_text()))))
    with pytest.raises(ConfigError):
        read_duo(path)


def test_read_duo_rejects_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_duo(tmp_path / "missing.json")
    (tmp_path / "garbage.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not JSON"):
        read_duo(tmp_path / "garbage.json")


def test_bad_pools_and_labels_are_config_errors() -> None:
    pool = _pool(cheap_outsider_s=0.05)
    with pytest.raises(ConfigError, match="empty"):
        analyse_duo([], LABELS, LABELS)
    with pytest.raises(ConfigError, match="rows"):
        analyse_duo(pool, LABELS[:-1], LABELS)
    with pytest.raises(ConfigError, match="class indices"):
        analyse_duo(pool, LABELS + K, LABELS)
    with pytest.raises(ConfigError, match="integer"):
        analyse_duo(pool, LABELS.astype(float), LABELS)
    with pytest.raises(ConfigError, match="unknown baseline"):
        analyse_duo(pool, LABELS, LABELS, baseline="giant")
    with pytest.raises(ConfigError, match="top_k"):
        analyse_duo(pool, LABELS, LABELS, top_k=0)


def test_report_is_json_ready_and_markdown_has_every_pair(tmp_path: Path) -> None:
    analysis = analyse_duo(_pool(cheap_outsider_s=0.05), LABELS, LABELS)
    report = duo_report(analysis, curve_points=5)
    json_path, markdown_path = write_report(tmp_path, "duo", report, duo_markdown(analysis))
    loaded = json.loads(json_path.read_text())
    assert loaded["selection"]["heuristic_agrees"] is False
    assert loaded["probe"]["best_policy"] == analysis.probe.best_policy
    curve = loaded["pairs"][0]["curve"]
    assert curve["rate"][0] == 0 and curve["rate"][-1] == 1 and len(curve["rate"]) <= 5
    assert all(0 <= t <= 1 for t in curve["threshold"])
    markdown = markdown_path.read_text()
    assert all(f"| {p.little} | {p.big} |" in markdown for p in analysis.pairs)
