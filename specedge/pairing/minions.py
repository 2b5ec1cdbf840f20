"""M&MNet's minion pairing: which two on-device models speculate for a master, per link (thesis 5.2-5.3).

M&MNet runs two small *minions* on the device and escalates an input to the *master* when either
minion is unconfident or the two disagree (thesis section 5.2.3). Which pair to ship depends on
the link: the selector compares ``L_Minion1 + L_Minion2 + P_r x L_Master`` across options
(section 5.2.2), where ``P_r`` is the escalation rate that keeps the master's accuracy on the
validation set (section 5.3.3), and M&MNet's lookup table (Table 5.4) records the pair chosen.

This module works on stored outputs only (logits of every pool member on validation and test,
the master's predictions, labels) and per-model device costs; it trains nothing:

- every unordered pair gets the pair rule fitted on validation
  (:class:`~specedge.detector.MisspeculationDetector` with ``policy="pair"``, no guarantee) and is
  judged on test;
- per link, the pair with the lowest expected latency (ties: energy) is chosen and set against the
  alternatives: one speculative model with a single threshold (SIEVE), cloud-only, mobile-only.

A recovery runs the master where it is faster (section 5.2.1, "Master Allocation"): over the
link, or on the device when its on-device latency is given and lower.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from specedge.detector import MisspeculationDetector, check_target
from specedge.errors import ConfigError
from specedge.simulator import RequestStream, get_link_profile, replay

__all__ = [
    "LinkChoice",
    "MasterReference",
    "MinionsAnalysis",
    "PoolMember",
    "Speculation",
    "analyse_minions",
    "check_pool",
    "fit_speculation",
    "offload_cost",
]


@dataclass(frozen=True, eq=False)
class PoolMember:
    """One candidate model's stored logits and its calibrated batch-1 cost on the device that runs it.

    ``val_logits`` and ``test_logits`` are ``(N_val, K)`` and ``(N_test, K)``.
    """

    name: str
    val_logits: np.ndarray
    test_logits: np.ndarray
    latency_s: float
    energy_mj: float
    macs: int
    params: int

    def __post_init__(self) -> None:
        if not self.name:
            raise ConfigError("a pool member needs a name")
        for split, logits in (("validation", self.val_logits), ("test", self.test_logits)):
            shape = np.shape(logits)
            if len(shape) != 2 or shape[0] < 1 or shape[1] < 2:
                raise ConfigError(f"pool member {self.name!r}: {split} logits must be (N, K) with K >= 2; got {shape}")
            if not np.isfinite(logits).all():
                raise ConfigError(f"pool member {self.name!r}: {split} logits contain NaN or infinite values")
        costs = np.array([self.latency_s, self.energy_mj], dtype=np.float64)
        if not (np.isfinite(costs).all() and (costs > 0).all()):
            raise ConfigError(
                f"pool member {self.name!r}: latency_s and energy_mj must be finite and > 0; "
                f"got {self.latency_s} s and {self.energy_mj} mJ"
            )
        if self.macs < 0 or self.params < 0:
            raise ConfigError(f"pool member {self.name!r}: macs and params must be >= 0")

    @property
    def num_classes(self) -> int:
        """Classes of the logits."""
        return int(self.val_logits.shape[1])

    @property
    def cost(self) -> tuple[float, float]:
        """``(latency_s, energy_mj)``: compares members by latency first, as the thesis' selectors do."""
        return self.latency_s, self.energy_mj


def check_pool(pool: Sequence[PoolMember], *, val_size: int, test_size: int) -> int:
    """The pool's number of classes K; :class:`ConfigError` on an empty pool, duplicate names or shape mismatches."""
    if not pool:
        raise ConfigError("the model pool is empty; give at least one PoolMember")
    names = [member.name for member in pool]
    if len(set(names)) != len(names):
        raise ConfigError(f"pool member names must be unique; got {names}")
    k = pool[0].num_classes
    for member in pool:
        val_n, test_n = member.val_logits.shape[0], member.test_logits.shape[0]
        if (val_n, test_n, member.num_classes) != (val_size, test_size, k):
            raise ConfigError(
                f"pool member {member.name!r} has {val_n} validation and {test_n} test rows of {member.num_classes} "
                f"classes; expected {val_size} and {test_size} rows of {k} classes like the labels and {names[0]!r}"
            )
    return k


