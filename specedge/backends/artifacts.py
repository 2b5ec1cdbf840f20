"""Run any artifact on the device: fp32 and SIEVE models by backend choice, int8 models on ONNX Runtime.

An int8 artifact is an ONNX Runtime graph with no torch form, so it has one backend; every other
encoding goes through :func:`~specedge.backends.selection.choose_backend`, whose parity check
guards the export (the detector must be calibrated on exactly what the device runs).
"""

from __future__ import annotations

import numpy as np

from specedge.backends.runners import ModelRunner, OnnxRunner, check_images
from specedge.backends.selection import BACKENDS, BackendChoice, choose_backend, measure_latency_us
from specedge.errors import ConfigError
from specedge.models.artifact import LoadedModel

__all__ = ["runner_for"]

_REPEATS = 50


def runner_for(
    loaded: LoadedModel, validation_images: np.ndarray, *, prefer: str = "auto", threads: int = 1
) -> tuple[ModelRunner, BackendChoice]:
    """The runner the device uses for ``loaded`` and the record of why (see ``choose_backend``)."""
    if prefer not in BACKENDS:
        raise ConfigError(f"unknown backend {prefer!r}; expected one of: {', '.join(BACKENDS)}")
    if loaded.onnx_model is None:
        return choose_backend(loaded.classifier, validation_images, prefer=prefer, threads=threads)
    if prefer == "torch":
        raise ConfigError(f"{loaded.path} is an {loaded.encoding} model, which runs on onnxruntime only")
    check_images(validation_images, loaded.spec.image_shape)
    runner = OnnxRunner(loaded.onnx_model, threads=threads)
    latency_us = measure_latency_us(runner, validation_images, batch=1, repeats=_REPEATS, warmup=5)
    reason = f"{loaded.encoding} graphs run on onnxruntime only"
    return runner, BackendChoice("onnxruntime", reason, {"onnxruntime": latency_us}, None)
