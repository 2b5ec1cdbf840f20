"""Misspeculation detector: escalate inputs whose speculative confidence is too low.

SIEVE (thesis section 4.3.3) treats the speculative CNN's top softmax probability as its
confidence and replays inputs below a threshold on the master in the cloud. The threshold is
learned on the validation split: it is the one that escalates the fewest inputs while the
combined system (speculative answer above the threshold, master answer below) still reaches
the target accuracy, ``target_ratio`` times the master's own validation accuracy.

This foundation version gives no statistical guarantee: the threshold meets the target on
validation, and test accuracy scatters around it by sampling error. The calibrated detector
(Learn-then-Test, temperature scaling) replaces it behind the same ``fit``/``escalate`` API.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from specedge.errors import ConfigError

__all__ = ["ConfidenceThresholdDetector", "ThresholdChoice", "choose_threshold", "max_confidence"]

#: Escalating everything: every softmax confidence (at most 1.0) lies below this threshold.
ESCALATE_ALL = math.nextafter(1.0, 2.0)


def max_confidence(probs: np.ndarray) -> np.ndarray:
    """The speculative model's confidence in its answer: its top softmax probability."""
    confidence: np.ndarray = np.asarray(probs).max(axis=1)
    return confidence


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen threshold and what it does on the calibration data."""

    threshold: float
    system_accuracy: float
    escalation_rate: float


def choose_threshold(
    confidence: np.ndarray,
    speculative_correct: np.ndarray,
    master_correct: np.ndarray,
    target_accuracy: float,
) -> ThresholdChoice:
    """The threshold that escalates the fewest inputs while reaching ``target_accuracy``.

    Escalating the ``k`` least-confident inputs gives accuracy
    ``(master_correct[:k].sum() + speculative_correct[k:].sum()) / n`` in confidence order;
    only cuts between distinct confidence values are realisable by a threshold. The threshold
    sits midway between the last escalated and the first kept confidence. If no cut reaches
    the target, everything is escalated (the master's accuracy is the best on offer).
    """
    n = confidence.shape[0]
    order = np.argsort(confidence, kind="stable")
    conf = confidence[order]
    spec_ok = speculative_correct[order].astype(np.int64)
    master_ok = master_correct[order].astype(np.int64)
    # correct[k] = answers right when the k least confident inputs go to the master, k = 0..n.
    escalated_right = np.concatenate([[0], np.cumsum(master_ok)])
    kept_right = np.concatenate([np.cumsum(spec_ok[::-1])[::-1], [0]])
    accuracy = (escalated_right + kept_right) / n
    realisable = np.ones(n + 1, dtype=bool)
    realisable[1:n] = conf[1:] > conf[:-1]
    feasible = np.flatnonzero(realisable & (accuracy >= target_accuracy - 1e-12))
    k = int(feasible[0]) if feasible.size else n
    if k == 0:
        threshold = 0.0
    elif k == n:
        threshold = ESCALATE_ALL
    else:
        threshold = float((conf[k - 1] + conf[k]) / 2)
    return ThresholdChoice(threshold=threshold, system_accuracy=float(accuracy[k]), escalation_rate=k / n)


class ConfidenceThresholdDetector:
    """One confidence threshold on the speculative model, fitted for a target accuracy.

    Follows scikit-learn's conventions: ``__init__`` stores options, ``fit`` learns the
    attributes ending in ``_`` and returns ``self``.

    Args:
        target_ratio: target system accuracy as a fraction of the master's validation
            accuracy (1.0 = match the master, 0.99 = "99% of baseline" as in thesis 4.5.6).
    """

    def __init__(self, *, target_ratio: float = 1.0) -> None:
        self.target_ratio = target_ratio

    def fit(
        self, speculative_probs: np.ndarray, master_predictions: np.ndarray, labels: np.ndarray
    ) -> ConfidenceThresholdDetector:
        """Learn the threshold from validation outputs of both models."""
        if not 0 < self.target_ratio <= 1:
            raise ConfigError(f"target_ratio must lie in (0, 1]; got {self.target_ratio}")
        probs = np.asarray(speculative_probs, dtype=np.float64)
        labels = np.asarray(labels)
        master_predictions = np.asarray(master_predictions)
        if probs.ndim != 2 or probs.shape[0] != labels.shape[0] or master_predictions.shape != labels.shape:
            raise ConfigError(
                f"fit needs probabilities (N, K) and N master predictions and labels; got {probs.shape}, "
                f"{master_predictions.shape}, {labels.shape}"
            )
        if labels.shape[0] == 0:
            raise ConfigError("cannot fit a detector on an empty validation set")
        speculative_correct = probs.argmax(axis=1) == labels
        master_correct = master_predictions == labels
        self.master_accuracy_ = float(master_correct.mean())
        self.speculative_accuracy_ = float(speculative_correct.mean())
        self.target_accuracy_ = self.target_ratio * self.master_accuracy_
        choice = choose_threshold(max_confidence(probs), speculative_correct, master_correct, self.target_accuracy_)
        self.threshold_ = choice.threshold
        self.val_system_accuracy_ = choice.system_accuracy
        self.val_escalation_rate_ = choice.escalation_rate
        self.n_calibration_ = int(labels.shape[0])
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise ConfigError("this ConfidenceThresholdDetector is not fitted yet; call fit() first")

    def escalate(self, probs: np.ndarray) -> np.ndarray:
        """Boolean mask: True where the input should be replayed on the master."""
        self._check_fitted()
        return max_confidence(probs) < self.threshold_

    def to_dict(self) -> dict[str, Any]:
        """Fitted state, JSON-ready (stored next to the models so the edge can reload it)."""
        self._check_fitted()
        return {
            "detector": "confidence-threshold",
            "target_ratio": self.target_ratio,
            "threshold": self.threshold_,
            "target_accuracy": self.target_accuracy_,
            "master_accuracy": self.master_accuracy_,
            "speculative_accuracy": self.speculative_accuracy_,
            "val_system_accuracy": self.val_system_accuracy_,
            "val_escalation_rate": self.val_escalation_rate_,
            "n_calibration": self.n_calibration_,
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> ConfidenceThresholdDetector:
        """Inverse of :meth:`to_dict`."""
        if state.get("detector") != "confidence-threshold":
            raise ConfigError(f"not a confidence-threshold detector state: detector={state.get('detector')!r}")
        try:
            detector = cls(target_ratio=float(state["target_ratio"]))
            detector.threshold_ = float(state["threshold"])
            detector.target_accuracy_ = float(state["target_accuracy"])
            detector.master_accuracy_ = float(state["master_accuracy"])
            detector.speculative_accuracy_ = float(state["speculative_accuracy"])
            detector.val_system_accuracy_ = float(state["val_system_accuracy"])
            detector.val_escalation_rate_ = float(state["val_escalation_rate"])
            detector.n_calibration_ = int(state["n_calibration"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed detector state: {exc!r}") from exc
        return detector
