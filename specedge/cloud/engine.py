"""The cloud's inference engine: the master CNN behind a dynamic batcher, with queue and compute time.

The gRPC servicer (:mod:`specedge.cloud.servicer`) converts protocol messages to numpy arrays
and delegates here; nothing in this module knows about gRPC. One engine serves one model
version. Concurrent requests are batched by a :class:`~specedge.cloud.batcher.DynamicBatcher`
(bounded queue, max batch, max queue delay, deadlines); a request's *queue time* runs from its
arrival at the server to the start of its batch and its *compute time* is the batch's forward
pass. Both are reported separately, in integer microseconds, as KServe users expect (a slow
answer is then attributable to load or to the model). :meth:`InferenceEngine.statistics` gives
Triton's ModelStatistics counters, :meth:`InferenceEngine.config` the scheduling settings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch

from specedge.cloud.batcher import BatcherClosedError, DynamicBatcher
from specedge.cloud.statistics import ModelStats, StatsRecorder
from specedge.errors import ConfigError, SpecEdgeError, TensorError
from specedge.models.classifier import ImageClassifier

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "InferenceEngine",
    "InferenceResult",
    "ModelConfigInfo",
    "ModelMetadata",
    "ModelNotFoundError",
    "ModelNotReadyError",
    "TensorSignature",
]

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
PLATFORM = "pytorch"


class ModelNotFoundError(SpecEdgeError, LookupError):
    """A request named a model or model version the server does not serve."""


class ModelNotReadyError(SpecEdgeError):
    """The model exists but cannot run inference now (loading or shutting down)."""


@dataclass(frozen=True)
class TensorSignature:
    """Name, KServe datatype and shape of a model input or output; -1 marks a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """What ModelMetadata answers for one model."""

    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSignature, ...]
    outputs: tuple[TensorSignature, ...]


@dataclass(frozen=True)
class InferenceResult:
    """Logits of one request and where its time went."""

    logits: np.ndarray  # float32 (N, K)
    queue_time_us: int  # arrival at the server -> start of the batch it ran in
    compute_time_us: int  # that batch's forward pass, including the copy out of torch
    answered_by: str = ""  # which model answered, where a server holds several (duo: "little" | "big")


@dataclass(frozen=True)
class ModelConfigInfo:
    """What ModelConfig answers about scheduling (Triton's ``dynamic_batching`` and ``instance_group``)."""

    name: str
    platform: str
    max_batch_size: int  # most images in one forward pass, and in one request
    max_queue_delay_us: int  # how long the oldest request waits for others to join its batch
    max_queue_size: int  # requests waiting beyond this are refused (RESOURCE_EXHAUSTED)
    preferred_batch_sizes: tuple[int, ...] = ()  # none: batches as large as the queue allows
    instance_count: int = 1  # inference worker threads


