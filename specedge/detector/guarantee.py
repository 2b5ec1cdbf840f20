"""Learn-then-Test: thresholds whose quality holds with probability 1 - delta.

A threshold fitted to *meet* the target on calibration data misses it on new data about half
of the time. Learn-then-Test (Angelopoulos et al., 2021) instead tests, for each threshold on a
grid fixed in advance, the null hypothesis "this threshold breaks the target" and keeps only
thresholds whose null is rejected with a family-wise error of at most ``delta``. Whatever the
calibration draw, the probability that a kept threshold breaks the target is then at most
``delta``, assuming calibration and operating inputs are exchangeable (drawn from the same
distribution; drift breaks this, which is what :mod:`specedge.detector.audit` watches for).

The hypotheses run from "escalate almost everything" towards "escalate nothing" and are tested
in that fixed sequence, each at level ``delta``, stopping at the first that is not rejected
(MAPIE's ``control_fwer(..., "fixed_sequence")``); the most aggressive rejected threshold wins.
Two qualities are certified:

- **agreement** with the master (no labels needed): the loss ``kept and disagrees`` is binary,
  and MAPIE's Hoeffding-Bentkus p-value for binary losses (exact binomial tail) tests it;
- **accuracy** relative to the master: system accuracy >= ``target`` x master accuracy is
  ``E[Z] <= 0`` for ``Z = kept * (master_correct - speculative_correct) - (1 - target) *
  master_correct``. ``Z`` takes four values in ``[-1, target]``, so MAPIE's binary p-values do
  not apply and its non-binary Bentkus bound ignores that ``Z`` is almost always 0; we use the
  betting test of Waudby-Smith and Ramdas (2024) (the "WSR" bound of Bates et al.'s RCPS),
  whose power adapts to the small variance. It is sequential, so inputs are taken in a seeded
  random order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from mapie.risk_control import FWERFixedSequenceTesting, control_fwer
from mapie.risk_control.methods import compute_hoeffding_bentkus_p_value

__all__ = [
    "THRESHOLD_GRID",
    "Certificate",
    "NotCertifiable",
    "certify_accuracy",
    "certify_agreement",
    "wsr_p_values",
]

#: Keep-score thresholds tested in sequence (log-odds units, step 0.01), most conservative first.
THRESHOLD_GRID = np.round(np.linspace(40.0, -40.0, 8001), 2)

_CHUNK = 256  # thresholds evaluated at once by the sequential (WSR) test


@dataclass(frozen=True)
class Certificate:
    """The chosen threshold and the test behind it."""

    threshold: float  # escalate inputs whose keep score is below this; inf = escalate everything
    p_value: float  # of the chosen threshold's null hypothesis (0 for "escalate everything")
    n: int  # calibration inputs the test used
    n_starts: int  # fixed-sequence starts; delta is split evenly between them


class NotCertifiable(Exception):  # noqa: N818 (internal signal; the detector turns it into a ConfigError)
    """No threshold short of escalating everything passes.

    ``needed`` estimates the calibration inputs it would take (a Bernstein bound at the best
    threshold, if the data looked the same); None when more data of this kind would not help
    or the estimate is not above the inputs already used.
    """

    def __init__(self, reason: str, needed: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.needed = needed


def wsr_p_values(losses: np.ndarray, null_mean: float, delta: float) -> np.ndarray:
    """Betting p-values for ``H0: E[loss] >= null_mean`` per column of ``losses`` (``(n, L)`` in [0, 1]).

    The capital ``prod(1 - nu_t (x_t - null_mean))`` is a non-negative supermartingale under
    the null (Ville's inequality), so ``1 / max capital`` is a valid p-value; ``nu_t`` is the
    predictable, variance-adaptive bet of Waudby-Smith and Ramdas (2024), Bates et al. (2021).
    """
    n = losses.shape[0]
    t = np.arange(1, n + 1, dtype=np.float64)[:, None]
    mean = (0.5 + np.cumsum(losses, axis=0)) / (t + 1)
    variance = (0.25 + np.cumsum((losses - mean) ** 2, axis=0)) / (t + 1)
    previous = np.vstack([np.full((1, losses.shape[1]), 0.25), variance[:-1]])
    bet = np.minimum(1.0, np.sqrt(2 * math.log(1 / delta) / (n * previous)))
    log_capital = np.cumsum(np.log1p(-bet * (losses - null_mean)), axis=0)
    out: np.ndarray = np.exp(-np.maximum(log_capital.max(axis=0), 0.0))
    return out


def _fixed_sequence(p_values: np.ndarray, delta: float, n_starts: int) -> int | None:
    """Index of the most aggressive threshold rejected by fixed-sequence testing (MAPIE), if any."""
    rejected = control_fwer(p_values, delta, FWERFixedSequenceTesting(n_starts=n_starts))
    return int(rejected.max()) if len(rejected) else None


def _bernstein_size(mean_gap: np.ndarray, variance: np.ndarray, span: float, delta: float) -> float:
    """Inputs a Bernstein bound needs to show a mean ``mean_gap`` below its null (an estimate)."""
    log_term = math.log(1 / delta)
    sizes = 2 * variance * log_term / mean_gap**2 + 2 * span * log_term / (3 * mean_gap)
    return float(sizes.min())


def _kept_risk(keep: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Mean of ``loss`` over kept inputs, divided by n, at every grid threshold (sorted, not (n, L))."""
    order = np.argsort(keep)
    kept_sum = np.concatenate([np.cumsum(loss[order][::-1])[::-1], [0.0]])  # sum over keep >= sorted[i]
    first_kept = np.searchsorted(keep[order], THRESHOLD_GRID, side="left")
    out: np.ndarray = kept_sum[first_kept] / len(keep)
    return out


def certify_agreement(
    keep: np.ndarray, disagree: np.ndarray, target: float, delta: float, *, n_starts: int = 1
) -> Certificate:
    """Certify ``P(answer == master's) >= target``: the loss is ``kept and disagrees``.

    The risk only falls as the threshold rises, so one start at the conservative end is the
    most powerful order.
    """
    n = len(keep)
    alpha = 1.0 - target
    risk = _kept_risk(keep, disagree.astype(np.float64))
    p_values = compute_hoeffding_bentkus_p_value(risk, n, alpha, binary=True)[:, 0]
    chosen = _fixed_sequence(p_values, delta, n_starts)
    if chosen is None:
        best_case = math.ceil(math.log(delta) / math.log1p(-alpha))
        if n < best_case:
            raise NotCertifiable(f"even with no disagreement among kept answers it needs {best_case:,}", best_case)
        gap = alpha - risk
        useful = gap > 0
        needed = math.ceil(_bernstein_size(gap[useful], risk[useful] * (1 - risk[useful]), 1.0, delta))
        raise NotCertifiable(
            "the most confident answers disagree with the master too often", needed if needed > n else None
        )
    return Certificate(float(THRESHOLD_GRID[chosen]), float(p_values[chosen]), n, n_starts)


def _lazy_fixed_sequence(
    p_values_of: Callable[[np.ndarray], np.ndarray], delta: float, n_starts: int
) -> tuple[int | None, np.ndarray]:
    """Fixed-sequence testing that computes p-values only where the sequence gets to.

    From each start the test walks the grid until a null survives; nothing beyond is ever
    tested, so those p-values are left at 1 and MAPIE's procedure decides on the result.
    """
    size = len(THRESHOLD_GRID)
    p_values = np.full(size, np.nan)
    level = delta / n_starts
    for start in range(0, size, size // n_starts)[:n_starts]:
        position = start
        while position < size:
            stop = min(position + _CHUNK, size)
            if np.isnan(p_values[position:stop]).any():
                p_values[position:stop] = p_values_of(np.arange(position, stop))
            if (p_values[position:stop] > level).any():
                break
            position = stop
    p_values = np.where(np.isnan(p_values), 1.0, p_values)
    return _fixed_sequence(p_values, delta, n_starts), p_values


def certify_accuracy(
    keep: np.ndarray,
    master_correct: np.ndarray,
    speculative_correct: np.ndarray,
    target: float,
    delta: float,
    *,
    rng: np.random.Generator,
    n_starts: int = 1,
) -> Certificate:
    """Certify ``system accuracy >= target x master accuracy`` (``target`` in (0, 1.5]).

    Below 100% the conservative end of the grid is the easiest to certify and one start is
    best. At 100% escalating almost everything sits exactly on the null (``Z = 0``), and only
    thresholds that keep some of the inputs the master gets wrong can pass; several starts
    along the grid (``delta`` split between them) reach them.
    """
    n = len(keep)
    order = rng.permutation(n)
    m = master_correct[order].astype(np.float64)
    gain = m - speculative_correct[order].astype(np.float64)
    slack = (1.0 - target) * m
    span = 1.0 + target  # Z lies in [-1, target]
    null = 1.0 / span  # Z = 0 after rescaling to [0, 1]
    # Thresholds between the same two scores keep the same inputs: test each kept set once.
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(keep[order], kind="stable")] = np.arange(n)
    escalated_count = np.searchsorted(np.sort(keep), THRESHOLD_GRID, side="left")

    def rescaled(counts: np.ndarray) -> np.ndarray:
        out: np.ndarray = ((rank[:, None] >= counts[None, :]) * gain[:, None] - slack[:, None] + 1.0) / span
        return out

    def p_values_of(grid_index: np.ndarray) -> np.ndarray:
        counts, inverse = np.unique(escalated_count[grid_index], return_inverse=True)
        out: np.ndarray = wsr_p_values(rescaled(counts), null, delta / n_starts)[inverse]
        return out

    chosen, p_values = _lazy_fixed_sequence(p_values_of, delta, n_starts)
    if chosen is None:
        counts = np.unique(escalated_count)
        gaps, variances = [], []
        for start in range(0, len(counts), 512):
            x = rescaled(counts[start : start + 512])
            gaps.append(null - x.mean(axis=0))
            variances.append(x.var(axis=0))
        gap, variance = np.concatenate(gaps), np.concatenate(variances)
        useful = gap > 0
        if not useful.any():
            raise NotCertifiable(
                "no threshold meets the target on the calibration data itself, so no number of such inputs would do",
                None,
            )
        needed = math.ceil(_bernstein_size(gap[useful], variance[useful], 1.0, delta / n_starts))
        raise NotCertifiable("no threshold passes the test", needed if needed > n else None)
    return Certificate(float(THRESHOLD_GRID[chosen]), float(p_values[chosen]), n, n_starts)
