"""Full-system evaluation: SpecEdge against cloud-only and mobile-only on one link (thesis 4.5).

A :class:`Workload` is what one speculative configuration does on one test set, fixed before any
link is chosen: per input, whether the detector escalated it (and whether it was audited), the
answers of both models, the real serialised request and response sizes (optionally zstd
compressed), the server's time, and each model's compute on one named device (time and energy
from the same device profile). :func:`evaluate_system` turns it into three request streams and
replays each in time order on the same link, arrivals and model kind:

    cloud-only   every input to the master over the link
    mobile-only  the master on the device
    SpecEdge     the speculative model on the device; escalated and audited inputs also go out

and a *selector* decides, before seeing any input, which of the three SpecEdge runs on this link
for the user's objective (latency or energy), from the detector's escalation probability ``P_r``:

    always       always speculate (no selector)
    sieve        SIEVE's rule (thesis 4.3.2): compare L_t with L_m + P_r x L_t (energy likewise)
                 and with the master on the device, L_t and E_t from the first-order transfer
                 model of one request (no promotion, tail or handshake)
    predictive   the same comparison with each option's expected cost from this simulator:
                 a stream of the same arrivals with escalations drawn at rate P_r, replayed on
                 the link; it sees what SIEVE's rule cannot, e.g. that on LTE escalations a few
                 seconds apart keep the radio in its tail (~1 W) all the time

The selected option's costs are then those of its real replay (with the detector's real
escalations), so a wrong prediction shows up as a loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

from specedge.errors import ConfigError
from specedge.simulator.links import LinkProfile
from specedge.simulator.replay import replay
from specedge.simulator.stream import ENERGY_COMPONENTS, LATENCY_COMPONENTS, ModelKind, ReplayResult, RequestStream

__all__ = [
    "CLOUD_ONLY",
    "MOBILE_ONLY",
    "OBJECTIVES",
    "SELECTORS",
    "SPECEDGE",
    "STRATEGIES",
    "LocalCost",
    "StrategyOutcome",
    "SystemEvaluation",
    "Workload",
    "evaluate_system",
]

SPECEDGE, CLOUD_ONLY, MOBILE_ONLY = "SpecEdge", "cloud-only", "mobile-only"
STRATEGIES = (SPECEDGE, CLOUD_ONLY, MOBILE_ONLY)
SELECTORS = ("always", "sieve", "predictive")
OBJECTIVES = ("latency", "energy")
Selector = Literal["always", "sieve", "predictive"]
Objective = Literal["latency", "energy"]


@dataclass(frozen=True)
class LocalCost:
    """One model's per-input compute on one device: time and energy from the same profile."""

    model: str
    latency_s: float
    energy_mj: float
    device: str
    method: str  # e.g. "analytic roofline" or "measured on this host"


@dataclass(frozen=True, eq=False)
class Workload:
    """Per-input facts of one speculative configuration on one test set (arrays of length N)."""

    name: str
    escalate: np.ndarray  # the detector escalated the input
    audit: np.ndarray  # a kept answer also sent to the master as an audit
    speculative_predictions: np.ndarray
    master_predictions: np.ndarray
    labels: np.ndarray | None
    request_bytes: np.ndarray  # serialised ModelInferRequest per input
    compressed_request_bytes: np.ndarray | None  # the same, zstd-compressed (None: not measured)
    response_bytes: np.ndarray
    server_s: np.ndarray  # the server's queue and compute time per request
    speculative: LocalCost
    master: LocalCost
    escalation_probability: float  # the detector's P_r from calibration (what a selector may know)
    audit_share: float = 0.0  # share of kept answers audited (the selector expects those requests too)
    recorded_arrival_s: np.ndarray | None = field(default=None)  # timestamps of a real run, if any

    def __post_init__(self) -> None:
        n = len(self.escalate)
        arrays = {
            "audit": self.audit,
            "speculative_predictions": self.speculative_predictions,
            "master_predictions": self.master_predictions,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "server_s": self.server_s,
        }
        for name, optional in (("labels", self.labels), ("compressed_request_bytes", self.compressed_request_bytes)):
            if optional is not None:
                arrays[name] = optional
        bad = [name for name, value in arrays.items() if np.shape(value) != (n,)]
        if n == 0 or bad:
            raise ConfigError(f"workload {self.name!r}: needs N >= 1 inputs and arrays of length {n}; wrong: {bad}")
        if self.escalate[self.audit].any():
            raise ConfigError(f"workload {self.name!r}: an input cannot be both escalated and audited")
        if not (0 <= self.escalation_probability <= 1 and 0 <= self.audit_share <= 1):
            raise ConfigError(
                f"workload {self.name!r}: P_r and the audit share must lie in [0, 1]; got "
                f"{self.escalation_probability} and {self.audit_share}"
            )

    def __len__(self) -> int:
        return len(self.escalate)

    @property
    def cloud_probability(self) -> float:
        """Expected share of inputs a speculating device sends out: escalations plus audits of the rest."""
        return self.escalation_probability + (1 - self.escalation_probability) * self.audit_share

    @property
    def speculative_final(self) -> np.ndarray:
        """SpecEdge's answers: the master's where escalated, the speculative model's elsewhere."""
        out: np.ndarray = np.where(self.escalate, self.master_predictions, self.speculative_predictions)
        return out


