"""Choose the device backend per model: ONNX Runtime where it is as exact and faster, else torch eager.

Torch eager is the reference. An ONNX export must first pass a parity check against it on the
validation images (every prediction agrees, every logit difference finite) and is then used only
when it is faster at batch 1, the device's operating point (thesis 4.4; anchors.md section 8
measures 2-10x on one thread). The :class:`BackendChoice` records the decision, the measured
latencies and the parity, so a report can say why the device ran what it ran.
"""

from __future__ import annotations

import importlib
import math
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from specedge.backends.export import export_onnx
from specedge.backends.runners import ModelRunner, OnnxRunner, TorchRunner, check_images
from specedge.errors import ConfigError, SpecEdgeError
from specedge.models.classifier import ImageClassifier

__all__ = ["BACKENDS", "BackendChoice", "Parity", "choose_backend", "measure_latency_us", "parity_check"]

BACKENDS = ("auto", "torch", "onnxruntime")
#: Largest logit difference an export may show against torch: far below what moves a detector's score.
PARITY_LOGIT_TOLERANCE = 1e-3
_WARMUP = 10
_REPEATS = 50


@dataclass(frozen=True)
class Parity:
    """How closely a candidate backend reproduces the reference on ``count`` images."""

    agreement: float  # share of images whose top-1 prediction is the same
    max_abs_logit_diff: float
    count: int

    @property
    def passed(self) -> bool:
        """Every prediction agrees and no logit differs by more than :data:`PARITY_LOGIT_TOLERANCE`.

        The tolerance matters because the detector scores logits, not only the top class.
        """
        return self.agreement == 1.0 and self.max_abs_logit_diff <= PARITY_LOGIT_TOLERANCE

    def describe(self) -> str:
        """E.g. ``parity 359/359, max |dlogit| 2.4e-07``."""
        agreeing = round(self.agreement * self.count)
        return f"parity {agreeing}/{self.count}, max |dlogit| {self.max_abs_logit_diff:.2g}"


@dataclass
class BackendChoice:
    """Which backend the device runs a model on, and why."""

    backend: str  # "torch" or "onnxruntime"
    reason: str
    latency_us: dict[str, float]  # median batch-1 latency per measured backend
    parity: Parity | None  # ONNX Runtime against torch; None when no export was checked

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackendChoice:
        """Inverse of :meth:`to_dict`."""
        parity = d.get("parity")
        return cls(
            backend=str(d["backend"]),
            reason=str(d["reason"]),
            latency_us={str(k): float(v) for k, v in d["latency_us"].items()},
            parity=Parity(**parity) if parity is not None else None,
        )


def parity_check(reference: ModelRunner, candidate: ModelRunner, images: np.ndarray) -> Parity:
    """Compare ``candidate``'s logits with ``reference``'s on ``images``."""
    if len(images) == 0:
        raise ConfigError("a parity check needs at least one image")
    expected, got = reference.logits(images), candidate.logits(images)
    agreement = float(np.mean(expected.argmax(axis=1) == got.argmax(axis=1)))
    with np.errstate(invalid="ignore"):  # inf - inf is NaN, which fails the check as it should
        diff = float(np.max(np.abs(expected.astype(np.float64) - got)))
    return Parity(agreement=agreement, max_abs_logit_diff=diff if math.isfinite(diff) else math.inf, count=len(images))


def measure_latency_us(runner: ModelRunner, images: np.ndarray, *, batch: int, repeats: int, warmup: int) -> float:
    """Median wall time in microseconds of ``runner.logits`` on the first ``batch`` images."""
    if batch < 1 or repeats < 1 or warmup < 0 or len(images) < batch:
        raise ConfigError(
            f"need 1 <= batch <= {len(images)} images, repeats >= 1 and warmup >= 0; "
            f"got batch {batch}, repeats {repeats}, warmup {warmup}"
        )
    inputs = images[:batch]
    for _ in range(warmup):
        runner.logits(inputs)
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        runner.logits(inputs)
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e3


