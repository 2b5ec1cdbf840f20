"""Dynamic Duo: a little model answers, a big one recomputes its doubtful inputs, on a server (thesis ch. 6).

Every input runs on the *little* model; a confidence probe recomputes those below a threshold on
the *big* one (section 6.3.2). For a pool of models with stored logits and server costs this
module reproduces the system set-up of section 6.4:

- per (little, big) pair with the little cheaper: the correct sets on validation (common, odd,
  complex, neither; section 6.2.2, Fig. 6.1), the accuracy vs recomputation-rate curve (Fig. 6.8),
  the recomputation rate ``P_r`` that keeps ``target`` x the big's accuracy on validation (judged
  on test), ``L_pair = L_little + P_r x L_big`` and ``E_pair`` likewise (section 6.4.1);
- pair selection (section 6.4.3): the heuristic takes as big the cheapest model at least as
  accurate as the baseline, keeps the ``top_k`` littles with the largest odd subsets against it and
  picks the cheapest pair; the exhaustive search prices every pair whose big is that accurate.
  A pair counts only if it is cheaper than that single model (otherwise DD runs the single model,
  section 6.5.2);
- the chosen pair's probe with one threshold and with per-class thresholds (section 6.4.2), and
  its export as ``duo.json`` plus a detector bank that a cloud service loads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specedge.detector import MisspeculationDetector, check_target, load_detector, score_logits
from specedge.detector.bank import write_detectors
from specedge.errors import ConfigError
from specedge.pairing.minions import MasterReference, PoolMember, Speculation, check_pool, fit_speculation

__all__ = [
    "DUO_FORMAT",
    "DUO_FORMAT_VERSION",
    "PROBE_POLICIES",
    "CorrectSets",
    "DuoAnalysis",
    "DuoConfig",
    "DuoCurve",
    "DuoPair",
    "DuoProbe",
    "DuoSelection",
    "analyse_duo",
    "correct_sets",
    "duo_curve",
    "read_duo",
    "write_duo",
]

DUO_FORMAT = "specedge-duo"
DUO_FORMAT_VERSION = 1
#: The probe's policies, simplest first: on equal recomputation rates the simpler one is exported.
PROBE_POLICIES = ("threshold", "per-class-heuristic", "per-class-optimal")


@dataclass(frozen=True)
class CorrectSets:
    """Counts of the Venn diagram of a (little, big) pair on one split (thesis section 6.2.2, Fig. 6.1).

    common: both right; odd: little right, big wrong; complex: big right, little wrong; neither.
    """

    common: int
    odd: int
    complex: int
    neither: int

    @property
    def total(self) -> int:
        """Inputs counted."""
        return self.common + self.odd + self.complex + self.neither

    def fractions(self) -> dict[str, float]:
        """Each set as a fraction of all inputs."""
        return {name: count / self.total for name, count in vars(self).items()}


def correct_sets(little_predictions: np.ndarray, big_predictions: np.ndarray, labels: np.ndarray) -> CorrectSets:
    """The pair's correct sets from predictions ``(N,)`` and labels ``(N,)``."""
    little, big = little_predictions == labels, big_predictions == labels
    return CorrectSets(
        common=int((little & big).sum()),
        odd=int((little & ~big).sum()),
        complex=int((~little & big).sum()),
        neither=int((~little & ~big).sum()),
    )


@dataclass(frozen=True, eq=False)
class DuoCurve:
    """System accuracy against recomputation rate over every realisable threshold (thesis Fig. 6.8).

    Arrays share one length and ascend with ``thresholds`` (on the score scale of
    :mod:`specedge.detector.scores`; inputs scoring below a threshold are recomputed): ``rate``
    runs from 0 (the little's accuracy) to 1 (the big's).
    """

    thresholds: np.ndarray
    rate: np.ndarray
    accuracy: np.ndarray


