"""The demo's results: per-input records summarised into the table users read.

Every figure in the table is computed here from the per-input records (and the server's own
request log), so ``records.csv`` and the table can be checked against each other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specedge.detector import MisspeculationDetector
from specedge.detector.audit import AuditStatus
from specedge.detector.report import DetectorEvaluation
from specedge.edge.runtime import InferenceRecord, Route
from specedge.simulator import CostEstimate

__all__ = ["DemoReport", "ModelSummary", "StrategyRun", "format_report"]

SPECEDGE = "SpecEdge"
CLOUD_ONLY = "cloud-only"
MOBILE_ONLY = "mobile-only"


@dataclass(frozen=True)
class ModelSummary:
    """One model's size and test accuracy (computed offline, batched)."""

    role: str
    architecture: str
    params: int
    macs: int
    test_accuracy: float


@dataclass(frozen=True)
class StrategyRun:
    """The per-input records of one strategy over the test inputs."""

    strategy: str
    records: list[InferenceRecord]
    labels: np.ndarray

    @property
    def accuracy(self) -> float:
        """Fraction of inputs whose final answer is right."""
        return float(np.mean([r.prediction == y for r, y in zip(self.records, self.labels, strict=True)]))

    @property
    def speculative_accuracy(self) -> float:
        """Fraction of inputs the local model alone got right (NaN if it never ran)."""
        local = [(r.local_prediction, y) for r, y in zip(self.records, self.labels, strict=True)]
        if any(p is None for p, _ in local):
            return float("nan")
        return float(np.mean([p == y for p, y in local]))

    @property
    def cloud_ids(self) -> list[str]:
        """Ids of the inputs this run sent to the cloud (escalated, direct or audited)."""
        return [r.input_id for r in self.records if r.reached_cloud]

    @property
    def escalated(self) -> int:
        """Inputs that ran locally and were then replayed in the cloud."""
        return sum(r.route is Route.ESCALATED for r in self.records)

    @property
    def audited(self) -> int:
        """Kept answers also sent to the master to audit the detector."""
        return sum(r.audited for r in self.records)

    def latency_ms(self) -> np.ndarray:
        """Measured end-to-end latency of every input."""
        return np.array([r.total_us for r in self.records], dtype=np.float64) / 1e3