@dataclass(frozen=True, eq=False)
class StrategyOutcome:
    """One strategy's replay and what it answered."""

    strategy: str
    runs: str  # which option actually ran: "speculate", "cloud" or "mobile"
    result: ReplayResult
    predictions: np.ndarray
    to_cloud: np.ndarray

    @property
    def latency_ms(self) -> float:
        """Mean arrival-to-answer time."""
        return float(self.result.latency_s.mean() * 1e3)

    @property
    def p95_latency_ms(self) -> float:
        """95th percentile of arrival-to-answer time."""
        return float(np.percentile(self.result.latency_s, 95) * 1e3)

    @property
    def energy_mj(self) -> float:
        """Mean device energy per input (compute and radio, above idle)."""
        return float(self.result.energy_mj.mean())

    def components_ms(self) -> dict[str, float]:
        """Mean latency per input by component (queue, local, promotion, handshake, upload, wait, download)."""
        return {name.removesuffix("_s"): float(getattr(self.result, name).mean() * 1e3) for name in LATENCY_COMPONENTS}

    def components_mj(self) -> dict[str, float]:
        """Mean energy per input by component (local, promotion, handshake, upload, wait, download, tail)."""
        return {name.removesuffix("_mj"): float(getattr(self.result, name).mean()) for name in ENERGY_COMPONENTS}

    def accuracy(self, labels: np.ndarray | None) -> float | None:
        """Fraction of right answers (None without labels)."""
        return None if labels is None else float((self.predictions == labels).mean())

    @property
    def cloud_fraction(self) -> float:
        """Inputs that went to the cloud."""
        return float(self.to_cloud.mean())

    @property
    def saturated(self) -> bool:
        """The device was busy more than 95% of the run: inputs queue and latency grows with the run's length."""
        r = self.result
        busy_s = float((r.finish_s - r.start_s).sum())
        span_s = float(r.finish_s.max() - r.arrival_s.min())
        return span_s > 0 and busy_s / span_s > 0.95


@dataclass(frozen=True, eq=False)
class SystemEvaluation:
    """The three strategies on one link, arrival process and model kind."""

    workload: str
    link: str
    kind: ModelKind
    selector: str
    objective: str
    predicted: dict[str, float]  # the selector's predicted cost per option ("speculate", "cloud", "mobile")
    outcomes: dict[str, StrategyOutcome]  # SpecEdge (as selected), cloud-only, mobile-only
    speculating: StrategyOutcome  # what always speculating would have cost (the selector's alternative)
    labels: np.ndarray | None

    def __getitem__(self, strategy: str) -> StrategyOutcome:
        return self.outcomes[strategy]

    @property
    def chosen(self) -> str:
        """The option SpecEdge ran on this link: "speculate", "cloud" or "mobile"."""
        return self[SPECEDGE].runs

    def ratio(self, metric: Literal["latency_ms", "energy_mj"], versus: str) -> float:
        """SpecEdge's ``metric`` relative to ``versus``: speed-up for latency, fraction for energy."""
        mine, theirs = getattr(self[SPECEDGE], metric), getattr(self[versus], metric)
        return float(theirs / mine) if metric == "latency_ms" else float(mine / theirs)


def _stream(
    arrival_s: np.ndarray,
    local: LocalCost | None,
    to_cloud: np.ndarray,
    wire: tuple[np.ndarray, np.ndarray],
    server_s: np.ndarray,
) -> RequestStream:
    """Requests of one strategy: ``local`` compute on every input, then ``to_cloud`` ones over the link."""
    up, down = wire
    return RequestStream.build(
        arrival_s,
        local_s=0.0 if local is None else local.latency_s,
        local_mj=0.0 if local is None else local.energy_mj,
        to_cloud=to_cloud,
        request_bytes=np.where(to_cloud, up, 0.0),
        response_bytes=np.where(to_cloud, down, 0.0),
        server_s=np.where(to_cloud, server_s, 0.0),
    )


def _wire(workload: Workload, link: LinkProfile, compress: bool) -> tuple[np.ndarray, np.ndarray]:
    request = workload.request_bytes
    if compress:
        if workload.compressed_request_bytes is None:
            raise ConfigError(f"workload {workload.name!r} has no measured compressed sizes; run without compression")
        request = workload.compressed_request_bytes
    return link.connection.wire_bytes(request, workload.response_bytes)


def _first_order(workload: Workload, link: LinkProfile, up: np.ndarray, down: np.ndarray) -> tuple[float, float]:
    """SIEVE's L_t and E_t: one isolated request on the simple transfer model (mean sizes)."""
    single = RequestStream.build(
        np.zeros(1),
        to_cloud=True,
        request_bytes=float(up.mean()),
        response_bytes=float(down.mean()),
        server_s=float(workload.server_s.mean()),
    )
    result = replay(single, link, kind="simple")
    return float(result.latency_s[0]), float(result.energy_mj[0])