def duo_curve(
    little_logits: np.ndarray, big_predictions: np.ndarray, labels: np.ndarray, *, score: str = "max_softmax"
) -> DuoCurve:
    """The curve of one pair: recompute the ``k`` least confident inputs, for every ``k`` a threshold can cut."""
    scores = score_logits(little_logits, score)
    order = np.argsort(scores, kind="stable")
    ordered = scores[order]
    little_right = (little_logits.argmax(axis=1) == labels)[order]
    big_right = (big_predictions == labels)[order]
    n = len(ordered)
    right = little_right.sum() + np.concatenate([[0], np.cumsum(big_right.astype(np.int64) - little_right)])
    # Cutting before position k is realisable only between distinct scores; the threshold s[k]
    # recomputes exactly the k inputs below it, and just above the top score recomputes them all.
    cuts = np.flatnonzero(np.concatenate([[True], ordered[1:] > ordered[:-1], [True]]))
    thresholds = np.append(ordered, np.nextafter(ordered[-1], np.inf))[cuts]
    return DuoCurve(thresholds=thresholds, rate=cuts / n, accuracy=right[cuts] / n)


@dataclass(frozen=True, eq=False)
class DuoPair:
    """One (little, big) pair: its correct sets and curve on validation, and its single-threshold probe.

    ``fit`` holds ``P_r`` on validation at ``target`` x the big's accuracy, its test rate and the
    test accuracy relative to the big's.
    """

    little: str
    big: str
    sets: CorrectSets
    curve: DuoCurve
    fit: Speculation
    big_cost: tuple[float, float]

    @property
    def reachable(self) -> bool:
        """Whether the target is reached on validation."""
        return self.fit.reachable

    @property
    def cost(self) -> tuple[float, float] | None:
        """``(L_pair, E_pair)`` per input (thesis section 6.4.1), or None when unreachable."""
        return self.fit.expected_cost(self.big_cost) if self.fit.reachable else None

    @property
    def ratios(self) -> tuple[float, float] | None:
        """``(L_pair / L_big, E_pair / E_big)``, or None when unreachable."""
        cost = self.cost
        return None if cost is None else (cost[0] / self.big_cost[0], cost[1] / self.big_cost[1])


@dataclass(frozen=True)
class DuoSelection:
    """The heuristic and the exhaustive pair search for one baseline (thesis sections 6.4.3, 6.5.5).

    ``single`` is the cheapest model at least as accurate as ``baseline`` on validation: the
    heuristic's big, and what runs when no pair is cheaper. ``ranking`` lists the littles cheaper
    than it by the size of their odd subset against it, largest first; the heuristic prices the
    first ``top_k``.
    """

    baseline: str
    single: str
    ranking: tuple[tuple[str, int], ...]
    top_k: int
    heuristic: DuoPair | None
    exhaustive: DuoPair | None

    @property
    def candidates(self) -> tuple[str, ...]:
        """The littles the heuristic prices."""
        return tuple(name for name, _ in self.ranking[: self.top_k])

    @property
    def heuristic_agrees(self) -> bool:
        """Whether the heuristic finds the exhaustive search's pair (or both fall back to the single model)."""
        pick = [None if p is None else (p.little, p.big) for p in (self.heuristic, self.exhaustive)]
        return pick[0] == pick[1]


@dataclass(frozen=True, eq=False)
class DuoProbe:
    """The chosen pair's confidence probe under each of :data:`PROBE_POLICIES` (thesis section 6.4.2)."""

    little: str
    big: str
    target: float
    fits: dict[str, Speculation]

    @property
    def best_policy(self) -> str:
        """The policy with the lowest recomputation rate on validation (the simpler one on ties)."""
        rates = {policy: fit.escalation_rate for policy, fit in self.fits.items() if fit.escalation_rate is not None}
        return min(rates, key=lambda policy: (rates[policy], PROBE_POLICIES.index(policy)))


@dataclass(frozen=True, eq=False)
class DuoAnalysis:
    """Every pair, the pair search and the chosen pair's probe (None when the single model wins)."""

    target: float
    score: str
    accuracy: dict[str, tuple[float, float]]  # name -> (validation, test) accuracy
    pairs: tuple[DuoPair, ...]
    selection: DuoSelection
    probe: DuoProbe | None


def _reference(big: PoolMember, val_labels: np.ndarray, test_labels: np.ndarray) -> MasterReference:
    """The big model in the role of the master: the detector's target is a fraction of its accuracy."""
    return MasterReference(
        big.name, big.val_logits.argmax(axis=1), big.test_logits.argmax(axis=1), val_labels, test_labels
    )


