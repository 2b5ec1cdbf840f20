"""Backend choice: parity first, then batch-1 latency; the record says why."""

from __future__ import annotations

import copy
import json
import math
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from specedge.backends import (
    BackendChoice,
    OnnxRunner,
    Parity,
    TorchRunner,
    choose_backend,
    export_onnx,
    measure_latency_us,
    parity_check,
)
from specedge.errors import ArtifactError, ConfigError, TensorError
from specedge.models.classifier import ImageClassifier, build_classifier


class _Fixed:
    """A runner returning given logits, recording the batch sizes it was called with."""

    backend = "fixed"

    def __init__(self, logits: np.ndarray) -> None:
        self._logits = logits
        self.calls: list[int] = []

    def logits(self, images: np.ndarray) -> np.ndarray:
        self.calls.append(len(images))
        return self._logits[: len(images)]


def _images(n: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)


@pytest.fixture(scope="module")
def lenet() -> tuple[ImageClassifier, bytes]:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.5)
    return classifier, export_onnx(classifier, _images(2))


def test_parity_check_counts_agreement_and_the_largest_difference():
    logits = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 3.0]], dtype=np.float32)
    flipped = logits.copy()
    flipped[3] = [3.5, 0.0]
    parity = parity_check(_Fixed(logits), _Fixed(flipped), _images(4))
    assert parity == Parity(agreement=0.75, max_abs_logit_diff=3.5, count=4)
    assert not parity.passed
    assert parity_check(_Fixed(logits), _Fixed(logits.copy()), _images(4)).passed


def test_parity_fails_on_non_finite_logits():
    logits = np.ones((2, 3), dtype=np.float32)
    broken = logits.copy()
    broken[1, 1] = np.nan
    parity = parity_check(_Fixed(logits), _Fixed(broken), _images(2))
    assert parity.max_abs_logit_diff == math.inf and not parity.passed
    with pytest.raises(ConfigError, match="at least one image"):
        parity_check(_Fixed(logits), _Fixed(logits), _images(0))


def test_latency_is_measured_on_the_first_batch_images():
    runner = _Fixed(np.zeros((8, 2), dtype=np.float32))
    latency_us = measure_latency_us(runner, _images(8), batch=3, repeats=5, warmup=2)
    assert latency_us > 0 and runner.calls == [3] * 7
    with pytest.raises(ConfigError, match="got batch 9"):
        measure_latency_us(runner, _images(8), batch=9, repeats=5, warmup=2)


def test_auto_records_both_latencies_and_the_reason(lenet):
    classifier, model_bytes = lenet
    runner, choice = choose_backend(classifier, _images(), onnx_bytes=model_bytes)
    assert runner.backend == choice.backend
    assert set(choice.latency_us) == {"torch", "onnxruntime"}
    assert choice.parity is not None and choice.parity.passed and choice.parity.count == 32
    assert f"{choice.backend} " in choice.reason and "faster at batch 1; parity 32/32, max |dlogit|" in choice.reason
    fastest = min(choice.latency_us, key=choice.latency_us.__getitem__)
    assert choice.backend == fastest
    assert BackendChoice.from_dict(json.loads(json.dumps(choice.to_dict()))) == choice


def test_auto_exports_when_no_model_is_given(lenet):
    classifier, _ = lenet
    runner, choice = choose_backend(classifier, _images(8), prefer="onnxruntime")
    assert isinstance(runner, OnnxRunner) and choice.backend == "onnxruntime"
    assert choice.reason.startswith("onnxruntime requested; parity 8/8")
    assert set(choice.latency_us) == {"torch", "onnxruntime"}


def test_prefer_torch_skips_the_export(lenet):
    classifier, _ = lenet
    runner, choice = choose_backend(classifier, _images(4), prefer="torch")
    assert isinstance(runner, TorchRunner)
    assert (choice.backend, choice.reason, choice.parity) == ("torch", "torch requested", None)
    assert set(choice.latency_us) == {"torch"}
    assert BackendChoice.from_dict(choice.to_dict()) == choice


@pytest.fixture(scope="module")
def wrong_model_bytes(lenet) -> bytes:
    """A model with the same input and output as ``lenet`` whose logits are negated."""
    classifier, _ = lenet
    negated = copy.deepcopy(classifier)
    last = [m for m in negated.backbone.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.neg_()
        last.bias.neg_()
    return export_onnx(negated, _images(2))


def test_auto_keeps_torch_when_parity_fails(lenet, wrong_model_bytes):
    classifier, _ = lenet
    runner, choice = choose_backend(classifier, _images(), onnx_bytes=wrong_model_bytes)
    assert isinstance(runner, TorchRunner) and choice.backend == "torch"
    assert choice.reason.startswith("parity failed: 0/32 predictions agree, max |dlogit|")
    assert choice.parity is not None and not choice.parity.passed
    assert set(choice.latency_us) == {"torch", "onnxruntime"}  # what keeping torch costs is on record


def test_insisting_on_onnxruntime_with_failing_parity_raises(lenet, wrong_model_bytes):
    classifier, _ = lenet
    expected = r"lenet5\(width=0.5\) on onnxruntime fails the parity check with torch: 0/32 predictions agree"
    with pytest.raises(ConfigError, match=expected):
        choose_backend(classifier, _images(), prefer="onnxruntime", onnx_bytes=wrong_model_bytes)


def test_a_model_onnxruntime_cannot_load_leaves_torch(lenet):
    classifier, _ = lenet
    runner, choice = choose_backend(classifier, _images(4), onnx_bytes=b"garbage")
    assert isinstance(runner, TorchRunner)
    assert choice.reason.startswith("onnxruntime unusable: cannot load the ONNX model (7 bytes)")
    with pytest.raises(ArtifactError, match="cannot load the ONNX model"):
        choose_backend(classifier, _images(4), prefer="onnxruntime", onnx_bytes=b"garbage")


def test_without_onnxruntime_the_device_runs_torch(lenet, monkeypatch):
    classifier, _ = lenet
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # makes `import onnxruntime` fail
    runner, choice = choose_backend(classifier, _images(4))
    assert isinstance(runner, TorchRunner)
    assert choice.reason.startswith("onnxruntime unavailable (") and choice.parity is None
    with pytest.raises(ConfigError, match="the onnxruntime backend needs"):
        choose_backend(classifier, _images(4), prefer="onnxruntime")


def test_bad_arguments_are_named(lenet):
    classifier, _ = lenet
    with pytest.raises(ConfigError, match="unknown backend 'tflite'; expected one of: auto, torch, onnxruntime"):
        choose_backend(classifier, _images(4), prefer="tflite")
    with pytest.raises(TensorError, match=r"got shape \(4, 1, 8\)"):
        choose_backend(classifier, _images(4)[..., 0])
    with pytest.raises(ConfigError, match="at least one validation image"):
        choose_backend(classifier, _images(0))