@dataclass(frozen=True, eq=False)
class MasterReference:
    """The master's answers on both splits, the labels, and (optionally) its cost on the device.

    ``latency_s``/``energy_mj`` on the device make mobile-only and on-device recovery possible;
    None means the master only runs in the cloud.
    """

    name: str
    val_predictions: np.ndarray
    test_predictions: np.ndarray
    val_labels: np.ndarray
    test_labels: np.ndarray
    latency_s: float | None = None
    energy_mj: float | None = None

    def __post_init__(self) -> None:
        for what, predictions, labels in (
            ("validation", self.val_predictions, self.val_labels),
            ("test", self.test_predictions, self.test_labels),
        ):
            p, y = np.asarray(predictions), np.asarray(labels)
            if p.ndim != 1 or p.shape != y.shape or len(p) == 0:
                raise ConfigError(f"master {self.name!r}: {what} predictions and labels must be two equal (N,) arrays")
            if not (np.issubdtype(p.dtype, np.integer) and np.issubdtype(y.dtype, np.integer)):
                raise ConfigError(f"master {self.name!r}: {what} predictions and labels must be integer class indices")
        if (self.latency_s is None) != (self.energy_mj is None):
            raise ConfigError(f"master {self.name!r}: give both latency_s and energy_mj on the device, or neither")

    @property
    def val_accuracy(self) -> float:
        """Accuracy on validation: the target is a fraction of it."""
        return float((self.val_predictions == self.val_labels).mean())

    @property
    def test_accuracy(self) -> float:
        """Accuracy on test."""
        return float((self.test_predictions == self.test_labels).mean())

    @property
    def on_device(self) -> tuple[float, float] | None:
        """``(latency_s, energy_mj)`` on the device, or None."""
        if self.latency_s is None or self.energy_mj is None:
            return None
        return self.latency_s, self.energy_mj


def offload_cost(
    link_name: str, request_bytes: float, response_bytes: float, server_s: float = 0.0
) -> tuple[float, float]:
    """``(L_t seconds, E_t mJ)`` of one escalation's round trip on a named link (thesis 4.3.2, 5.2.1).

    The same first-order model SIEVE's selector uses in :mod:`specedge.simulator.system`: the
    link's TLS/TCP framing added to the serialised message sizes, bytes / bandwidth + RTT, radio
    energy = transfer power x time (no promotion, tail or handshake), replayed as one isolated request.
    """
    link = get_link_profile(link_name)
    if min(request_bytes, response_bytes, server_s) < 0:
        raise ConfigError(
            f"message sizes and server time must be >= 0; got {request_bytes} B, {response_bytes} B, {server_s} s"
        )
    up, down = link.connection.wire_bytes(int(request_bytes), int(response_bytes))
    single = RequestStream.build(
        np.zeros(1), to_cloud=True, request_bytes=float(up), response_bytes=float(down), server_s=server_s
    )
    result = replay(single, link, kind="simple")
    return float(result.latency_s[0]), float(result.energy_mj[0])