def _pair(
    little: PoolMember, big: PoolMember, val_labels: np.ndarray, test_labels: np.ndarray, *, target: float, score: str
) -> DuoPair:
    reference = _reference(big, val_labels, test_labels)
    return DuoPair(
        little=little.name,
        big=big.name,
        sets=correct_sets(little.val_logits.argmax(axis=1), reference.val_predictions, val_labels),
        curve=duo_curve(little.val_logits, reference.val_predictions, val_labels, score=score),
        fit=fit_speculation((little,), reference, policy="threshold", target=target, score=score),
        big_cost=big.cost,
    )


def _cheapest(pairs: Sequence[DuoPair], below: tuple[float, float]) -> DuoPair | None:
    """The cheapest reachable pair costing less than ``below`` (latency first, then energy)."""
    priced = [(pair.cost, index) for index, pair in enumerate(pairs) if pair.cost is not None and pair.cost < below]
    return pairs[min(priced)[1]] if priced else None


def _select(
    pool: Sequence[PoolMember], pairs: Sequence[DuoPair], accuracy: dict[str, float], baseline: str, top_k: int
) -> DuoSelection:
    required = accuracy[baseline]
    single = min((m for m in pool if accuracy[m.name] >= required), key=lambda m: m.cost)
    with_single = [pair for pair in pairs if pair.big == single.name]
    ranked = sorted(with_single, key=lambda pair: -pair.sets.odd)  # stable: pool order on ties
    candidates = {pair.little for pair in ranked[:top_k]}
    return DuoSelection(
        baseline=baseline,
        single=single.name,
        ranking=tuple((pair.little, pair.sets.odd) for pair in ranked),
        top_k=top_k,
        heuristic=_cheapest([pair for pair in with_single if pair.little in candidates], single.cost),
        exhaustive=_cheapest([pair for pair in pairs if accuracy[pair.big] >= required], single.cost),
    )


def _probe(
    pool: Sequence[PoolMember],
    chosen: DuoPair,
    val_labels: np.ndarray,
    test_labels: np.ndarray,
    *,
    target: float,
    score: str,
) -> DuoProbe:
    """The chosen pair's probe under every policy; the single threshold is the pair's own fit."""
    little, big = (next(m for m in pool if m.name == name) for name in (chosen.little, chosen.big))
    reference = _reference(big, val_labels, test_labels)
    fits = {"threshold": chosen.fit} | {
        policy: fit_speculation((little,), reference, policy=policy, target=target, score=score)
        for policy in PROBE_POLICIES[1:]
    }
    return DuoProbe(little=little.name, big=big.name, target=target, fits=fits)


def _check_labels(pool: Sequence[PoolMember], val_labels: np.ndarray, test_labels: np.ndarray) -> None:
    for what, labels in (("validation", val_labels), ("test", test_labels)):
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer) or len(labels) == 0:
            raise ConfigError(
                f"{what} labels must be a non-empty (N,) integer array; got {labels.dtype} {labels.shape}"
            )
    k = check_pool(pool, val_size=len(val_labels), test_size=len(test_labels))
    if min(val_labels.min(), test_labels.min()) < 0 or max(val_labels.max(), test_labels.max()) >= k:
        raise ConfigError(f"labels must be class indices in 0..{k - 1}")


def analyse_duo(
    pool: Sequence[PoolMember],
    val_labels: np.ndarray,
    test_labels: np.ndarray,
    *,
    target: float = 1.0,
    baseline: str | None = None,
    score: str = "max_softmax",
    top_k: int = 3,
) -> DuoAnalysis:
    """Analyse every (little, big) pair of ``pool`` (server costs), search for the best, configure its probe.

    Args:
        pool: candidate models with logits on both splits and per-input server latency and energy.
        val_labels: ``(N_val,)`` labels of the validation split (everything is chosen on it).
        test_labels: ``(N_test,)`` labels of the test split (where the choices are judged).
        target: fraction of the big's validation accuracy a pair must keep (1.0; the thesis also runs 0.99).
        baseline: the single model whose accuracy the service must match; default the most accurate.
        score: the little's confidence score (see :mod:`specedge.detector.scores`).
        top_k: littles the heuristic prices (the thesis finds 3 enough).
    """
    check_target("accuracy", target)
    val_labels, test_labels = np.asarray(val_labels), np.asarray(test_labels)
    _check_labels(pool, val_labels, test_labels)
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1; got {top_k}")
    accuracy = {
        m.name: (
            float((m.val_logits.argmax(axis=1) == val_labels).mean()),
            float((m.test_logits.argmax(axis=1) == test_labels).mean()),
        )
        for m in pool
    }
    val_accuracy = {name: pair[0] for name, pair in accuracy.items()}
    if baseline is None:
        baseline = max(val_accuracy, key=lambda name: val_accuracy[name])  # first in pool order on ties
    elif baseline not in val_accuracy:
        raise ConfigError(f"unknown baseline {baseline!r}; expected one of: {', '.join(val_accuracy)}")
    pairs = tuple(
        _pair(little, big, val_labels, test_labels, target=target, score=score)
        for big in pool
        for little in pool
        if little.cost < big.cost
    )
    selection = _select(pool, pairs, val_accuracy, baseline, top_k)
    chosen = selection.exhaustive
    probe = None if chosen is None else _probe(pool, chosen, val_labels, test_labels, target=target, score=score)
    return DuoAnalysis(target=target, score=score, accuracy=accuracy, pairs=pairs, selection=selection, probe=probe)


