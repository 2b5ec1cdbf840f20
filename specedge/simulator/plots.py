"""Stacked bars like thesis figures 4.13 and 4.14: mobile-only and SpecEdge normalised by cloud-only.

Per link, the left bar is mobile-only and the right one SpecEdge (speculating), both divided by
cloud-only's cost on that link (the dashed line at 1); bars above 2.5 are cut and labelled.
SpecEdge's bar is split into what it spends on the device, on moving data, and (energy) on waking
the radio and keeping it in its tail, so the figure shows *why* speculation pays or not.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np

from specedge.simulator.system import CLOUD_ONLY, MOBILE_ONLY, SystemEvaluation

__all__ = ["plot_breakdown"]

_ENERGY_PARTS = {
    "compute on device": ("local",),
    "moving data and waiting": ("upload", "download", "wait", "handshake"),
    "radio promotion and tail": ("promotion", "tail"),
}
_LATENCY_PARTS = {
    "compute on device": ("local",),
    "network and server": ("promotion", "handshake", "upload", "wait", "download"),
    "queueing behind earlier inputs": ("queue",),
}
_COLOURS = ("tab:blue", "tab:orange", "tab:red")
#: Bars taller than this many times cloud-only are cut and labelled with their value.
_CAP = 2.5


def _panel(ax: plt.Axes, evaluations: Sequence[SystemEvaluation], energy: bool) -> None:
    parts = _ENERGY_PARTS if energy else _LATENCY_PARTS
    x = np.arange(len(evaluations))
    tallest = 1.0
    for i, e in enumerate(evaluations):
        baseline = e[CLOUD_ONLY].energy_mj if energy else e[CLOUD_ONLY].latency_ms
        mobile = (e[MOBILE_ONLY].energy_mj if energy else e[MOBILE_ONLY].latency_ms) / baseline
        ax.bar(x[i] - 0.2, min(mobile, _CAP), 0.35, color="tab:gray", label="mobile-only" if i == 0 else None)
        tallest = max(tallest, mobile)
        if mobile > _CAP:
            ax.text(x[i] - 0.2, _CAP, f"{mobile:.1f}", ha="center", va="bottom", fontsize=7)
        components = e.speculating.components_mj() if energy else e.speculating.components_ms()
        bottom = 0.0
        for (label, keys), colour in zip(parts.items(), _COLOURS, strict=True):
            value = sum(components[k] for k in keys) / baseline
            shown = max(0.0, min(bottom + value, _CAP) - bottom)
            ax.bar(x[i] + 0.2, shown, 0.35, bottom=bottom, color=colour, label=f"SpecEdge: {label}" if i == 0 else None)
            bottom += value
        tallest = max(tallest, bottom)
        if bottom > _CAP:
            ax.text(x[i] + 0.2, _CAP, f"{bottom:.1f}", ha="center", va="bottom", fontsize=7)
    ax.axhline(1.0, color="black", linestyle="--", linewidth=1, label="cloud-only")
    ax.set_xticks(x, [f"{e.link}\n{e.kind}" for e in evaluations])
    ax.set_ylim(0, min(tallest, _CAP) * 1.15)
    ax.set_ylabel(("energy" if energy else "latency") + " / cloud-only")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)


def plot_breakdown(evaluations: Sequence[SystemEvaluation], path: Path, *, title: str) -> Path:
    """Energy (left) and latency (right) per link, normalised by cloud-only, SpecEdge stacked by cause."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    _panel(axes[0], evaluations, energy=True)
    _panel(axes[1], evaluations, energy=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
