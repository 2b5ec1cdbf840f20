"""Figures that show *why* the table comes out as it does.

``confidence.png`` redraws thesis Fig. 4.4 for this run: the speculative model's confidence
for correct answers, correctable errors (master right) and uncorrectable ones (both wrong),
with the detector's threshold. ``costs.png`` shows per-input latency and energy of the three
strategies on each link.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from specedge.demo.report import DemoReport

__all__ = ["plot_confidence", "plot_costs"]


def plot_confidence(report: DemoReport, path: Path) -> Path:
    """Histogram of speculative confidence by outcome, with the threshold."""
    run = report.run("SpecEdge")
    confidence = np.array([r.confidence for r in run.records], dtype=np.float64)
    spec_pred = np.array([r.local_prediction for r in run.records])
    spec_ok = spec_pred == run.labels
    master_ok = report.master_test_predictions == run.labels
    groups = {
        "correct": spec_ok,
        "correctable error (master right)": ~spec_ok & master_ok,
        "uncorrectable error (both wrong)": ~spec_ok & ~master_ok,
    }
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(confidence.min() if len(confidence) else 0.0, 1.0, 31)
    ax.hist(
        [confidence[mask] for mask in groups.values()],
        bins=bins,
        stacked=True,
        label=[f"{label}: {int(mask.sum())}" for label, mask in groups.items()],
        color=["tab:green", "tab:orange", "tab:red"],
    )
    threshold = float(report.detector["threshold"])
    ax.axvline(min(threshold, 1.0), color="black", linestyle="--", label=f"threshold {threshold:.3f}")
    ax.set_yscale("log")
    ax.set_xlabel("speculative model confidence (top softmax probability)")
    ax.set_ylabel("test inputs")
    ax.set_title(f"Misspeculation detector on {report.dataset['name']}\n(inputs left of the line go to the cloud)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_costs(report: DemoReport, path: Path) -> Path:
    """Grouped bars: estimated latency and energy per strategy and link."""
    links = report.links
    strategies = [run.strategy for run in report.runs]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(strategies)
    x = np.arange(len(links))
    for ax, attr, unit in (
        (axes[0], "latency_ms", "latency per input [ms]"),
        (axes[1], "energy_mj", "energy per input [mJ]"),
    ):
        for i, strategy in enumerate(strategies):
            values = [getattr(report.estimate(link, strategy), attr) for link in links]
            ax.bar(x + (i - (len(strategies) - 1) / 2) * width, values, width, label=strategy)
        ax.set_xticks(x, links)
        ax.set_yscale("log")
        ax.set_ylabel(unit)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Estimated cost per input on {report.dataset['name']} (device profile {report.device})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
