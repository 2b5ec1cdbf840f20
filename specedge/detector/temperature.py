"""Temperature scaling and expected calibration error (Guo et al., ICML 2017).

One scalar ``T`` divides the speculative model's logits so that its softmax confidence matches
its observed accuracy on validation; the order of classes within an input never changes. The
fit minimises the negative log-likelihood over ``log T`` (a bounded scalar search, as in the
reference implementation), and the expected calibration error with 15 equal-width bins is
reported before and after (anchors.md section 8).

A detector fits the scaler on the targets it cares about: labels when it certifies accuracy,
the master's answers when it certifies agreement with the master (no labels needed).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from specedge.detector.scores import log_softmax
from specedge.errors import ConfigError

__all__ = ["TemperatureScaler", "expected_calibration_error"]

#: Search range of log T: T from 0.02 to 50 covers every model we have seen by far.
_LOG_T_BOUNDS = (np.log(0.02), np.log(50.0))


def _nll(logits: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    logp = log_softmax(logits / temperature)
    return float(-logp[np.arange(len(targets)), targets].mean())


def expected_calibration_error(logits: np.ndarray, targets: np.ndarray, *, n_bins: int = 15) -> float:
    """ECE: the mean |accuracy - confidence| over equal-width confidence bins, weighted by bin size."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    if len(targets) == 0:
        raise ConfigError("expected calibration error needs at least one input")
    probs = np.exp(log_softmax(logits))
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == targets
    bins = np.minimum((confidence * n_bins).astype(np.int64), n_bins - 1)
    weight = np.bincount(bins, minlength=n_bins) / len(targets)
    with np.errstate(invalid="ignore"):
        gap = np.abs(
            np.bincount(bins, weights=correct, minlength=n_bins)
            - np.bincount(bins, weights=confidence, minlength=n_bins)
        ) / np.bincount(bins, minlength=n_bins)
    return float(np.nansum(weight * gap))


class TemperatureScaler(BaseEstimator):  # type: ignore[misc]
    """Learns ``temperature_`` so that ``softmax(logits / temperature_)`` is calibrated.

    Args:
        n_bins: bins of the expected calibration error reported by :meth:`fit`.
    """

    def __init__(self, *, n_bins: int = 15) -> None:
        self.n_bins = n_bins

    def fit(self, logits: np.ndarray, targets: np.ndarray) -> TemperatureScaler:
        """Fit on validation logits ``(N, K)`` and the class each row should predict."""
        logits = np.asarray(logits, dtype=np.float64)
        targets = np.asarray(targets)
        if logits.ndim != 2 or targets.shape != (logits.shape[0],) or len(targets) == 0:
            raise ConfigError(
                f"temperature scaling needs logits (N, K) and N targets; got {logits.shape}, {targets.shape}"
            )
        if targets.min() < 0 or targets.max() >= logits.shape[1]:
            raise ConfigError(f"targets must be class indices in 0..{logits.shape[1] - 1}")
        result = minimize_scalar(
            lambda log_t: _nll(logits, targets, float(np.exp(log_t))), bounds=_LOG_T_BOUNDS, method="bounded"
        )
        self.temperature_ = float(np.exp(result.x))
        self.nll_before_ = _nll(logits, targets, 1.0)
        self.nll_after_ = _nll(logits, targets, self.temperature_)
        self.ece_before_ = expected_calibration_error(logits, targets, n_bins=self.n_bins)
        self.ece_after_ = expected_calibration_error(logits / self.temperature_, targets, n_bins=self.n_bins)
        return self

    def transform(self, logits: np.ndarray) -> np.ndarray:
        """The logits divided by the fitted temperature."""
        check_is_fitted(self, "temperature_")
        out: np.ndarray = np.asarray(logits, dtype=np.float64) / self.temperature_
        return out
