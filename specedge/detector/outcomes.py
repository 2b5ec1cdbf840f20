"""Outcome statistics of a speculative configuration (thesis figures 4.4 and 4.5).

Every calibration input falls in one outcome, and the detector's job is to separate them by
confidence: escalate the *correctable* ones (speculative wrong, master right), keep the
*correct* and *odd-correct* ones (speculative right; the master is wrong on the odd ones, so
escalating them costs accuracy, Dynamic Duo's "odd corrects", thesis 6.2.2), and the
*uncorrectable* ones (both wrong) do not matter. Without labels only agreement with the master
is known. The histograms are over the keep score (log-odds scale, fixed bins) so that they can
be stored with the detector and redrawn or compared later.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from specedge.errors import ConfigError

__all__ = ["HISTOGRAM_EDGES", "OutcomeStats", "outcome_masks"]

#: Bins of the stored histograms, in keep-score (log-odds) units; scores beyond fall in the end bins.
HISTOGRAM_EDGES = np.linspace(-10.0, 30.0, 81)


def outcome_masks(
    speculative_predictions: np.ndarray, master_predictions: np.ndarray, labels: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Boolean mask per outcome; the outcomes partition the inputs."""
    agree = speculative_predictions == master_predictions
    if labels is None:
        return {"agree": agree, "disagree": ~agree}
    speculative_right = speculative_predictions == labels
    master_right = master_predictions == labels
    return {
        "correct": speculative_right & master_right,
        "odd-correct": speculative_right & ~master_right,
        "correctable": ~speculative_right & master_right,
        "uncorrectable": ~speculative_right & ~master_right,
    }


@dataclass(frozen=True)
class OutcomeStats:
    """Counts and keep-score histograms per outcome on one calibration set."""

    counts: dict[str, int]
    histograms: dict[str, list[int]]

    @classmethod
    def from_scores(cls, keep_scores: np.ndarray, masks: dict[str, np.ndarray]) -> OutcomeStats:
        """Summarise ``keep_scores`` split by ``masks`` (from :func:`outcome_masks`)."""
        clipped = np.clip(keep_scores, HISTOGRAM_EDGES[0], HISTOGRAM_EDGES[-1])
        return cls(
            counts={name: int(mask.sum()) for name, mask in masks.items()},
            histograms={
                name: np.histogram(clipped[mask], bins=HISTOGRAM_EDGES)[0].astype(int).tolist()
                for name, mask in masks.items()
            },
        )

    @property
    def total(self) -> int:
        """Inputs summarised."""
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the bin edges are fixed by :data:`HISTOGRAM_EDGES`)."""
        return {"counts": self.counts, "histograms": self.histograms}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> OutcomeStats:
        """Inverse of :meth:`to_dict`."""
        try:
            counts = {str(k): int(v) for k, v in state["counts"].items()}
            histograms = {str(k): [int(x) for x in v] for k, v in state["histograms"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"malformed outcome statistics: {exc!r}") from exc
        if set(counts) != set(histograms) or any(len(h) != len(HISTOGRAM_EDGES) - 1 for h in histograms.values()):
            raise ConfigError("malformed outcome statistics: histograms do not match the counts or the bins")
        return cls(counts=counts, histograms=histograms)
