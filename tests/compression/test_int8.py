"""Int8 static quantisation through ONNX Runtime: quiet, deterministic, smaller, close to fp32."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from specedge.backends import OnnxRunner, TorchRunner, export_onnx
from specedge.compression.int8 import describe_int8, quantize_int8
from specedge.errors import ConfigError, TensorError
from specedge.models.classifier import ImageClassifier, build_classifier


def _images(n: int, shape: tuple[int, int, int] = (1, 8, 8)) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, *shape), dtype=np.uint8)


@pytest.fixture(scope="module")
def lenet() -> ImageClassifier:
    torch.manual_seed(0)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8))


def test_int8_model_is_small_quiet_and_deterministic(lenet, capfd):
    images = _images(100)
    root_handlers = list(logging.getLogger().handlers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model_bytes = quantize_int8(lenet, images)
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr() == ("", "")
    assert logging.getLogger().handlers == root_handlers  # ORT's logging.warning did not configure logging
    assert quantize_int8(lenet, images) == model_bytes
    assert len(model_bytes) < 0.4 * len(export_onnx(lenet, images))


def test_describe_int8_lists_weights_and_activation_quantizers(lenet):
    description = describe_int8(quantize_int8(lenet, _images(16), max_calibration=8))
    weights = {w["name"]: w for w in description["weights"]}
    # LeNet-5: conv 20x1x5x5, conv 50x20x5x5, fc 500x800, fc 10x500, each with an int32 bias
    int8 = sorted(w["elements"] for w in weights.values() if w["dtype"] == "int8")
    assert int8 == [500, 5000, 25_000, 400_000]
    assert all(w["bits"] == 8 for w in weights.values() if w["dtype"] == "int8")
    assert sorted(w["elements"] for w in weights.values() if w["dtype"] == "int32") == [10, 20, 50, 500]
    assert description["activation_quantizers"] >= 4


@pytest.mark.parametrize("method", ["percentile", "entropy"])
def test_histogram_methods_are_quiet_too(lenet, method, capfd):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model_bytes = quantize_int8(lenet, _images(70), method=method, per_channel=False)  # 70: not a multiple of 64
    assert caught == [] and capfd.readouterr() == ("", "")
    assert OnnxRunner(model_bytes).logits(_images(2)).shape == (2, 10)


def test_int8_keeps_a_trained_models_predictions(digits_models):
    splits, master, _ = digits_models
    model_bytes = quantize_int8(master, splits.val.images)
    fp32 = TorchRunner(master).logits(splits.test.images)
    int8 = OnnxRunner(model_bytes).logits(splits.test.images)
    agreement = np.mean(fp32.argmax(1) == int8.argmax(1))
    accuracy = {name: np.mean(x.argmax(1) == splits.test.labels) for name, x in (("fp32", fp32), ("int8", int8))}
    assert agreement >= 0.97
    assert accuracy["int8"] >= accuracy["fp32"] - 0.02
    assert np.abs(int8 - fp32).max() < 0.1 * np.abs(fp32).max()


def test_bad_arguments_are_named(lenet):
    with pytest.raises(ConfigError, match="unknown calibration method 'kl'; expected one of: minmax, percentile"):
        quantize_int8(lenet, _images(4), method="kl")
    with pytest.raises(ConfigError, match="max_calibration must be >= 1"):
        quantize_int8(lenet, _images(4), max_calibration=0)
    with pytest.raises(TensorError, match="got dtype float32"):
        quantize_int8(lenet, _images(4).astype(np.float32))
    with pytest.raises(ConfigError, match="at least one image"):
        quantize_int8(lenet, _images(0))


@pytest.mark.parametrize("count", [64 * 8, 64 * 8 * 7 + 1, 1])
def test_calibration_counts_that_once_left_nothing_to_fold(lenet, count):
    # onnxruntime raised "No data is collected" whenever the batches held divided the batch count
    assert quantize_int8(lenet, _images(count))
