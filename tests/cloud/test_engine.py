"""InferenceEngine: logits equal the classifier's own, validation, metadata, queue vs compute time."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from specedge.cloud.engine import InferenceEngine, ModelNotReadyError, TensorSignature
from specedge.errors import ConfigError, TensorError
from specedge.models import build_classifier


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    return InferenceEngine(classifier, model_name="master", max_batch=8)


def test_logits_equal_the_classifier_output(engine: InferenceEngine, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(5, 1, 8, 8), dtype=np.uint8)
    result = engine.infer(images)
    with torch.inference_mode():
        expected = engine.classifier(torch.from_numpy(images)).numpy()
    assert result.logits.dtype == np.float32
    assert result.logits.shape == (5, 10)
    np.testing.assert_array_equal(result.logits, expected)
    assert isinstance(result.queue_time_us, int) and result.queue_time_us >= 0
    assert isinstance(result.compute_time_us, int) and result.compute_time_us > 0


def test_read_only_input_is_accepted(engine: InferenceEngine, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(2, 1, 8, 8), dtype=np.uint8)
    frozen = np.frombuffer(images.tobytes(), dtype=np.uint8).reshape(images.shape)  # as decoded from gRPC
    assert not frozen.flags.writeable
    np.testing.assert_array_equal(engine.infer(frozen).logits, engine.infer(images).logits)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((1, 1, 8, 8), dtype=np.float32), "got dtype float32"),
        (np.zeros((1, 8, 8), dtype=np.uint8), r"got shape \[1, 8, 8\]"),
        (np.zeros((1, 3, 8, 8), dtype=np.uint8), r"got shape \[1, 3, 8, 8\]"),
        (np.zeros((0, 1, 8, 8), dtype=np.uint8), "got batch size 0"),
        (np.zeros((9, 1, 8, 8), dtype=np.uint8), "got batch size 9"),
    ],
)
def test_bad_images_are_refused(engine: InferenceEngine, images: np.ndarray, message: str) -> None:
    with pytest.raises(TensorError, match=r"must be uint8 \(N, 1, 8, 8\) with 1 <= N <= 8; " + message):
        engine.infer(images)


def test_metadata(engine: InferenceEngine) -> None:
    meta = engine.metadata()
    assert meta.name == "master"
    assert meta.versions == ("1",)
    assert meta.platform == "pytorch"
    assert meta.inputs == (TensorSignature("images", "UINT8", (-1, 1, 8, 8)),)
    assert meta.outputs == (TensorSignature("logits", "FP32", (-1, 10)),)


def test_not_ready_engine_refuses(rng: np.random.Generator) -> None:
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    engine = InferenceEngine(classifier, model_name="m")
    engine.ready = False
    with pytest.raises(ModelNotReadyError, match="'m' is not ready"):
        engine.infer(rng.integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8))


def test_queue_time_is_the_wait_for_the_engine(engine: InferenceEngine, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    results = []
    with engine._lock:  # another request is computing
        worker = threading.Thread(target=lambda: results.append(engine.infer(images)))
        worker.start()
        time.sleep(0.1)
    worker.join(timeout=10)
    (result,) = results
    assert result.queue_time_us >= 90_000
    assert result.compute_time_us < result.queue_time_us


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_name": ""}, "model_name must be a non-empty"),
        ({"model_name": "m", "model_version": ""}, "model_version must be a non-empty"),
        ({"model_name": "m", "max_batch": 0}, "max_batch must be >= 1; got 0"),
    ],
)
def test_constructor_validates(kwargs: dict, message: str) -> None:
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    with pytest.raises(ConfigError, match=message):
        InferenceEngine(classifier, **kwargs)
