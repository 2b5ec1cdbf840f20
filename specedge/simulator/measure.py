"""Measured latency on this machine: whole models and single layers, torch eager at batch 1.

The device model needs ground truth: how long a model really takes here, one input at a time as a
camera delivers them, on one thread. Each timing warms up first, then repeats
and takes the median, because the machine is shared and noisy. Per-layer timings (the training
data of :mod:`specedge.simulator.latency_model`, as in Neurosurgeon and thesis section 4.3.2) run
every leaf module alone on an input of its profiled shape, interleaving the layers in rounds so
that a burst of noise hits all of them alike.

This module reads the clock (``time.perf_counter_ns``): it measures; the simulator itself never does.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from specedge.errors import ConfigError
from specedge.models.classifier import ImageClassifier
from specedge.models.profiler import LayerProfile, ModelProfile, profile_model

__all__ = ["LayerTiming", "measure_classifier_s", "measure_layers", "measure_module_s"]


@dataclass(frozen=True)
class LayerTiming:
    """One profiled layer call and its median measured latency."""

    layer: LayerProfile
    latency_s: float


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one thread (a device answering one input at a time), then restore the setting."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _check(warmup: int, repeats: int) -> None:
    if warmup < 0 or repeats < 1:
        raise ConfigError(f"need warmup >= 0 and repeats >= 1; got warmup {warmup}, repeats {repeats}")


def _bound(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    """``module(x)`` as a call without arguments."""
    return lambda: module(x)


def _median_s(call: Callable[[], object], *, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        call()
        samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e9


@torch.inference_mode()
def measure_module_s(module: nn.Module, input_shape: tuple[int, ...], *, warmup: int = 20, repeats: int = 100) -> float:
    """Median seconds of ``module`` on one random float input of ``input_shape`` (no batch dim), one thread."""
    _check(warmup, repeats)
    module.eval()
    x = torch.randn((1, *input_shape), generator=torch.Generator().manual_seed(0))
    with _one_thread():
        return _median_s(lambda: module(x), warmup=warmup, repeats=repeats)


@torch.inference_mode()
def measure_classifier_s(
    classifier: ImageClassifier, images: np.ndarray, *, warmup: int = 10, repeats: int = 3
) -> float:
    """Median seconds per input of ``classifier`` on uint8 ``images`` (N, C, H, W), one at a time, one thread.

    Every image is timed ``repeats`` times (after ``warmup`` untimed calls on the first one); the
    median over all timings is returned. Preprocessing (scale, resize, normalise) is included, as
    on the device.
    """
    _check(warmup, repeats)
    if images.dtype != np.uint8 or images.ndim != 4 or len(images) == 0:
        raise ConfigError(f"expected uint8 images (N, C, H, W) with N >= 1; got {images.dtype} {images.shape}")
    classifier.eval()
    batch = [torch.from_numpy(image[None]) for image in images]
    with _one_thread():
        for _ in range(warmup):
            classifier(batch[0])
        samples = []
        for _ in range(repeats):
            for x in batch:
                start = time.perf_counter_ns()
                classifier(x)
                samples.append(time.perf_counter_ns() - start)
    return statistics.median(samples) / 1e9


@torch.inference_mode()
def measure_layers(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    rounds: int = 5,
    calls_per_round: int = 20,
    warmup: int = 5,
    profile: ModelProfile | None = None,
) -> list[LayerTiming]:
    """Median latency of every leaf layer call of ``model``, each run alone on an input of its shape.

    Args:
        model: a backbone taking float ``(1, *input_shape)``.
        input_shape: the model's input shape without the batch dimension.
        rounds: passes over all layers; each layer's median is over rounds.
        calls_per_round: back-to-back calls per layer per round (their mean is one sample).
        warmup: untimed calls per layer before the first round.
        profile: the model's profile, if already computed.
    """
    _check(warmup, rounds)
    if calls_per_round < 1:
        raise ConfigError(f"calls_per_round must be >= 1; got {calls_per_round}")
    profile = profile if profile is not None else profile_model(model, input_shape)
    model.eval()
    generator = torch.Generator().manual_seed(0)
    calls = [
        _bound(model.get_submodule(layer.name), torch.randn((1, *layer.input_shape), generator=generator))
        for layer in profile.layers
    ]
    samples: list[list[float]] = [[] for _ in calls]
    with _one_thread():
        for call in calls:
            for _ in range(warmup):
                call()
        for _ in range(rounds):
            for i, call in enumerate(calls):
                start = time.perf_counter_ns()
                for _ in range(calls_per_round):
                    call()
                samples[i].append((time.perf_counter_ns() - start) / calls_per_round / 1e9)
    return [LayerTiming(layer, statistics.median(s)) for layer, s in zip(profile.layers, samples, strict=True)]
