"""The demo's results: per-input records summarised into the table users read.

Every figure in the table is computed here from the per-input records (and the server's own
request log), so ``records.csv`` and the table can be checked against each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specedge.demo.live import LiveLinkRun, live_lines
from specedge.detector import MisspeculationDetector
from specedge.detector.audit import AuditStatus
from specedge.detector.report import DetectorEvaluation
from specedge.edge.records import InferenceRecord, Route
from specedge.simulator.report import evaluation_row, verdict
from specedge.simulator.system import SystemEvaluation
from specedge.training import chance_threshold

__all__ = ["DemoReport", "ModelSummary", "StrategyRun", "candidate_lines", "format_report"]

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

    def server_ms(self) -> tuple[float, float] | None:
        """Mean server-reported queue and compute time of this run's cloud calls (None without any)."""
        calls = [r for r in self.records if r.cloud_queue_us is not None and r.cloud_compute_us is not None]
        if not calls:
            return None
        queue = float(np.mean([r.cloud_queue_us or 0 for r in calls])) / 1e3
        return queue, float(np.mean([r.cloud_compute_us or 0 for r in calls])) / 1e3


@dataclass
class DemoReport:
    """Everything the demo measured; :func:`format_report` renders it."""

    dataset: dict[str, Any]
    models: list[ModelSummary]
    candidates: list[dict[str, Any]]  # speculative models considered (Candidate.row), the chosen one marked
    backends: dict[str, dict[str, Any]]  # role -> BackendChoice.to_dict() of what the device ran
    detector: MisspeculationDetector
    detector_test: DetectorEvaluation
    audit: AuditStatus | None
    runs: list[StrategyRun]
    server_request_ids: list[str]
    live: list[LiveLinkRun]  # the selector-driven runtime on each emulated link
    evaluations: list[SystemEvaluation]  # simulated per link, the selector minimising energy
    latency_evaluations: list[SystemEvaluation]  # the same, the selector minimising latency
    device: str
    fps: float
    out_dir: Path

    def run(self, strategy: str) -> StrategyRun:
        """The run of ``strategy``."""
        return next(r for r in self.runs if r.strategy == strategy)

    def server_ids(self, strategy: str) -> list[str]:
        """Request ids the cloud server logged for ``strategy``'s inputs."""
        return [i for i in self.server_request_ids if i.startswith(f"{strategy}/")]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (records themselves go to records.csv)."""
        spec = self.run(SPECEDGE)
        return {
            "dataset": self.dataset,
            "models": [m.__dict__ for m in self.models],
            "candidates": self.candidates,
            "device_backends": self.backends,
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
            "server_ms": {run.strategy: run.server_ms() for run in self.runs},
            "live_links": [run.to_dict() for run in self.live],
            "simulation": {
                "device": self.device,
                "fps": self.fps,
                "model_kind": "realistic",
                "rows": [
                    evaluation_row(e, dataset=self.dataset["name"], device=self.device, fps=self.fps)
                    for e in (*self.evaluations, *self.latency_evaluations)
                ],
            },
        }


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


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


_RUNS = {"speculate": "speculate", "cloud": "cloud-only", "mobile": "master on device"}


def _simulated_lines(report: DemoReport) -> list[str]:
    """Per link: the three strategies' simulated cost, and what the selector picks for each objective."""
    lines = [
        f"Simulated per input (device {report.device!r}; camera at {report.fps:g} frame/s; radio promotion, tails "
        "and handshakes; the real records' escalations, audits, message sizes and server times)",
        f"  {'link':<6} {'strategy':<22} {'latency ms':>11} {'energy mJ':>10} {'speed-up vs cloud':>18} "
        f"{'energy vs cloud':>16}",
    ]
    for evaluation in report.evaluations:
        cloud = evaluation[CLOUD_ONLY]
        rows = [
            ("SpecEdge (speculating)", evaluation.speculating),
            *((s, evaluation[s]) for s in (CLOUD_ONLY, MOBILE_ONLY)),
        ]
        for name, outcome in rows:
            lines.append(
                f"  {evaluation.link:<6} {name:<22} {outcome.latency_ms:>11.3f} {outcome.energy_mj:>10.3f} "
                f"{cloud.latency_ms / outcome.latency_ms:>17.2f}x {outcome.energy_mj / cloud.energy_mj:>16.3f}"
            )
    picks = [
        f"{energy.link}: {_RUNS[energy.chosen]} / {_RUNS[latency.chosen]}"
        for energy, latency in zip(report.evaluations, report.latency_evaluations, strict=True)
    ]
    lines.append("  selector (predictive, from the detector's P_r), for energy / for latency:  " + ";  ".join(picks))
    return lines