class InferenceEngine:
    """Run a classifier on raw uint8 image batches, batching concurrent requests.

    Args:
        classifier: the master model; put in eval mode here.
        model_name: the name clients address the model by.
        model_version: the single version this engine serves.
        max_batch: most images in one forward pass; also the largest batch one request may carry.
        max_queue_delay_us: how long the oldest queued request waits for others to join its
            batch. 0 (default) batches only what queued up while the previous batch ran: under
            load batches form by themselves, and a lone request pays no delay.
        max_queue_size: most requests waiting; more are refused with
            :class:`~specedge.cloud.batcher.QueueFullError` (RESOURCE_EXHAUSTED).
        instances: inference worker threads. One is fastest on a 2-core host; torch's intra-op
            threads (``torch.set_num_threads``, the server's ``--threads``) parallelise each batch.
    """

    def __init__(
        self,
        classifier: ImageClassifier,
        *,
        model_name: str,
        model_version: str = "1",
        max_batch: int = 256,
        max_queue_delay_us: int = 0,
        max_queue_size: int = 256,
        instances: int = 1,
    ) -> None:
        if not model_name:
            raise ConfigError("model_name must be a non-empty string")
        if not model_version:
            raise ConfigError("model_version must be a non-empty string")
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1; got {max_batch}")
        self.classifier = classifier.eval()
        self.model_name = model_name
        self.model_version = model_version
        self.max_batch = max_batch
        channels, height, width = classifier.spec.image_shape
        self.image_shape = (int(channels), int(height), int(width))
        self.num_classes = int(classifier.spec.num_classes)
        self._stats = StatsRecorder(model_name, model_version)
        self._batcher = DynamicBatcher(
            self._forward,
            max_batch=max_batch,
            max_delay_us=max_queue_delay_us,
            max_queue=max_queue_size,
            workers=instances,
            stats=self._stats,
            name=model_name,
        )
        self.ready = True

    def metadata(self) -> ModelMetadata:
        """Name, versions, platform and tensor signatures."""
        return ModelMetadata(
            name=self.model_name,
            versions=(self.model_version,),
            platform=PLATFORM,
            inputs=(TensorSignature(INPUT_NAME, "UINT8", (-1, *self.image_shape)),),
            outputs=(TensorSignature(OUTPUT_NAME, "FP32", (-1, self.num_classes)),),
        )

    def config(self) -> ModelConfigInfo:
        """The batching and instance settings, as ModelConfig reports them."""
        return ModelConfigInfo(
            name=self.model_name,
            platform=PLATFORM,
            max_batch_size=self._batcher.max_batch,
            max_queue_delay_us=self._batcher.max_delay_us,
            max_queue_size=self._batcher.max_queue,
            instance_count=self._batcher.workers,
        )

    def statistics(self) -> ModelStats:
        """Counts and cumulative times since the engine started (Triton's ModelStatistics)."""
        return self._stats.snapshot()

    def infer(
        self,
        images: np.ndarray,
        *,
        arrival_ns: int | None = None,
        deadline_ns: int | None = None,
        recovery: bool = False,
    ) -> InferenceResult:
        """Logits for uint8 ``images`` of shape ``(N, C, H, W)``, ``1 <= N <= max_batch``; blocks.

        ``arrival_ns`` is ``time.perf_counter_ns()`` when the request reached the server (now if
        omitted): queue time counts from there. Work still queued at ``deadline_ns`` (same clock)
        is dropped with :class:`~specedge.cloud.batcher.DeadlineExpiredError`. A full queue
        raises :class:`~specedge.cloud.batcher.QueueFullError`. ``recovery`` marks a request the
        edge escalated; a single engine serves it like any other.
        """
        if arrival_ns is None:
            arrival_ns = time.perf_counter_ns()
        if not self.ready:
            raise ModelNotReadyError(f"model {self.model_name!r} is not ready")
        self._check_images(images)
        try:
            done = self._batcher.run(images, arrival_ns=arrival_ns, deadline_ns=deadline_ns)
        except BatcherClosedError as exc:
            raise ModelNotReadyError(f"model {self.model_name!r} is shutting down") from exc
        return InferenceResult(
            logits=done.outputs,
            queue_time_us=done.queue_ns // 1000,
            compute_time_us=done.compute_ns // 1000,
        )

    def close(self) -> None:
        """Stop taking requests (not ready), finish the queued ones, stop the workers."""
        self.ready = False
        self._batcher.close()

    def _forward(self, images: np.ndarray) -> np.ndarray:
        """One batch through the classifier: uint8 (B, C, H, W) -> float32 logits (B, K)."""
        if not images.flags.writeable or not images.flags.c_contiguous:
            images = np.array(images, order="C")  # torch wants memory it may write to
        with torch.inference_mode():
            logits = self.classifier(torch.from_numpy(images))
        out: np.ndarray = logits.to(torch.float32).numpy()  # (B, K)
        return out

    def _check_images(self, images: np.ndarray) -> None:
        expected = f"uint8 (N, {', '.join(map(str, self.image_shape))}) with 1 <= N <= {self.max_batch}"
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            got = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
            raise TensorError(f"input {INPUT_NAME!r} must be {expected}; got dtype {got}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise TensorError(f"input {INPUT_NAME!r} must be {expected}; got shape {list(images.shape)}")
        if not 1 <= images.shape[0] <= self.max_batch:
            raise TensorError(f"input {INPUT_NAME!r} must be {expected}; got batch size {images.shape[0]}")
