"""Escalation policies: the fewest escalations that still reach a required gain.

Escalating input ``i`` replaces the speculative answer with the master's and changes the number
of good final answers by ``gain[i]``: ``master_correct - speculative_correct`` (in -1, 0, 1) when
the quality is accuracy, ``1`` where the two models disagree when it is agreement with the master.
A policy escalates inputs whose *keep score* is low and must collect ``required`` gain with as
few escalations as possible:

- :func:`single_threshold`: one threshold on the score (SIEVE, thesis section 4.3.3);
- :func:`per_class_heuristic`: one threshold per predicted class, Dynamic Duo's heuristic
  (thesis section 6.4.2): each class at its most accurate threshold, then all thresholds
  lowered by equal steps while the target still holds;
- :func:`per_class_optimal`: the exact optimum of the same multiple-choice knapsack by dynamic
  programming over the (small, integer) total gain, so never worse than the heuristic;
- :func:`pair_thresholds`: M&MNet's rule for a minion pair (thesis section 5.2.3): escalate
  when either minion is unconfident or the two disagree, with the best pair of thresholds.

Only cuts between distinct scores are realisable by a threshold; a threshold sits midway
between the last escalated and the first kept score. Every function is exact on its data
(tests compare each with brute force) and raises :class:`UnreachableTarget` with the best
achievable gain when no choice reaches ``required``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "UnreachableTarget",
    "pair_thresholds",
    "per_class_heuristic",
    "per_class_optimal",
    "single_threshold",
]

#: Thresholds beyond every score: "keep all" sits this far below the lowest, "escalate all" above the highest.
_MARGIN = 1.0


class UnreachableTarget(Exception):  # noqa: N818 (internal signal; the detector turns it into a ConfigError)
    """No threshold choice collects the required gain; ``best_gain`` is the most on offer."""

    def __init__(self, best_gain: int) -> None:
        super().__init__(f"best achievable gain {best_gain}")
        self.best_gain = best_gain


@dataclass(frozen=True)
class _Cuts:
    """Escalating the ``k`` lowest-scored inputs of one group, for every realisable ``k``."""

    sorted_scores: np.ndarray  # ascending
    k: np.ndarray  # realisable numbers of escalated inputs, 0..n
    gain: np.ndarray  # total gain of escalating the k lowest

    def threshold(self, k: int) -> float:
        """The threshold that escalates exactly the ``k`` lowest (midway between neighbours)."""
        s = self.sorted_scores
        if len(s) == 0:
            return float("inf")
        if k == 0:
            return float(s[0] - _MARGIN)
        if k == len(s):
            return float(s[-1] + _MARGIN)
        return float((s[k - 1] + s[k]) / 2)


def _cuts(scores: np.ndarray, gain: np.ndarray) -> _Cuts:
    order = np.argsort(scores, kind="stable")
    s = scores[order]
    cumulative = np.concatenate([[0], np.cumsum(gain[order])])
    realisable = np.ones(len(s) + 1, dtype=bool)
    realisable[1 : len(s)] = s[1:] > s[:-1]
    k = np.flatnonzero(realisable)
    return _Cuts(sorted_scores=s, k=k, gain=cumulative[k].astype(np.int64))


def single_threshold(keep: np.ndarray, gain: np.ndarray, required: int) -> float:
    """Escalate ``keep < threshold``: the threshold with the fewest escalations reaching ``required``."""
    cuts = _cuts(keep, gain)
    feasible = np.flatnonzero(cuts.gain >= required)
    if not feasible.size:
        raise UnreachableTarget(int(cuts.gain.max()))
    return cuts.threshold(int(cuts.k[feasible[0]]))


def _class_cuts(keep: np.ndarray, classes: np.ndarray, num_classes: int, gain: np.ndarray) -> list[_Cuts]:
    return [_cuts(keep[classes == c], gain[classes == c]) for c in range(num_classes)]


def per_class_optimal(
    keep: np.ndarray, classes: np.ndarray, num_classes: int, gain: np.ndarray, required: int
) -> np.ndarray:
    """Per-class thresholds ``(num_classes,)`` with the fewest escalations in total (exact).

    Dynamic programming over the total gain: gains are small integers, so the table has one
    entry per reachable total (at most the number of inputs whose gain is not 0) and each
    class contributes, per distinct gain value, only its cheapest cut.
    """
    per_class = _class_cuts(keep, classes, num_classes, gain)
    low = sum(int(c.gain.min()) for c in per_class)
    high = sum(int(c.gain.max()) for c in per_class)
    if high < required:
        raise UnreachableTarget(high)
    size = high - low + 1
    cost = np.full(size, np.iinfo(np.int64).max // 4, dtype=np.int64)
    cost[-low] = 0  # index = total gain - low
    choices: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for cuts in per_class:
        values, first = np.unique(cuts.gain, return_index=True)
        # cuts.k ascends, so the first occurrence of each gain value is its cheapest cut.
        cheapest_k = cuts.k[first]
        best = np.full(size, np.iinfo(np.int64).max // 4, dtype=np.int64)
        pick = np.full(size, -1, dtype=np.int64)
        for option, (value, k) in enumerate(zip(values, cheapest_k, strict=True)):
            shifted = np.full(size, np.iinfo(np.int64).max // 4, dtype=np.int64)
            if value >= 0:
                shifted[value:] = cost[: size - value] + k
            else:
                shifted[:value] = cost[-value:] + k
            better = shifted < best
            best[better] = shifted[better]
            pick[better] = option
        choices.append((values, cheapest_k, pick))
        cost = best
    totals = np.arange(low, high + 1)
    feasible = np.flatnonzero(totals >= required)
    # Fewest escalations; among equals, the most gain (the most accurate system).
    index = int(feasible[np.lexsort((-totals[feasible], cost[feasible]))[0]])
    thresholds = np.empty(num_classes)
    for c in range(num_classes - 1, -1, -1):
        values, cheapest_k, pick = choices[c]
        option = int(pick[index])
        thresholds[c] = per_class[c].threshold(int(cheapest_k[option]))
        index -= int(values[option])
    return thresholds


def per_class_heuristic(
    keep: np.ndarray, classes: np.ndarray, num_classes: int, gain: np.ndarray, required: int
) -> np.ndarray:
    """Dynamic Duo's per-class thresholds (thesis section 6.4.2).

    Each class starts at the threshold that maximises its own gain (the fewest escalations among
    ties); then all thresholds drop by one common amount, as far as the total gain stays at or
    above ``required`` (scanning the exact points where an input changes side).
    """
    per_class = _class_cuts(keep, classes, num_classes, gain)
    start = np.array([cuts.threshold(int(cuts.k[np.argmax(cuts.gain)])) for cuts in per_class])
    total = sum(int(cuts.gain.max()) for cuts in per_class)
    if total < required:
        raise UnreachableTarget(total)
    start_of = start[classes]
    escalated = keep < start_of
    # Lowering every threshold by `drop` keeps input i once drop >= start - keep.
    events = (start_of - keep)[escalated]
    event_gain = gain[escalated]
    order = np.argsort(events, kind="stable")
    events, event_gain = events[order], event_gain[order]
    after = total - np.cumsum(event_gain)  # total gain once events[: j + 1] are kept
    last_event = np.concatenate([events[1:] > events[:-1], [True]])  # apply tied events together
    ok = (after >= required) | ~last_event
    allowed = len(events) if ok.all() else int(np.argmin(ok))  # first group that breaks the target
    while allowed > 0 and not last_event[allowed - 1]:
        allowed -= 1  # never stop inside a group of tied events
    if allowed == 0:
        drop = 0.0
    elif allowed == len(events):
        drop = float(events[-1] + _MARGIN)
    else:
        drop = float((events[allowed - 1] + events[allowed]) / 2)
    thresholds: np.ndarray = start - drop
    return thresholds


def pair_thresholds(
    keep_first: np.ndarray, keep_second: np.ndarray, agree: np.ndarray, gain: np.ndarray, required: int
) -> tuple[float, float]:
    """Thresholds ``(t1, t2)`` of M&MNet's rule with the fewest escalations (exact over realisable cuts).

    Escalate when ``keep_first < t1`` or ``keep_second < t2`` or the minions disagree. For each
    realisable ``t1`` the best ``t2`` is a one-dimensional cut over the inputs ``t1`` keeps, so
    the search is quadratic in the number of agreeing inputs, vectorised per ``t1``.
    """
    forced_gain = int(gain[~agree].sum())
    forced = int((~agree).sum())
    if not agree.any():  # every input is escalated whatever the thresholds
        if forced_gain < required:
            raise UnreachableTarget(forced_gain)
        return 0.0, 0.0
    s1, s2, g = keep_first[agree], keep_second[agree], gain[agree].astype(np.int64)
    cuts1 = _cuts(s1, g)
    order1 = np.argsort(s1, kind="stable")
    rank1 = np.empty(len(s1), dtype=np.int64)
    rank1[order1] = np.arange(len(s1))
    order2 = np.argsort(s2, kind="stable")
    s2_sorted, rank1_by2, g_by2 = s2[order2], rank1[order2], g[order2]
    boundary2 = np.concatenate([[True], s2_sorted[1:] > s2_sorted[:-1], [True]])  # cut after j realisable
    best: tuple[int, int, int, int] | None = None  # (escalations, -gain, k1, k2 as count in s2 order)
    best_gain = forced_gain + int(cuts1.gain.max(initial=0))
    for k1, gain1 in zip(cuts1.k, cuts1.gain, strict=True):
        remaining = rank1_by2 >= k1
        cumulative = np.concatenate([[0], np.cumsum(np.where(remaining, g_by2, 0))])
        count = np.concatenate([[0], np.cumsum(remaining)])
        total = forced_gain + int(gain1) + cumulative
        best_gain = max(best_gain, int(total[boundary2].max()))
        feasible = np.flatnonzero(boundary2 & (total >= required))
        if not feasible.size:
            continue
        escalations = forced + int(k1) + count[feasible]
        j = int(feasible[np.lexsort((-total[feasible], escalations))[0]])
        candidate = (forced + int(k1) + int(count[j]), -int(total[j]), int(k1), j)
        if best is None or candidate[:2] < best[:2]:
            best = candidate
    if best is None:
        raise UnreachableTarget(best_gain)
    _, _, k1, j = best
    t1 = cuts1.threshold(k1)
    if j == 0:
        t2 = float(s2_sorted[0] - _MARGIN) if len(s2_sorted) else float("-inf")
    elif j == len(s2_sorted):
        t2 = float(s2_sorted[-1] + _MARGIN)
    else:
        t2 = float((s2_sorted[j - 1] + s2_sorted[j]) / 2)
    return t1, t2
