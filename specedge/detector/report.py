"""How a fitted detector does on held-out outputs: the figures of thesis section 4.5.5 and Fig. 6.8.

Rates are fractions of all inputs, as SIEVE reports them: a *false negative* is a correctable
input (speculative wrong, master right) that was kept, a *false positive* an odd-correct input
(speculative right, master wrong) that was escalated. Accuracies come with 95% Clopper-Pearson
intervals so that a difference of a few test images is not read as a win or a loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from specedge.detector.audit import clopper_pearson
from specedge.detector.detector import MisspeculationDetector
from specedge.detector.outputs import ModelOutputs
from specedge.errors import ConfigError

__all__ = ["Calibration", "DetectorEvaluation", "calibrate_grid", "evaluate_detector", "tradeoff_curve"]


def _interval(successes: int, trials: int) -> tuple[float, float]:
    return clopper_pearson(successes, trials, 0.025)


@dataclass(frozen=True)
class DetectorEvaluation:
    """A detector's decisions on one labelled table."""

    inputs: int
    escalation_rate: float
    false_negative_rate: float
    false_positive_rate: float
    system_accuracy: float
    system_accuracy_interval: tuple[float, float]
    master_accuracy: float
    master_accuracy_interval: tuple[float, float]
    speculative_accuracy: float
    agreement: float

    @property
    def accuracy_ratio(self) -> float:
        """System accuracy as a fraction of the master's."""
        return self.system_accuracy / self.master_accuracy if self.master_accuracy else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, with the ratio."""
        return {**asdict(self), "accuracy_ratio": self.accuracy_ratio}


def evaluate_detector(detector: MisspeculationDetector, outputs: ModelOutputs) -> DetectorEvaluation:
    """Apply ``detector`` to ``outputs`` (which must carry labels) and count what happens."""
    if outputs.labels is None:
        raise ConfigError("evaluating a detector needs labelled outputs")
    decisions = detector.decide(outputs.speculative_logits)
    escalate, speculative = decisions.escalate, decisions.predictions
    master, labels = outputs.master_predictions, outputs.labels
    final = np.where(escalate, master, speculative)
    n = len(outputs)
    system_right, master_right = int((final == labels).sum()), int((master == labels).sum())
    return DetectorEvaluation(
        inputs=n,
        escalation_rate=float(escalate.mean()),
        false_negative_rate=float((~escalate & (speculative != labels) & (master == labels)).mean()),
        false_positive_rate=float((escalate & (speculative == labels) & (master != labels)).mean()),
        system_accuracy=system_right / n,
        system_accuracy_interval=_interval(system_right, n),
        master_accuracy=master_right / n,
        master_accuracy_interval=_interval(master_right, n),
        speculative_accuracy=float((speculative == labels).mean()),
        agreement=float((final == master).mean()),
    )


def tradeoff_curve(detector: MisspeculationDetector, outputs: ModelOutputs) -> tuple[np.ndarray, np.ndarray]:
    """System accuracy against escalation rate as the detector's threshold sweeps its whole range.

    The detector's learned offsets (per class, per minion) stay; only the common threshold
    moves, from escalating nothing to escalating everything (thesis Fig. 6.8).
    """
    if outputs.labels is None:
        raise ConfigError("an accuracy curve needs labelled outputs")
    decisions = detector.decide(outputs.speculative_logits)
    keep = decisions.keep_scores
    right_kept = (decisions.predictions == outputs.labels).astype(np.int64)
    right_escalated = (outputs.master_predictions == outputs.labels).astype(np.int64)
    order = np.argsort(keep, kind="stable")
    escalated_right = np.concatenate([[0], np.cumsum(right_escalated[order])])
    kept_right = np.concatenate([np.cumsum(right_kept[order][::-1])[::-1], [0]])
    n = len(keep)
    return np.arange(n + 1) / n, (escalated_right + kept_right) / n


@dataclass(frozen=True)
class Calibration:
    """One policy x target: the fitted detector and its test evaluation, or why there is none."""

    policy: str
    target: float
    detector: MisspeculationDetector | None
    evaluation: DetectorEvaluation | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready row (the detector state itself is stored separately)."""
        row: dict[str, Any] = {"policy": self.policy, "target": self.target, "error": self.error}
        if self.detector is not None:
            row |= {
                "certified": self.detector.certified,
                "delta": self.detector.delta,
                "guarantee": self.detector.describe(),
                "validation_escalation_rate": self.detector.escalation_rate_,
            }
        if self.evaluation is not None:
            row |= self.evaluation.to_dict()
        return row


def calibrate_grid(
    validation: ModelOutputs,
    test: ModelOutputs | None,
    *,
    policies: Sequence[str],
    targets: Sequence[float],
    **params: Any,
) -> list[Calibration]:
    """Fit one detector per policy and target on ``validation`` and judge it on ``test``.

    A policy/target that cannot be reached or certified yields a row with the reason instead of
    a detector, so a table can show it next to the ones that work.
    """
    results = []
    for policy in policies:
        for target in targets:
            try:
                detector = MisspeculationDetector(policy=policy, target=target, **params).fit(
                    validation.speculative_logits, validation.master_predictions, validation.labels
                )
            except ConfigError as exc:
                results.append(Calibration(policy, target, None, None, str(exc)))
                continue
            evaluation = evaluate_detector(detector, test) if test is not None and test.labels is not None else None
            results.append(Calibration(policy, target, detector, evaluation))
    return results