@dataclass
class DemoReport:
    """Everything the demo measured; :func:`format_report` renders it."""

    dataset: dict[str, Any]
    models: list[ModelSummary]
    detector: MisspeculationDetector
    detector_test: DetectorEvaluation
    audit: AuditStatus | None
    master_test_predictions: np.ndarray
    runs: list[StrategyRun]
    server_request_ids: list[str]
    estimates: list[CostEstimate]
    device: str
    out_dir: Path

    def run(self, strategy: str) -> StrategyRun:
        """The run of ``strategy``."""
        return next(r for r in self.runs if r.strategy == strategy)

    def server_ids(self, strategy: str) -> list[str]:
        """Request ids the cloud server logged for ``strategy``'s inputs."""
        return [i for i in self.server_request_ids if i.startswith(f"{strategy}/")]

    def estimate(self, link: str, strategy: str) -> CostEstimate:
        """The cost estimate of ``strategy`` on ``link``."""
        return next(e for e in self.estimates if e.link == link and e.strategy == strategy)

    @property
    def links(self) -> list[str]:
        """Link names in the order they were estimated."""
        return list(dict.fromkeys(e.link for e in self.estimates))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (records themselves go to records.csv)."""
        spec = self.run(SPECEDGE)
        return {
            "dataset": self.dataset,
            "models": [m.__dict__ for m in self.models],
            "detector": self.detector.to_dict(),
            "detector_test": self.detector_test.to_dict(),
            "audit": None if self.audit is None else {**asdict(self.audit), "audit_share": self.audit.audit_share},
            "test_inputs": len(spec.records),
            "accuracy": {run.strategy: run.accuracy for run in self.runs},
            "escalation_rate": spec.escalated / len(spec.records),
            "escalated": spec.escalated,
            "audited": spec.audited,
            "server_requests": {run.strategy: len(self.server_ids(run.strategy)) for run in self.runs},
            "escalations_match_server": sorted(spec.cloud_ids) == sorted(self.server_ids(SPECEDGE)),
            "measured_latency_ms": {
                run.strategy: {
                    "mean": float(run.latency_ms().mean()),
                    "p50": float(np.percentile(run.latency_ms(), 50)),
                    "p95": float(np.percentile(run.latency_ms(), 95)),
                }
                for run in self.runs
            },
            "device_profile": self.device,
            "estimates": [e.to_dict() for e in self.estimates],
        }


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def _compare(other: CostEstimate, *, metric: str, unit: str, base: float, per_escalation: float, rate: float) -> str:
    """SpecEdge costs ``base + rate * per_escalation`` on ``metric``; how does it fare against ``other``?

    Speculation pays against ``other`` exactly while the escalation rate stays below the
    break-even rate ``(other - base) / per_escalation``.
    """
    theirs = getattr(other, metric)
    quantity = metric.removesuffix("_ms").removesuffix("_mj")
    mine = base + rate * per_escalation
    if mine < theirs:
        change = f"{theirs / mine:.1f}x faster" if metric == "latency_ms" else f"{mine / theirs - 1:+.1%}"
        return f"beats {other.strategy} on {quantity} ({change})"
    head = f"loses to {other.strategy} on {quantity} ({mine:.2f} vs {theirs:.2f} {unit})"
    if base >= theirs:
        return f"{head}: even with no escalations the device part alone costs {base:.2f} {unit}"
    return f"{head}: it would pay below {(theirs - base) / per_escalation:.2%} escalations (now {rate:.2%})"


def _certified(detector: MisspeculationDetector) -> str:
    """What the detector's guarantee says, in the user's terms."""
    if not detector.certified:
        return "nothing (threshold fitted to validation, no guarantee)"
    assert detector.delta is not None
    chance = f"with probability >= {1 - detector.delta:.0%} over the calibration draw"
    if detector.quality == "agreement":
        slack = 100 * (1 - detector.target)
        return (
            f"agreement >= {_pct(detector.target)}, so accuracy >= master - {slack:.2f} points, {chance} "
            "(inputs like the calibration set)"
        )
    return f"accuracy >= {detector.target:g} x master accuracy, {chance} (inputs like the calibration set)"


def _audit_lines(report: DemoReport) -> list[str]:
    status = report.audit
    if status is None:
        return []
    alarm = "DRIFT ALARM: agreement fell below the target" if status.alarm else "no drift alarm"
    return [
        f"  audited on the master    {status.audited} of {status.kept} kept answers ({status.audited_agree} agreed; "
        f"{alarm})"
    ]


def _verdict(report: DemoReport, link: str) -> str:
    """Per link: where speculation pays, and where it does not, the break-even escalation rate."""
    spec = report.estimate(link, SPECEDGE)
    run = report.run(SPECEDGE)
    rate = len(run.cloud_ids) / len(run.records)
    local_ms = float(np.mean([r.local_us for r in run.records])) / 1e3
    # Per escalated input on this link: everything beyond the local part (exact means over the run).
    per_escalation_ms = (spec.latency_ms - local_ms) / rate if rate else 0.0
    per_escalation_mj = spec.radio_energy_mj / rate if rate else 0.0
    parts = [
        _compare(
            report.estimate(link, other), metric=metric, unit=unit, base=base, per_escalation=per_escalation, rate=rate
        )
        for other in (CLOUD_ONLY, MOBILE_ONLY)
        for metric, unit, base, per_escalation in (
            ("latency_ms", "ms", local_ms, per_escalation_ms),
            ("energy_mj", "mJ", spec.compute_energy_mj, per_escalation_mj),
        )
    ]
    summary = "SpecEdge beats both baselines" if all(p.startswith("beats") for p in parts) else "SpecEdge"
    return f"{link}: {summary}: " + "; ".join(parts) + "."


def format_report(report: DemoReport) -> str:
    """The demo's table, as printed by ``specedge demo``."""
    spec = report.run(SPECEDGE)
    n = len(spec.records)
    escalated = spec.escalated
    server_spec = report.server_ids(SPECEDGE)
    matches = sorted(spec.cloud_ids) == sorted(server_spec)
    lines = [
        "",
        f"SpecEdge demo: {report.dataset['name']}, {n} test inputs",
        "",
        "Models (test accuracy computed in one batch)",
        f"  {'role':<12} {'architecture':<24} {'params':>10} {'MACs':>12} {'accuracy':>9}",
    ]
    for m in report.models:
        lines.append(f"  {m.role:<12} {m.architecture:<24} {m.params:>10,} {m.macs:>12,} {_pct(m.test_accuracy):>9}")
    d, t = report.detector, report.detector_test
    lines += [
        f"  detector: {d.describe()}",
        f"            calibrated on {d.n_learn_ + d.n_certify_ if d.n_learn_ != d.n_certify_ else d.n_certify_} "
        f"validation inputs, where it escalates {_pct(d.escalation_rate_)}",
        "",
        "Routing and accuracy (per-input records, test split)",
        f"  master accuracy          {_pct(report.run(CLOUD_ONLY).accuracy)}",
        f"  speculative accuracy     {_pct(spec.speculative_accuracy)}",
        f"  system accuracy          {_pct(spec.accuracy)}  (95% interval {_pct(t.system_accuracy_interval[0])} - "
        f"{_pct(t.system_accuracy_interval[1])}; {t.accuracy_ratio:.4f} x master)",
        f"  agreement with master    {_pct(t.agreement)}",
        f"  certified                {_certified(d)}",
        f"  escalation rate          {_pct(escalated / n)}  (false negatives {_pct(t.false_negative_rate)}, "
        f"false positives {_pct(t.false_positive_rate)})",
        f"  answered on device       {n - escalated} of {n}",
        f"  escalated to cloud       {escalated} of {n}",
        *_audit_lines(report),
        f"  cloud requests received  {len(server_spec)} (server log; "
        + (
            "exactly the escalated and audited inputs)"
            if matches
            else "MISMATCH with the escalated and audited inputs)"
        ),
        "",
        "Measured per-input latency (this machine; cloud over localhost gRPC, separate process)",
        f"  {'strategy':<12} {'accuracy':>9} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'cloud calls':>12}",
    ]
    for run in report.runs:
        lat = run.latency_ms()
        lines.append(
            f"  {run.strategy:<12} {_pct(run.accuracy):>9} {lat.mean():>9.3f} {np.percentile(lat, 50):>9.3f} "
            f"{np.percentile(lat, 95):>9.3f} {len(run.cloud_ids):>12}"
        )
    lines += [
        "",
        f"Estimated per-input latency and energy (first-order link model, device profile {report.device!r};"
        " no radio tails)",
        f"  {'link':<6} {'strategy':<12} {'latency ms':>11} {'energy mJ':>10} {'speed-up vs cloud':>18} "
        f"{'energy vs cloud':>16}",
    ]
    for link in report.links:
        cloud = report.estimate(link, CLOUD_ONLY)
        for run in report.runs:
            e = report.estimate(link, run.strategy)
            speedup = f"{cloud.latency_ms / e.latency_ms:.2f}x"
            energy_change = f"{e.energy_mj / cloud.energy_mj - 1:+.1%}"
            lines.append(
                f"  {link:<6} {run.strategy:<12} {e.latency_ms:>11.3f} {e.energy_mj:>10.3f} {speedup:>18} "
                f"{energy_change:>16}"
            )
    lines += ["", "Verdict"]
    lines += [f"  {_verdict(report, link)}" for link in report.links]
    lines += ["", f"records, request log, report.json and plots: {report.out_dir}"]
    return "\n".join(lines)