def _predict(
    workload: Workload,
    link: LinkProfile,
    *,
    arrival_s: np.ndarray,
    kind: ModelKind,
    selector: Selector,
    rng: np.random.Generator,
    wire: tuple[np.ndarray, np.ndarray],
) -> dict[str, tuple[float, float]]:
    """Each option's expected (latency s, energy mJ) per input, as the selector estimates it.

    Only what a device knows before the inputs arrive is used: ``P_r`` from calibration, the
    mean message sizes and server time, the link, and the arrival process.
    """
    p_r = workload.cloud_probability
    spec, master = workload.speculative, workload.master
    if selector == "sieve":
        latency_t, energy_t = _first_order(workload, link, *wire)
        return {
            "speculate": (spec.latency_s + p_r * latency_t, spec.energy_mj + p_r * energy_t),
            "cloud": (latency_t, energy_t),
            "mobile": (master.latency_s, master.energy_mj),
        }
    n = len(arrival_s)
    mean_wire = (np.full(n, float(wire[0].mean())), np.full(n, float(wire[1].mean())))
    server_s = np.full(n, float(workload.server_s.mean()))
    options = {
        "speculate": (spec, rng.random(n) < p_r),
        "cloud": (None, np.ones(n, dtype=bool)),
        "mobile": (master, np.zeros(n, dtype=bool)),
    }
    predicted = {}
    for option, (local, to_cloud) in options.items():
        result = replay(_stream(arrival_s, local, to_cloud, mean_wire, server_s), link, kind=kind)
        predicted[option] = (float(result.latency_s.mean()), float(result.energy_mj.mean()))
    return predicted


def evaluate_system(
    workload: Workload,
    link: LinkProfile,
    *,
    arrival_s: np.ndarray,
    kind: ModelKind = "realistic",
    compress: bool = False,
    selector: Selector = "predictive",
    objective: Objective = "energy",
    rng: np.random.Generator | None = None,
) -> SystemEvaluation:
    """Replay cloud-only, mobile-only and SpecEdge (as the selector chooses) on ``link``.

    Args:
        workload: the configuration's per-input facts.
        link: the link, radio and connection (constant-rate or trace-driven channels).
        arrival_s: arrival time of each input (see :mod:`specedge.simulator.arrivals`).
        kind: "simple" (SIEVE's transfer model) or "realistic" (promotion, tails, handshakes).
        compress: send zstd-compressed inputs (measured per input) instead of raw pixels.
        selector: "always", "sieve" or "predictive" (see the module docstring).
        objective: what the selector minimises.
        rng: generator for the predictive selector's stand-in escalations (seeded by default).
    """
    if selector not in SELECTORS:
        raise ConfigError(f"unknown selector {selector!r}; expected one of: {', '.join(SELECTORS)}")
    if objective not in OBJECTIVES:
        raise ConfigError(f"unknown objective {objective!r}; expected one of: {', '.join(OBJECTIVES)}")
    arrival_s = np.asarray(arrival_s, dtype=np.float64)
    if arrival_s.shape != (len(workload),):
        raise ConfigError(f"need one arrival time per input ({len(workload)}); got shape {arrival_s.shape}")
    wire = _wire(workload, link, compress)
    n = len(workload)
    everything, nothing = np.ones(n, dtype=bool), np.zeros(n, dtype=bool)
    speculate_to_cloud = workload.escalate | workload.audit
    runs = {
        "cloud": (None, everything, workload.master_predictions),
        "mobile": (workload.master, nothing, workload.master_predictions),
        "speculate": (workload.speculative, speculate_to_cloud, workload.speculative_final),
    }
    replayed = {
        option: StrategyOutcome(
            strategy=option,
            runs=option,
            result=replay(_stream(arrival_s, local, to_cloud, wire, workload.server_s), link, kind=kind),
            predictions=answers,
            to_cloud=to_cloud,
        )
        for option, (local, to_cloud, answers) in runs.items()
    }
    if selector == "always":
        chosen, predicted = "speculate", {}
    else:
        estimates = _predict(
            workload,
            link,
            arrival_s=arrival_s,
            kind=kind,
            selector=selector,
            rng=rng or np.random.default_rng(0),
            wire=wire,
        )
        metric = 0 if objective == "latency" else 1
        predicted = {option: values[metric] for option, values in estimates.items()}
        chosen = min(predicted, key=lambda option: (predicted[option], option != "speculate"))
    outcomes = {
        CLOUD_ONLY: replace(replayed["cloud"], strategy=CLOUD_ONLY),
        MOBILE_ONLY: replace(replayed["mobile"], strategy=MOBILE_ONLY),
        SPECEDGE: replace(replayed[chosen], strategy=SPECEDGE),
    }
    speculating = replace(replayed["speculate"], strategy=SPECEDGE)
    return SystemEvaluation(
        workload=workload.name,
        link=link.name,
        kind=kind,
        selector=selector,
        objective=objective,
        predicted=predicted,
        outcomes=outcomes,
        speculating=speculating,
        labels=workload.labels,
    )
