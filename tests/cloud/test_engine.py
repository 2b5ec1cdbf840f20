"""InferenceEngine: logits equal the classifier's own, validation, metadata, config, batching, statistics, times."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

from specedge.cloud.batcher import DeadlineExpiredError, QueueFullError
from specedge.cloud.engine import (
    InferenceEngine,
    InferenceResult,
    ModelConfigInfo,
    ModelNotReadyError,
    TensorSignature,
)
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


def _hold_forward(classifier: torch.nn.Module) -> tuple[threading.Event, threading.Event, Any]:
    """A forward pre-hook that blocks each forward pass until ``gate`` is set; ``entered`` marks one started."""
    gate, entered = threading.Event(), threading.Event()

    def hook(module: torch.nn.Module, args: Any) -> None:
        entered.set()
        assert gate.wait(timeout=30)

    return gate, entered, classifier.register_forward_pre_hook(hook)


def _small_classifier() -> Any:
    torch.manual_seed(0)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)


def test_queue_time_counts_the_wait_behind_a_running_batch(rng: np.random.Generator) -> None:
    engine = InferenceEngine(_small_classifier(), model_name="m", max_batch=1)
    gate, entered, handle = _hold_forward(engine.classifier)
    images = rng.integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    results: list[InferenceResult] = []
    try:
        first = threading.Thread(target=lambda: results.append(engine.infer(images)))
        first.start()
        assert entered.wait(10)  # the first request is computing
        arrival_ns = time.perf_counter_ns()
        second = threading.Thread(target=lambda: results.append(engine.infer(images, arrival_ns=arrival_ns)))
        second.start()
        time.sleep(0.1)
        gate.set()
        first.join(timeout=10)
        second.join(timeout=10)
    finally:
        gate.set()
        handle.remove()
        engine.close()
    waited = max(results, key=lambda r: r.queue_time_us)
    assert waited.queue_time_us >= 100_000
    assert waited.compute_time_us < waited.queue_time_us


def test_concurrent_requests_are_batched_and_answered_exactly(rng: np.random.Generator) -> None:
    engine = InferenceEngine(_small_classifier(), model_name="m", max_batch=64, max_queue_delay_us=2000)
    batches = [rng.integers(0, 256, size=(int(n), 1, 8, 8), dtype=np.uint8) for n in rng.integers(1, 4, size=60)]
    try:
        with ThreadPoolExecutor(max_workers=30) as pool:
            results = list(pool.map(engine.infer, batches))
    finally:
        engine.close()
    for images, result in zip(batches, results, strict=True):
        with torch.inference_mode():
            expected = engine.classifier(torch.from_numpy(images)).numpy()
        np.testing.assert_allclose(result.logits, expected, rtol=1e-5, atol=1e-5)  # batch-size-dependent kernels
    stats = engine.statistics()
    assert stats.name == "m" and stats.version == "1"
    assert stats.success.count == len(batches)
    assert stats.inference_count == sum(len(b) for b in batches)
    assert stats.execution_count < len(batches)  # requests shared forward passes
    assert stats.execution_count == sum(b.count for b in stats.batch_stats.values())
    assert stats.queue.count == stats.compute_infer.count == len(batches)


def test_full_queue_and_expired_deadline_are_refused(rng: np.random.Generator) -> None:
    engine = InferenceEngine(_small_classifier(), model_name="m", max_batch=1, max_queue_size=1)
    gate, entered, handle = _hold_forward(engine.classifier)
    images = rng.integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    errors: list[Exception] = []

    def call(**kwargs: Any) -> None:
        try:
            engine.infer(images, **kwargs)
        except Exception as exc:
            errors.append(exc)

    try:
        running = threading.Thread(target=call)
        running.start()
        assert entered.wait(10)
        queued = threading.Thread(target=call, kwargs={"deadline_ns": time.perf_counter_ns() + 10_000_000})
        queued.start()
        while engine._batcher.queue_depth() < 1:
            time.sleep(0.001)
        with pytest.raises(QueueFullError, match=r"queue is full \(1 requests waiting\)"):
            engine.infer(images)
        time.sleep(0.05)  # the queued request's 10 ms deadline passes
        gate.set()
        running.join(timeout=10)
        queued.join(timeout=10)
    finally:
        gate.set()
        handle.remove()
        engine.close()
    assert len(errors) == 1 and isinstance(errors[0], DeadlineExpiredError)
    stats = engine.statistics()
    assert stats.success.count == 1 and stats.fail.count == 2
    assert stats.execution_count == 1  # the expired request was never computed


def test_config_reports_the_batching_settings() -> None:
    engine = InferenceEngine(
        _small_classifier(), model_name="m", max_batch=32, max_queue_delay_us=250, max_queue_size=7, instances=2
    )
    try:
        config = engine.config()
    finally:
        engine.close()
    assert config == ModelConfigInfo(
        name="m",
        platform="pytorch",
        max_batch_size=32,
        max_queue_delay_us=250,
        max_queue_size=7,
        preferred_batch_sizes=(),
        instance_count=2,
    )


def test_defaults_keep_a_lone_request_fast() -> None:
    engine = InferenceEngine(_small_classifier(), model_name="m")
    try:
        config = engine.config()
    finally:
        engine.close()
    assert config.max_queue_delay_us == 0  # no waiting for company that may never come
    assert config.max_batch_size == 256 and config.max_queue_size == 256 and config.instance_count == 1


def test_close_drains_then_the_engine_is_not_ready(rng: np.random.Generator) -> None:
    engine = InferenceEngine(_small_classifier(), model_name="m", max_batch=1)
    gate, entered, handle = _hold_forward(engine.classifier)
    images = rng.integers(0, 256, size=(1, 1, 8, 8), dtype=np.uint8)
    results: list[InferenceResult] = []
    try:
        threads = [threading.Thread(target=lambda: results.append(engine.infer(images))) for _ in range(3)]
        for thread in threads:
            thread.start()
        assert entered.wait(10)
        while engine._batcher.queue_depth() < 2:
            time.sleep(0.001)
        closer = threading.Thread(target=engine.close)
        closer.start()
        time.sleep(0.02)
        assert not engine.ready
        gate.set()
        closer.join(timeout=10)
        for thread in threads:
            thread.join(timeout=10)
    finally:
        gate.set()
        handle.remove()
    assert len(results) == 3  # queued work finished
    with pytest.raises(ModelNotReadyError, match="'m' is not ready"):
        engine.infer(images)


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
