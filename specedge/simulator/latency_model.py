"""Neurosurgeon-style per-layer latency regression (thesis section 4.3.2).

SIEVE's selector predicts a CNN's on-device latency from per-layer regression models keyed by
layer type and configuration, trained once on many CNNs and reused for new ones. Here each layer
*kind* gets its own non-negative linear model of its measured time::

    t = c0 + c1 * MACs + c2 * input bytes + c3 * output bytes + c4 * weight bytes

Why this form: its terms are the physics of a layer call (a fixed dispatch cost, arithmetic, and
reading and writing activations and weights), so non-negative coefficients extrapolate sensibly to
layer sizes and architectures absent from training, where tree ensembles flatten out (the
benchmark, benchmarks/device_model.py, compares the two on held-out architectures); a handful of
rows per kind suffice; the fit is a weighted non-negative least squares on relative error (MAPE is
what matters for small layers); and the whole model is a few numbers in JSON.

Kinds are the module type, with convolutions split into depthwise and by kernel size (their
implementations differ: ``Conv2d/dw``, ``Conv2d/k3``, ...). A kind seen fewer than
``min_samples`` times backs off to its type's model, then to one model fitted on every row.

The estimator follows scikit-learn's conventions (``__init__`` stores hyper-parameters, ``fit``
returns ``self`` and sets attributes ending in ``_``, ``predict`` checks it is fitted; ``clone``
works). Like scikit-learn's text vectorisers take raw documents, ``X`` is a sequence of raw
:class:`~specedge.models.profiler.LayerProfile` rows. It saves to and loads from JSON (no pickle).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import nnls
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted

from specedge.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    from specedge.models.profiler import LayerProfile, ModelProfile

__all__ = ["FEATURES", "LayerLatencyRegressor", "layer_features", "layer_kind"]

#: The regression's features, after a constant term.
FEATURES = ("macs", "input_bytes", "output_bytes", "weight_bytes")
_FORMAT = "specedge.layer-latency-regressor/1"
_SHARED = "*"  # key of the model fitted on every row


def layer_kind(layer: LayerProfile) -> str:
    """The layer's kind: its module type, convolutions split into depthwise and by kernel size."""
    if layer.type.startswith("Conv") and layer.kernel is not None and layer.groups is not None:
        in_channels = layer.input_shape[0] if layer.input_shape else 0
        if layer.groups > 1 and layer.groups == in_channels:
            return f"{layer.type}/dw"
        return f"{layer.type}/k{'x'.join(map(str, sorted(set(layer.kernel))))}"
    return layer.type


def _back_off(kind: str) -> tuple[str, ...]:
    """Models to try for ``kind``, most specific first."""
    base = kind.split("/", 1)[0]
    return (kind, base, _SHARED) if base != kind else (kind, _SHARED)


def layer_features(layers: Sequence[LayerProfile]) -> np.ndarray:
    """``(N, 1 + len(FEATURES))`` design matrix: a constant, MACs, input, output and weight bytes."""
    rows = []
    for layer in layers:
        element_bytes = layer.activation_bytes / max(math.prod(layer.output_shape), 1) or 4.0
        rows.append(
            (1.0, layer.macs, math.prod(layer.input_shape) * element_bytes, layer.activation_bytes, layer.param_bytes)
        )
    return np.array(rows, dtype=np.float64).reshape(len(rows), 1 + len(FEATURES))


def _fit_relative_nnls(design: np.ndarray, latency_s: np.ndarray) -> np.ndarray:
    """Non-negative coefficients minimising the squared relative error of the prediction."""
    scaled = design / latency_s[:, None]  # row i divided by y_i: residuals become relative
    column_scale = np.abs(scaled).max(axis=0)
    column_scale[column_scale == 0] = 1.0  # a feature that is always 0 here keeps a 0 coefficient
    solution, _ = nnls(scaled / column_scale, np.ones(len(latency_s)))
    return np.asarray(solution / column_scale)