def choose_backend(
    classifier: ImageClassifier,
    validation_images: np.ndarray,
    *,
    prefer: str = "auto",
    threads: int = 1,
    onnx_bytes: bytes | None = None,
) -> tuple[ModelRunner, BackendChoice]:
    """The runner the device should use for ``classifier`` and the record of the choice.

    ``prefer="torch"`` skips the export; ``"onnxruntime"`` insists on it and raises
    :class:`ConfigError` if parity fails; ``"auto"`` takes ONNX Runtime when parity passes on
    all ``validation_images`` and it is faster at batch 1, else torch. ``onnx_bytes`` reuses an
    export made earlier (it must be of this classifier).
    """
    if prefer not in BACKENDS:
        raise ConfigError(f"unknown backend {prefer!r}; expected one of: {', '.join(BACKENDS)}")
    check_images(validation_images, classifier.spec.image_shape)
    if len(validation_images) == 0:
        raise ConfigError("choosing a backend needs at least one validation image")
    torch_runner = TorchRunner(classifier, threads=threads)
    if prefer == "torch":
        return torch_runner, _record(torch_runner, (torch_runner,), validation_images, "torch requested", None)
    missing = _missing_onnx_packages()
    if missing is not None:
        if prefer == "onnxruntime":
            raise ConfigError(f"the onnxruntime backend needs {missing}; install it or choose the torch backend")
        reason = f"onnxruntime unavailable ({missing})"
        return torch_runner, _record(torch_runner, (torch_runner,), validation_images, reason, None)
    try:
        model_bytes = export_onnx(classifier, validation_images) if onnx_bytes is None else onnx_bytes
        onnx_runner = OnnxRunner(model_bytes, threads=threads)
        parity = parity_check(torch_runner, onnx_runner, validation_images)
    except SpecEdgeError as exc:  # the export failed, or ORT cannot load or run the model
        if prefer == "onnxruntime":
            raise
        reason = f"onnxruntime unusable: {exc}"
        return torch_runner, _record(torch_runner, (torch_runner,), validation_images, reason, None)
    both = (torch_runner, onnx_runner)
    if not parity.passed:
        if prefer == "onnxruntime":
            label = classifier.spec.label
            raise ConfigError(f"{label} on onnxruntime fails the parity check with torch: {_failed(parity)}")
        return torch_runner, _record(torch_runner, both, validation_images, f"parity failed: {_failed(parity)}", parity)
    if prefer == "onnxruntime":
        reason = f"onnxruntime requested; {parity.describe()}"
        return onnx_runner, _record(onnx_runner, both, validation_images, reason, parity)
    return _faster(onnx_runner, torch_runner, validation_images, parity)


def _faster(
    onnx_runner: OnnxRunner, torch_runner: TorchRunner, images: np.ndarray, parity: Parity
) -> tuple[ModelRunner, BackendChoice]:
    """The faster of two runners at batch 1 (on a tie torch stays: the export buys nothing)."""
    latency_us = _latencies((onnx_runner, torch_runner), images)
    onnx_us, torch_us = latency_us["onnxruntime"], latency_us["torch"]
    winner: ModelRunner = onnx_runner if onnx_us < torch_us else torch_runner
    speedup = max(onnx_us, torch_us) / min(onnx_us, torch_us)
    reason = f"{winner.backend} {speedup:.1f}x faster at batch 1; {parity.describe()}"
    return winner, BackendChoice(winner.backend, reason, latency_us, parity)


def _record(
    chosen: ModelRunner, measured: tuple[ModelRunner, ...], images: np.ndarray, reason: str, parity: Parity | None
) -> BackendChoice:
    """The choice of ``chosen``, with the batch-1 latency of every runner in ``measured``."""
    return BackendChoice(chosen.backend, reason, _latencies(measured, images), parity)


def _latencies(runners: tuple[ModelRunner, ...], images: np.ndarray) -> dict[str, float]:
    return {runner.backend: _latency_us(runner, images) for runner in runners}


def _latency_us(runner: ModelRunner, images: np.ndarray) -> float:
    return measure_latency_us(runner, images, batch=1, repeats=_REPEATS, warmup=_WARMUP)


def _failed(parity: Parity) -> str:
    agreeing = round(parity.agreement * parity.count)
    return f"{agreeing}/{parity.count} predictions agree, max |dlogit| {parity.max_abs_logit_diff:.2g}"


def _missing_onnx_packages() -> str | None:
    """``"No module named 'onnxruntime'"`` when the export or runtime packages cannot be imported."""
    for module in ("onnxruntime", "onnx", "onnxscript"):
        try:
            importlib.import_module(module)
        except ImportError as exc:
            return str(exc)
    return None