@dataclass(frozen=True, eq=False)
class Speculation:
    """One speculative configuration (a minion pair or a single model): fitted on validation, judged on test.

    ``escalation_rate`` is ``P_r`` on validation; ``latency_s``/``energy_mj`` are the members'
    summed device compute per input. Unreachable targets leave the rates None and say why.
    """

    members: tuple[str, ...]
    latency_s: float
    energy_mj: float
    detector: MisspeculationDetector | None = None
    escalation_rate: float | None = None
    test_escalation_rate: float | None = None
    test_accuracy_ratio: float | None = None
    reason: str = ""

    @property
    def reachable(self) -> bool:
        """Whether the target was reached on validation (a detector was fitted)."""
        return self.detector is not None

    @property
    def label(self) -> str:
        """Members joined by ``+``."""
        return " + ".join(self.members)

    def expected_cost(self, recovery: tuple[float, float]) -> tuple[float, float]:
        """``(L, E)`` per input: the members' compute plus ``P_r`` recoveries at ``recovery`` each."""
        if self.escalation_rate is None:
            raise ConfigError(f"{self.label} does not reach the target; it has no expected cost")
        return (
            self.latency_s + self.escalation_rate * recovery[0],
            self.energy_mj + self.escalation_rate * recovery[1],
        )


@dataclass(frozen=True)
class LinkChoice:
    """One row of M&MNet's lookup table (thesis Table 5.4) for one link, with the alternatives' costs.

    ``pair`` is None when no pair reaches the target. ``alternatives`` maps ``single:<name>``,
    ``cloud-only`` and ``mobile-only`` (those that are possible) to ``(latency_s, energy_mj)``.
    """

    link: str
    transfer: tuple[float, float]  # (L_t, E_t) of one round trip
    recovery_host: str  # "cloud" or "device": where the master replays escalated inputs
    pair: Speculation | None
    pair_cost: tuple[float, float] | None
    alternatives: dict[str, tuple[float, float]]

    @property
    def best_alternative(self) -> str:
        """The cheapest option without a minion pair (latency first, then energy)."""
        return min(self.alternatives, key=lambda name: self.alternatives[name])

    @property
    def pair_wins(self) -> bool:
        """Whether the chosen pair is cheaper than every alternative."""
        return self.pair_cost is not None and self.pair_cost < self.alternatives[self.best_alternative]


@dataclass(frozen=True, eq=False)
class MinionsAnalysis:
    """Every pair's fit and test result, the single-model comparison, and the choice per link."""

    master: MasterReference
    target: float
    pairs: tuple[Speculation, ...]
    single: Speculation | None
    links: tuple[LinkChoice, ...]

    @property
    def reachable(self) -> bool:
        """Whether any pair reaches the target on validation."""
        return any(pair.reachable for pair in self.pairs)


def fit_speculation(
    members: Sequence[PoolMember], master: MasterReference, *, policy: str, target: float, score: str
) -> Speculation:
    """Fit ``policy`` on validation (the seeds' method, no guarantee) and replay it on test.

    One member takes a one-model policy (``threshold``, ``per-class-*``), two take ``pair``.
    Inputs are assumed checked (:func:`check_pool`); an unreachable target gives an unreachable result.
    """
    stack = len(members) > 1
    val = np.stack([m.val_logits for m in members], axis=1) if stack else members[0].val_logits
    test = np.stack([m.test_logits for m in members], axis=1) if stack else members[0].test_logits
    names = tuple(m.name for m in members)
    latency_s, energy_mj = sum(m.latency_s for m in members), sum(m.energy_mj for m in members)
    detector = MisspeculationDetector(policy=policy, score=score, quality="accuracy", target=target, delta=None)
    try:
        # The inputs were validated up front, so the only ConfigError left is an unreachable target.
        detector.fit(val, master.val_predictions, master.val_labels)
    except ConfigError as exc:
        return Speculation(names, latency_s, energy_mj, reason=str(exc))
    decisions = detector.decide(test)
    final = np.where(decisions.escalate, master.test_predictions, decisions.predictions)
    master_accuracy = master.test_accuracy
    ratio = float((final == master.test_labels).mean()) / master_accuracy if master_accuracy else float("nan")
    return Speculation(
        names,
        latency_s,
        energy_mj,
        detector=detector,
        escalation_rate=detector.escalation_rate_,
        test_escalation_rate=float(decisions.escalate.mean()),
        test_accuracy_ratio=ratio,
    )


