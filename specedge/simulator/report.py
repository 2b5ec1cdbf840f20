"""Reading a system evaluation: result rows, a verdict per link and a Markdown report.

The rows use the key names of the system benchmark: ``latency_vs_cloud`` is cloud-only latency
over SpecEdge latency (a speed-up), ``energy_vs_cloud`` is SpecEdge energy over cloud-only energy
(a fraction), and likewise against mobile-only; ``accuracy_ratio`` is SpecEdge's test accuracy
over the master's. The verdict says, per link, where speculating pays and where it cannot, and
why: the break-even escalation rate, and how much of the radio energy is promotion and tail
(thesis 4.5.2-4.5.3; the tails are this simulator's addition).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from specedge.simulator.system import CLOUD_ONLY, MOBILE_ONLY, SPECEDGE, StrategyOutcome, SystemEvaluation

__all__ = ["evaluation_row", "markdown_report", "verdict"]

_OPTION_NAMES = {"speculate": "speculate", "cloud": "send everything to the cloud", "mobile": "run the master locally"}


def evaluation_row(evaluation: SystemEvaluation, **context: Any) -> dict[str, Any]:
    """One JSON-ready row: the three strategies' means, SpecEdge's ratios, accuracy, and ``context``."""
    spec, cloud = evaluation[SPECEDGE], evaluation[CLOUD_ONLY]
    labels = evaluation.labels
    master_accuracy = cloud.accuracy(labels)
    spec_accuracy = spec.accuracy(labels)
    return {
        **context,
        "link": evaluation.link,
        "model_kind": evaluation.kind,
        "selector": evaluation.selector,
        "objective": evaluation.objective,
        "runs": spec.runs,
        "latency_ms": {s: evaluation[s].latency_ms for s in (SPECEDGE, CLOUD_ONLY, MOBILE_ONLY)},
        "energy_mj": {s: evaluation[s].energy_mj for s in (SPECEDGE, CLOUD_ONLY, MOBILE_ONLY)},
        "latency_vs_cloud": evaluation.ratio("latency_ms", CLOUD_ONLY),
        "energy_vs_cloud": evaluation.ratio("energy_mj", CLOUD_ONLY),
        "latency_vs_mobile": evaluation.ratio("latency_ms", MOBILE_ONLY),
        "energy_vs_mobile": evaluation.ratio("energy_mj", MOBILE_ONLY),
        "escalation_rate": float(evaluation.speculating.to_cloud.mean()),
        "cloud_fraction": spec.cloud_fraction,
        "accuracy_ratio": None if spec_accuracy is None or not master_accuracy else spec_accuracy / master_accuracy,
        "speculating_energy_mj": evaluation.speculating.energy_mj,
        "speculating_latency_ms": evaluation.speculating.latency_ms,
        "speculating_energy_components_mj": evaluation.speculating.components_mj(),
        "speculating_latency_components_ms": evaluation.speculating.components_ms(),
        "predicted": evaluation.predicted,
        "saturated": [s for s in (SPECEDGE, CLOUD_ONLY, MOBILE_ONLY) if evaluation[s].saturated],
    }


def _compare(mine: StrategyOutcome, other: StrategyOutcome, metric: str, unit: str) -> str:
    """Speculating against ``other`` on ``metric``, with the escalation rate at which it would break even.

    Speculating costs ``local + rate x per-request`` where per-request is the mean cost of one
    cloud request of this run, tail included; break-even is where that equals ``other``.
    """
    theirs, total = getattr(other, metric), getattr(mine, metric)
    local = mine.components_ms()["local"] if metric == "latency_ms" else mine.components_mj()["local"]
    rate = mine.cloud_fraction
    quantity = "latency" if metric == "latency_ms" else "energy"
    if total < theirs:
        change = f"{theirs / total:.1f}x faster" if metric == "latency_ms" else f"{total / theirs:.2f}x the energy"
        return f"beats {other.strategy} on {quantity} ({change})"
    head = f"loses to {other.strategy} on {quantity} ({total:.3g} vs {theirs:.3g} {unit} per input)"
    if local >= theirs:
        return f"{head}: its local part alone costs {local:.3g} {unit}"
    if rate == 0:
        return head
    per_request = (total - local) / rate
    return f"{head}: it would pay below {(theirs - local) / per_request:.2%} of inputs sent out (now {rate:.2%})"


def verdict(evaluation: SystemEvaluation) -> str:
    """Where speculating pays on this link and where it cannot, and what the selector does about it."""
    spec = evaluation.speculating
    parts = [
        _compare(spec, evaluation[other], metric, unit)
        for other in (CLOUD_ONLY, MOBILE_ONLY)
        for metric, unit in (("latency_ms", "ms"), ("energy_mj", "mJ"))
    ]
    energy = spec.components_mj()
    radio = sum(v for k, v in energy.items() if k != "local")
    lines = [f"{evaluation.link}: speculating " + "; ".join(parts) + "."]
    if radio > 0 and (energy["tail"] + energy["promotion"]) / radio > 0.5:
        requests = int(spec.to_cloud.sum())
        gap_s = float(np.diff(spec.result.arrival_s[spec.to_cloud]).mean()) if requests > 1 else float("inf")
        lines.append(
            f"  Promotion and tail are {(energy['tail'] + energy['promotion']) / radio:.0%} of its radio energy: "
            f"its {requests} cloud requests come {gap_s:.3g} s apart on average, so each one wakes the radio and "
            "keeps it in its tail."
        )
    saturated = [s for s in (CLOUD_ONLY, MOBILE_ONLY) if evaluation[s].saturated]
    if evaluation.speculating.saturated:
        saturated.append("speculating")
    if saturated:
        lines.append(
            f"  {' and '.join(saturated)} cannot keep up with the frame rate on this link (busy over 95% of the time): "
            "inputs queue, so their mean latency grows with the length of the run."
        )
    if evaluation.selector != "always":
        lines.append(
            f"  The {evaluation.selector} selector ({evaluation.objective}) chooses to "
            f"{_OPTION_NAMES[evaluation.chosen]} on this link."
        )
    return "\n".join(lines)


def markdown_report(evaluations: Sequence[SystemEvaluation], *, title: str, notes: Sequence[str] = ()) -> str:
    """Tables of latency and energy per link and strategy, and the verdicts, as Markdown."""
    lines = [f"# {title}", "", *notes, ""]
    lines += [
        "| link | kind | selector | SpecEdge runs | latency ms (SpecEdge / cloud / mobile) | energy mJ "
        "(SpecEdge / cloud / mobile) | speed-up vs cloud | energy vs cloud | accuracy ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in evaluations:
        row = evaluation_row(e)
        lat, en = row["latency_ms"], row["energy_mj"]
        accuracy = "-" if row["accuracy_ratio"] is None else f"{row['accuracy_ratio']:.4f}"
        lines.append(
            f"| {e.link} | {e.kind} | {e.selector} ({e.objective}) | {row['runs']} | "
            f"{lat[SPECEDGE]:.3g} / {lat[CLOUD_ONLY]:.3g} / {lat[MOBILE_ONLY]:.3g} | "
            f"{en[SPECEDGE]:.3g} / {en[CLOUD_ONLY]:.3g} / {en[MOBILE_ONLY]:.3g} | "
            f"{row['latency_vs_cloud']:.2f}x | {row['energy_vs_cloud']:.3f} | {accuracy} |"
        )
    lines += ["", "## Verdicts", ""]
    lines += [f"- {verdict(e)}".replace("\n  ", "\n  ") for e in evaluations]
    return "\n".join(lines) + "\n"