# --- the artifact a cloud service loads ----------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DuoConfig:
    """What ``duo.json`` holds: the two models by name, the probe and its recomputation rate on validation."""

    little: str
    big: str
    policy: str
    detector: MisspeculationDetector
    recompute_rate: float
    target: float


def write_duo(directory: Path, probe: DuoProbe) -> Path:
    """Write ``detectors.json`` (a bank of every policy's probe) and ``duo.json`` (the best); return the latter."""
    detectors = {policy: fit.detector for policy, fit in probe.fits.items() if fit.detector is not None}
    rates = {policy: fit.escalation_rate for policy, fit in probe.fits.items()}
    bank = write_detectors(
        directory / "detectors.json",
        list(detectors.values()),
        calibration={"little": probe.little, "big": probe.big, "target": probe.target, "recompute_rate": rates},
    )
    best = probe.best_policy
    state = {
        "format": DUO_FORMAT,
        "format_version": DUO_FORMAT_VERSION,
        "little": probe.little,
        "big": probe.big,
        "policy": best,
        "detector": detectors[best].to_dict(),
        "bank": bank.name,
        "recompute_rate": rates[best],
        "target": probe.target,
    }
    path = directory / "duo.json"
    path.write_text(json.dumps(state, indent=2) + "\n")
    return path


def _number(state: dict[str, Any], key: str, path: Path) -> float:
    value = state.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{path}: {key!r} must be a finite number; got {value!r}")
    return float(value)


def read_duo(path: Path) -> DuoConfig:
    """Load ``duo.json``; :class:`ConfigError` naming what is wrong with a file that is not one."""
    try:
        state = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != DUO_FORMAT:
        raise ConfigError(f'{path} is not a Dynamic Duo file (expected "format": "{DUO_FORMAT}")')
    if state.get("format_version") != DUO_FORMAT_VERSION or isinstance(state.get("format_version"), bool):
        raise ConfigError(f"{path}: unsupported format_version {state.get('format_version')!r}; expected 1")
    little, big = state.get("little"), state.get("big")
    if not (isinstance(little, str) and isinstance(big, str) and little and big and little != big):
        raise ConfigError(f"{path}: 'little' and 'big' must be two different model names; got {little!r}, {big!r}")
    if not isinstance(state.get("detector"), dict):
        raise ConfigError(f"{path}: 'detector' must be a detector state (a JSON object)")
    detector = load_detector(state["detector"])
    if detector.policy not in PROBE_POLICIES or detector.quality != "accuracy":
        raise ConfigError(f"{path}: the probe must be an accuracy detector with one of {PROBE_POLICIES}")
    rate, target = _number(state, "recompute_rate", path), _number(state, "target", path)
    if not 0 <= rate <= 1:
        raise ConfigError(f"{path}: recompute_rate must lie in [0, 1]; got {rate}")
    check_target("accuracy", target)
    if abs(detector.target - target) > 1e-12 or state.get("policy") != detector.policy:
        raise ConfigError(
            f"{path}: 'target' and 'policy' disagree with the detector's ({detector.target}, {detector.policy})"
        )
    return DuoConfig(
        little=little, big=big, policy=detector.policy, detector=detector, recompute_rate=rate, target=target
    )