def _choose_link(
    link: str,
    transfer: tuple[float, float],
    pairs: Sequence[Speculation],
    single: Speculation | None,
    master: MasterReference,
) -> LinkChoice:
    """Price every reachable pair on ``link`` and keep the cheapest (latency, then energy)."""
    on_device = master.on_device
    recovery, host = transfer, "cloud"
    if on_device is not None and on_device < transfer:
        recovery, host = on_device, "device"
    priced = [(pair.expected_cost(recovery), index) for index, pair in enumerate(pairs) if pair.reachable]
    best = min(priced, default=None)
    alternatives = {"cloud-only": transfer}
    if on_device is not None:
        alternatives["mobile-only"] = on_device
    if single is not None and single.reachable:
        alternatives[f"single:{single.label}"] = single.expected_cost(recovery)
    return LinkChoice(
        link=link,
        transfer=transfer,
        recovery_host=host,
        pair=None if best is None else pairs[best[1]],
        pair_cost=None if best is None else best[0],
        alternatives=alternatives,
    )


def _check_links(link_costs: Mapping[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    if not link_costs:
        raise ConfigError("give at least one link: a mapping link name -> (latency_s, energy_mj) of one round trip")
    checked = {}
    for name, (latency_s, energy_mj) in link_costs.items():
        get_link_profile(name)  # the name must be one of LINK_PROFILES
        if not (np.isfinite(latency_s) and np.isfinite(energy_mj) and latency_s >= 0 and energy_mj >= 0):
            raise ConfigError(
                f"link {name!r}: the round trip's cost must be finite and >= 0; got {latency_s} s, {energy_mj} mJ"
            )
        checked[name] = (float(latency_s), float(energy_mj))
    return checked


def analyse_minions(
    pool: Sequence[PoolMember],
    master: MasterReference,
    link_costs: Mapping[str, tuple[float, float]],
    *,
    target: float = 1.0,
    single: PoolMember | None = None,
    score: str = "max_softmax",
) -> MinionsAnalysis:
    """Fit M&MNet's pair rule on every unordered pair of ``pool`` and choose a pair per link.

    Args:
        pool: candidate minions with costs on the device (at least two for a pair).
        master: the master's predictions and labels on both splits, and its device cost if it can run there.
        link_costs: link name (from ``LINK_PROFILES``) -> ``(L_t, E_t)`` of one escalation, e.g. from
            :func:`offload_cost`.
        target: fraction of the master's validation accuracy the system must keep.
        single: one speculative model with SIEVE's single threshold, the comparison of section 5.4.
        score: confidence score of the detector (see :mod:`specedge.detector.scores`).
    """
    check_target("accuracy", target)
    if len(pool) < 2:
        raise ConfigError(f"minion pairing needs a pool of at least two models; got {len(pool)}")
    links = _check_links(link_costs)
    sizes = {"val_size": len(master.val_labels), "test_size": len(master.test_labels)}
    k = check_pool(pool, **sizes)
    if single is not None and check_pool([single], **sizes) != k:
        raise ConfigError(f"single model {single.name!r} has {single.num_classes} classes; the pool has {k}")
    arrays = (master.val_predictions, master.test_predictions, master.val_labels, master.test_labels)
    if any(a.min() < 0 or a.max() >= k for a in arrays):
        raise ConfigError(f"master {master.name!r}: predictions and labels must be class indices in 0..{k - 1}")
    pairs = tuple(
        fit_speculation((first, second), master, policy="pair", target=target, score=score)
        for i, first in enumerate(pool)
        for second in pool[i + 1 :]
    )
    alone = None
    if single is not None:
        alone = fit_speculation((single,), master, policy="threshold", target=target, score=score)
    choices = tuple(_choose_link(name, cost, pairs, alone, master) for name, cost in links.items())
    return MinionsAnalysis(master=master, target=target, pairs=pairs, single=alone, links=choices)
