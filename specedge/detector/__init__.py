"""The misspeculation detector: which speculative answers to keep, with a statistical guarantee.

Thesis sections 4.3.3 (SIEVE), 5.2.3 (M&MNet) and 6.4 (Dynamic Duo) pick confidence thresholds
from validation histograms; this package adds calibrated scores, exact per-class optimisation,
a Learn-then-Test guarantee, label-free (re)calibration and an audit for operation.
"""

from specedge.detector.detector import (
    DETECTOR_KIND,
    POLICIES,
    QUALITIES,
    MisspeculationDetector,
    check_target,
    load_detector,
)
from specedge.detector.outcomes import OutcomeStats, outcome_masks
from specedge.detector.outputs import ModelOutputs
from specedge.detector.scores import SCORES, probability_from_score, score_logits
from specedge.detector.temperature import TemperatureScaler, expected_calibration_error

__all__ = [
    "DETECTOR_KIND",
    "POLICIES",
    "QUALITIES",
    "SCORES",
    "MisspeculationDetector",
    "ModelOutputs",
    "OutcomeStats",
    "TemperatureScaler",
    "check_target",
    "expected_calibration_error",
    "load_detector",
    "outcome_masks",
    "probability_from_score",
    "score_logits",
]
