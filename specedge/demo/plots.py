"""Figures that show *why* the table comes out as it does.

``costs.png`` shows per-input latency and energy of the three strategies on each link. The
detector's own figures (``outcomes.png``, ``tradeoff.png``) come from
:mod:`specedge.detector.plots`.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from specedge.demo.report import DemoReport

__all__ = ["plot_costs"]


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
