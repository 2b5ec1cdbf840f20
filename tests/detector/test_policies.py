"""Each policy against brute-force enumeration on small score tables."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from specedge.detector import policies


def _table(rng: np.random.Generator, n: int, *, classes: int = 1, ties: bool = True):
    scores = rng.integers(0, 6, n).astype(float) if ties else rng.normal(size=n)
    gain = rng.integers(-1, 2, n)
    predicted = rng.integers(0, classes, n)
    return scores, gain, predicted


def _cut_options(scores: np.ndarray) -> list[float]:
    """Every threshold that gives a distinct escalation set: below all, and just above each value."""
    values = np.unique(scores)
    return [values[0] - 1.0, *(values + 1e-9)]


def _achievable(gain: np.ndarray, required_offset: int) -> int:
    return int(gain.sum()) - required_offset


@pytest.mark.parametrize("seed", range(60))
def test_single_threshold_is_the_fewest_escalations_reaching_the_gain(seed):
    rng = np.random.default_rng(seed)
    scores, gain, _ = _table(rng, rng.integers(1, 14))
    best_possible = max(int(gain[scores < t].sum()) for t in _cut_options(scores))
    required = int(rng.integers(-3, best_possible + 2))
    feasible = [(int((scores < t).sum()), t) for t in _cut_options(scores) if gain[scores < t].sum() >= required]
    if not feasible:
        with pytest.raises(policies.UnreachableTarget) as info:
            policies.single_threshold(scores, gain, required)
        assert info.value.best_gain == best_possible
        return
    threshold = policies.single_threshold(scores, gain, required)
    escalated = scores < threshold
    assert gain[escalated].sum() >= required
    assert escalated.sum() == min(count for count, _ in feasible)


def _per_class_brute_force(scores, gain, predicted, classes, required):
    options = [_cut_options(scores[predicted == c]) if (predicted == c).any() else [0.0] for c in range(classes)]
    best = None
    for thresholds in itertools.product(*options):
        escalated = scores < np.array(thresholds)[predicted]
        if gain[escalated].sum() >= required and (best is None or escalated.sum() < best):
            best = int(escalated.sum())
    return best


@pytest.mark.parametrize("seed", range(60))
def test_per_class_optimum_matches_brute_force_and_never_loses_to_the_heuristic(seed):
    rng = np.random.default_rng(1000 + seed)
    classes = 3
    scores, gain, predicted = _table(rng, int(rng.integers(2, 12)), classes=classes)
    most = sum(
        max(int(gain[(predicted == c) & (scores < t)].sum()) for t in _cut_options(scores[predicted == c]))
        for c in range(classes)
        if (predicted == c).any()
    )
    required = int(rng.integers(-2, most + 2))
    brute = _per_class_brute_force(scores, gain, predicted, classes, required)
    if brute is None:
        with pytest.raises(policies.UnreachableTarget) as info:
            policies.per_class_optimal(scores, predicted, classes, gain, required)
        assert info.value.best_gain == most
        return
    thresholds = policies.per_class_optimal(scores, predicted, classes, gain, required)
    escalated = scores < thresholds[predicted]
    assert gain[escalated].sum() >= required
    assert escalated.sum() == brute
    heuristic = policies.per_class_heuristic(scores, predicted, classes, gain, required)
    escalated_heuristic = scores < heuristic[predicted]
    assert gain[escalated_heuristic].sum() >= required
    assert escalated_heuristic.sum() >= brute


def _midpoints(scores: np.ndarray) -> list[float]:
    """Thresholds placed as the policies place them: midway between neighbouring distinct scores."""
    values = np.unique(scores)
    return [values[0] - 1.0, *((values[1:] + values[:-1]) / 2), values[-1] + 1.0]


def _heuristic_by_hand(scores, gain, predicted, classes, required):
    """Dynamic Duo's recipe, literally: best threshold per class, then lower all in tiny equal steps."""
    start = np.zeros(classes)
    for c in range(classes):
        members = predicted == c
        if not members.any():
            continue
        options = _midpoints(scores[members])
        gains = [gain[members & (scores < t)].sum() for t in options]
        counts = [(members & (scores < t)).sum() for t in options]
        best = max(gains)
        start[c] = min((count, t) for count, g, t in zip(counts, gains, options, strict=True) if g == best)[1]
    escalated = scores < start[predicted]
    for drop in np.arange(0.0, 8.0, 1e-3):
        candidate = scores < (start - drop)[predicted]
        if gain[candidate].sum() < required:
            break
        escalated = candidate
    return int(escalated.sum())


@pytest.mark.parametrize("seed", range(40))
def test_per_class_heuristic_follows_dynamic_duo_recipe(seed):
    rng = np.random.default_rng(2000 + seed)
    scores, gain, predicted = _table(rng, int(rng.integers(2, 12)), classes=3)
    start_total = 0
    for c in range(3):
        members = predicted == c
        if members.any():
            start_total += max(int(gain[members & (scores < t)].sum()) for t in _cut_options(scores[members]))
    required = int(rng.integers(-2, start_total + 1))
    thresholds = policies.per_class_heuristic(scores, predicted, 3, gain, required)
    assert (scores < thresholds[predicted]).sum() == _heuristic_by_hand(scores, gain, predicted, 3, required)


@pytest.mark.parametrize("seed", range(40))
def test_pair_thresholds_match_brute_force(seed):
    rng = np.random.default_rng(3000 + seed)
    n = int(rng.integers(1, 11))
    first, gain, _ = _table(rng, n, ties=False)
    second = rng.normal(size=n)
    agree = rng.random(n) < 0.7
    combos = [
        ((first < t1) | (second < t2) | ~agree)
        for t1 in [*_cut_options(first), first.max() + 1]
        for t2 in [*_cut_options(second), second.max() + 1]
    ]
    most = max(int(gain[e].sum()) for e in combos)
    required = int(rng.integers(-2, most + 2))
    feasible = [int(e.sum()) for e in combos if gain[e].sum() >= required]
    if not feasible:
        with pytest.raises(policies.UnreachableTarget):
            policies.pair_thresholds(first, second, agree, gain, required)
        return
    t1, t2 = policies.pair_thresholds(first, second, agree, gain, required)
    escalated = (first < t1) | (second < t2) | ~agree
    assert gain[escalated].sum() >= required
    assert escalated.sum() == min(feasible)


def test_ties_are_never_split():
    scores = np.array([1.0, 1.0, 1.0, 2.0])
    gain = np.array([1, 0, 0, 0])
    threshold = policies.single_threshold(scores, gain, 1)
    assert (scores < threshold).sum() == 3  # the three tied inputs go together