def candidate_lines(rows: list[dict[str, Any]], links: Sequence[str]) -> list[str]:
    """The speculative candidates side by side: size, traffic, accuracy, escalation, simulated cost."""
    lines = [
        "Speculative candidates (validation split; ratios to the fp32 distilled model; simulated SpecEdge cost "
        "per input, mean over " + "/".join(links) + ")",
        f"  {'':<2}{'candidate':<19} {'backend':<11} {'bytes':>6} {'traffic':>7} {'val acc':>8} {'escalates':>9} "
        f"{'energy mJ':>10} {'latency ms':>10}",
    ]
    for row in rows:
        simulated = row["simulated"] or {}
        energy = np.mean([v["energy_mj"] for v in simulated.values()]) if simulated else float("nan")
        latency = np.mean([v["latency_ms"] for v in simulated.values()]) if simulated else float("nan")
        escalates = row["val_escalation_rate"]
        lines.append(
            f"  {'*' if row['chosen'] else ' ':<2}{row['name']:<19} {row['backend']:<11} {row['bytes_ratio']:>6.3f} "
            f"{row['traffic_ratio']:>7.3f} {_pct(row['val_accuracy']):>8} "
            f"{'-' if escalates is None else _pct(escalates):>9} {energy:>10.3f} {latency:>10.3f}"
        )
    lines.append("  * runs on the device: least simulated energy, then latency")
    return lines


def _verdict_refusal(report: DemoReport) -> str | None:
    """Why no verdict can be given: a model at chance makes every comparison meaningless, or None.

    The review saw a master left at chance and the demo still printed "SpecEdge beats both
    baselines" (foundation review, "Silent training failure"); a user's own artifact can be at
    chance too, so the check is made here, not only where the demo trains.
    """
    num_classes = int(report.dataset["num_classes"])
    threshold = chance_threshold(num_classes)
    at_chance = [m for m in report.models if num_classes > 1 and m.test_accuracy <= threshold]
    if not at_chance:
        return None
    models = "; ".join(f"the {m.role} {m.architecture} scores {_pct(m.test_accuracy)}" for m in at_chance)
    return (
        f"NO VERDICT: {models} on test, at chance for {num_classes} classes (<= {_pct(threshold)}); "
        "comparing strategies built on it would mean nothing. Retrain it (specedge train) and run again."
    )


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
        f"  {'role':<12} {'architecture':<34} {'params':>10} {'MACs':>12} {'accuracy':>9}",
    ]
    for m in report.models:
        lines.append(f"  {m.role:<12} {m.architecture:<34} {m.params:>10,} {m.macs:>12,} {_pct(m.test_accuracy):>9}")
    backends = ", ".join(f"{role} on {b['backend']} ({b['reason']})" for role, b in report.backends.items())
    lines.append(f"  device backends: {backends}")
    if len(report.candidates) > 1:
        links = [e.link for e in report.evaluations]
        lines += ["", *candidate_lines(report.candidates, links), ""]
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
        "Measured per-input latency (this machine; cloud over localhost gRPC, separate process; server queue and "
        "compute: mean per cloud call, as the server reports them)",
        f"  {'strategy':<12} {'accuracy':>9} {'mean ms':>9} {'p50 ms':>9} {'p95 ms':>9} {'cloud calls':>12} "
        f"{'queue ms':>9} {'compute ms':>11}",
    ]
    for run in report.runs:
        lat = run.latency_ms()
        server = run.server_ms()
        queue, compute = ("-", "-") if server is None else (f"{server[0]:.3f}", f"{server[1]:.3f}")
        lines.append(
            f"  {run.strategy:<12} {_pct(run.accuracy):>9} {lat.mean():>9.3f} {np.percentile(lat, 50):>9.3f} "
            f"{np.percentile(lat, 95):>9.3f} {len(run.cloud_ids):>12} {queue:>9} {compute:>11}"
        )
    lines += ["", *_simulated_lines(report)]
    if report.live:
        lines += ["", *live_lines(report.live, objective="energy", fps=report.fps)]
    lines += ["", "Verdict"]
    refusal = _verdict_refusal(report)
    if refusal is not None:
        lines.append(f"  {refusal}")
    else:
        lines += [f"  {line}" for evaluation in report.evaluations for line in verdict(evaluation).splitlines()]
    lines += ["", f"records, request log, report.json and plots: {report.out_dir}"]
    return "\n".join(lines)
