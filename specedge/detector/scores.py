"""Confidence scores of a speculative model, computed from its logits.

SIEVE and Dynamic Duo trust an answer by its top softmax probability (thesis sections 4.3.3,
6.3.2). Near 1 that probability saturates in floating point (an MNIST model puts most inputs
at 0.9999...), so thresholds there cannot be told apart. Every score here is therefore the
*log-odds* of its probability-scale counterpart, computed from logits with log-sum-exp: the
order of inputs is exactly the order of the probability-scale score, but the values stay
distinct and well spread, and a threshold grid fixed in advance covers them evenly.

    max_softmax   logit(p1)            = z1 - logsumexp(z_2..z_K)
    margin        logit(p1 - p2)       = log(p1 - p2) - log(1 - p1 + p2)
    entropy       -log(H / log K)      of the normalised entropy H / log K

``z`` are the logits divided by a temperature (1 if the detector does not scale), sorted so
that ``z1 >= z2 >= ...``. Higher means more confident for every score;
:func:`probability_from_score` maps a score back to ``p1``, ``p1 - p2`` or ``1 - H / log K``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import expit

from specedge.errors import ConfigError

__all__ = ["SCORES", "get_score", "log_softmax", "probability_from_score", "score_logits"]

Score = Callable[[np.ndarray], np.ndarray]

#: Scores are clipped to this range so that +-inf never reaches a threshold comparison.
SCORE_LIMIT = 1e3


def logsumexp(z: np.ndarray, axis: int = -1, keepdims: bool = False) -> np.ndarray:
    """``log(sum(exp(z)))`` along ``axis``, shifted by the maximum so nothing overflows.

    Plain numpy rather than :func:`scipy.special.logsumexp`: on the edge's hot path (one row of
    K logits per input) scipy's array-API dispatch costs ~50 us per call, numpy's ~5 us.
    """
    top = np.max(z, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)  # all -inf: log(0) = -inf, not nan
    with np.errstate(divide="ignore"):
        out: np.ndarray = np.log(np.sum(np.exp(z - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    out: np.ndarray = z - logsumexp(z, axis=-1, keepdims=True)
    return out


def _sorted_desc(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    return -np.sort(-z, axis=-1)


def _max_softmax(logits: np.ndarray) -> np.ndarray:
    z = _sorted_desc(logits)
    out: np.ndarray = z[..., 0] - logsumexp(z[..., 1:], axis=-1)
    return out


def _margin(logits: np.ndarray) -> np.ndarray:
    z = _sorted_desc(logits)
    lse = logsumexp(z, axis=-1)
    # p1 - p2 = exp(z1 - lse) - exp(z2 - lse);  1 - (p1 - p2) = 2 p2 + sum_{j>=3} p_j.
    with np.errstate(divide="ignore"):  # a tie at the top is margin 0: log-odds -inf, clipped below
        log_gap = z[..., 0] - lse + np.log(-np.expm1(z[..., 1] - z[..., 0]))
    rest = np.concatenate([z[..., 1:2] + np.log(2.0), z[..., 2:]], axis=-1)
    out: np.ndarray = log_gap - (logsumexp(rest, axis=-1) - lse)
    return out


def _entropy(logits: np.ndarray) -> np.ndarray:
    logp = log_softmax(logits)
    entropy = -(np.exp(logp) * logp).sum(axis=-1)
    normalised = np.maximum(entropy / np.log(logp.shape[-1]), np.finfo(np.float64).tiny)
    out: np.ndarray = -np.log(normalised)
    return out


SCORES: dict[str, Score] = {"max_softmax": _max_softmax, "margin": _margin, "entropy": _entropy}


def get_score(name: str) -> Score:
    """The score function called ``name``; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return SCORES[name]
    except KeyError:
        raise ConfigError(f"unknown confidence score {name!r}; expected one of: {', '.join(SCORES)}") from None


def score_logits(logits: np.ndarray, name: str, *, temperature: float = 1.0) -> np.ndarray:
    """Score of each row of ``logits`` (``(N, K)``, K >= 2) after dividing by ``temperature``."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim < 2 or z.shape[-1] < 2:
        raise ConfigError(f"scores need logits of shape (N, K) with K >= 2 classes; got {z.shape}")
    return np.clip(get_score(name)(z / temperature), -SCORE_LIMIT, SCORE_LIMIT)


def probability_from_score(name: str, score: np.ndarray | float) -> np.ndarray:
    """Back to the [0, 1] scale users read: p1, p1 - p2, or 1 - normalised entropy."""
    get_score(name)
    value = np.asarray(score, dtype=np.float64)
    out: np.ndarray = -np.expm1(-value) if name == "entropy" else expit(value)
    return out