class LayerLatencyRegressor(RegressorMixin, BaseEstimator):  # type: ignore[misc]  # sklearn is untyped
    """Per-layer-kind non-negative linear latency model (see the module docstring).

    Args:
        min_samples: rows a kind (or type) needs for a model of its own; fewer back off.

    Attributes:
        coef_: per kind (and type, and ``"*"`` for all rows), the coefficients of
            ``(1, *FEATURES)``, in seconds per unit.
        counts_: training rows behind each model.
    """

    def __init__(self, *, min_samples: int = 5) -> None:
        self.min_samples = min_samples

    def fit(self, X: Sequence[LayerProfile], y: ArrayLike) -> LayerLatencyRegressor:  # noqa: N803 (sklearn)
        """Fit on profiled layer rows ``X`` and their measured latencies ``y`` in seconds (> 0)."""
        latency_s = np.asarray(y, dtype=np.float64)
        if self.min_samples < 1:
            raise ConfigError(f"min_samples must be >= 1; got {self.min_samples}")
        if latency_s.shape != (len(X),) or len(X) == 0:
            raise ConfigError(
                f"need one latency per layer row and at least one row; got {len(X)} rows, y {latency_s.shape}"
            )
        if not np.all(np.isfinite(latency_s) & (latency_s > 0)):
            raise ConfigError("latencies must be finite and > 0 seconds")
        design = layer_features(X)
        kinds = [layer_kind(layer) for layer in X]
        groups: dict[str, list[int]] = {_SHARED: list(range(len(X)))}
        for i, kind in enumerate(kinds):
            for key in _back_off(kind)[:-1]:
                groups.setdefault(key, []).append(i)
        self.coef_: dict[str, list[float]] = {}
        self.counts_: dict[str, int] = {}
        for key, rows in sorted(groups.items()):
            if key == _SHARED or len(rows) >= self.min_samples:
                self.coef_[key] = _fit_relative_nnls(design[rows], latency_s[rows]).tolist()
                self.counts_[key] = len(rows)
        return self

    def predict(self, X: Sequence[LayerProfile]) -> np.ndarray:  # noqa: N803 (sklearn)
        """Predicted latency in seconds of each layer row."""
        check_is_fitted(self, "coef_")
        if not len(X):
            return np.zeros(0)
        coef = np.array([self.coef_[next(k for k in _back_off(layer_kind(layer)) if k in self.coef_)] for layer in X])
        return np.asarray((layer_features(X) * coef).sum(axis=1))

    def predict_model(self, profile: ModelProfile) -> float:
        """Predicted latency of a whole model: the sum over its layer rows (layers run one after another)."""
        return float(self.predict(profile.layers).sum())

    # --- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready state: hyper-parameters and fitted coefficients."""
        check_is_fitted(self, "coef_")
        return {
            "format": _FORMAT,
            "params": self.get_params(),
            "features": ["constant", *FEATURES],
            "coef": self.coef_,
            "counts": self.counts_,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LayerLatencyRegressor:
        """Inverse of :meth:`to_dict`; :class:`ArtifactError` on a malformed dict."""
        try:
            if data["format"] != _FORMAT or data["features"] != ["constant", *FEATURES]:
                raise ValueError(f"format {data['format']!r} with features {data['features']}; expected {_FORMAT!r}")
            model = cls(**data["params"])
            coef = {str(k): [float(c) for c in v] for k, v in data["coef"].items()}
            if _SHARED not in coef or any(len(v) != 1 + len(FEATURES) or min(v) < 0 for v in coef.values()):
                raise ValueError("coefficients must hold the shared model and 5 non-negative numbers per kind")
            model.coef_ = coef
            model.counts_ = {str(k): int(v) for k, v in data["counts"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArtifactError(f"malformed layer latency regressor: {exc}") from exc
        return model

    def save(self, path: Path) -> None:
        """Write :meth:`to_dict` as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> LayerLatencyRegressor:
        """Read a regressor written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ArtifactError(f"cannot read layer latency regressor {path}: {exc}") from exc
        return cls.from_dict(data)
