"""Figures of a calibration: where the outcomes sit in confidence, and accuracy against recomputation.

``outcomes.png`` redraws thesis figures 4.4/4.5 from the stored outcome statistics: keep-score
histograms of correct, odd-correct, correctable and uncorrectable answers with the threshold.
``tradeoff.png`` redraws Fig. 6.8: system accuracy as more inputs are recomputed on the master,
one curve per policy, with the master's accuracy as the line to reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from specedge.detector.detector import MisspeculationDetector
from specedge.detector.outcomes import HISTOGRAM_EDGES

__all__ = ["plot_outcomes", "plot_tradeoff"]

_COLOURS = {
    "correct": "tab:green",
    "odd-correct": "tab:blue",
    "correctable": "tab:orange",
    "uncorrectable": "tab:red",
    "agree": "tab:green",
    "disagree": "tab:orange",
}


def plot_outcomes(detector: MisspeculationDetector, path: Path, *, title: str = "") -> Path:
    """Stacked keep-score histograms per outcome, with the detector's threshold."""
    stats = detector.outcomes_
    centres = (HISTOGRAM_EDGES[:-1] + HISTOGRAM_EDGES[1:]) / 2
    width = float(HISTOGRAM_EDGES[1] - HISTOGRAM_EDGES[0])
    fig, ax = plt.subplots(figsize=(7.5, 4))
    bottom = np.zeros(len(centres))
    for name, counts in stats.histograms.items():
        values = np.asarray(counts, dtype=np.float64)
        ax.bar(centres, values, width, bottom=bottom, color=_COLOURS.get(name), label=f"{name}: {stats.counts[name]}")
        bottom += values
    ax.axvline(detector.threshold_, color="black", linestyle="--", label=f"threshold {detector.threshold_:.2f}")
    ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel(f"keep score ({detector.score}, log-odds; left of the line goes to the master)")
    ax.set_ylabel("calibration inputs")
    ax.set_title(title or detector.describe(), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_tradeoff(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    master_accuracy: float,
    path: Path,
    *,
    title: str = "",
    points: Mapping[str, tuple[float, float]] | None = None,
) -> Path:
    """Accuracy against recomputation rate per policy; ``points`` marks each chosen operating point."""
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (rate, accuracy) in curves.items():
        ax.plot(100 * rate, 100 * accuracy, label=label)
    for label, (point_rate, point_accuracy) in (points or {}).items():
        ax.plot(100 * point_rate, 100 * point_accuracy, "o", label=label)
    ax.axhline(100 * master_accuracy, color="black", linestyle="--", label="master")
    low = min((float(a.min()) for _, a in curves.values()), default=master_accuracy)
    ax.set_ylim(100 * max(low, master_accuracy - 0.05), 100 * min(1.0, master_accuracy + 0.01) + 0.05)
    ax.set_xlim(0, max(20.0, 100 * max((p[0] for p in (points or {}).values()), default=0) * 2))
    ax.set_xlabel("inputs recomputed on the master [%]")
    ax.set_ylabel("system accuracy [%]")
    ax.set_title(title or "Accuracy against recomputation rate", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
