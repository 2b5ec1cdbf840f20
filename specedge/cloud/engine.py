"""The cloud's inference engine: the master CNN behind a lock, with queue and compute time.

The gRPC servicer (:mod:`specedge.cloud.servicer`) converts protocol messages to numpy arrays
and delegates here; nothing in this module knows about gRPC. One engine serves one model
version. Requests run one at a time under a lock, so the time a request waits for the lock is
its *queue time* and the forward pass its *compute time*; both are reported separately, in
integer microseconds, as KServe users expect (a slow answer is then attributable to load or to
the model).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

from specedge.errors import ConfigError, SpecEdgeError, TensorError
from specedge.models.classifier import ImageClassifier

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "InferenceEngine",
    "InferenceResult",
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
    queue_time_us: int  # waiting for the engine lock
    compute_time_us: int  # forward pass, including the copy out of torch


class InferenceEngine:
    """Run a classifier on raw uint8 image batches, one request at a time.

    Args:
        classifier: the master model; put in eval mode here.
        model_name: the name clients address the model by.
        model_version: the single version this engine serves.
        max_batch: largest batch one request may carry.
    """

    def __init__(
        self,
        classifier: ImageClassifier,
        *,
        model_name: str,
        model_version: str = "1",
        max_batch: int = 256,
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
        self.ready = True
        self._lock = threading.Lock()

    def metadata(self) -> ModelMetadata:
        """Name, versions, platform and tensor signatures."""
        return ModelMetadata(
            name=self.model_name,
            versions=(self.model_version,),
            platform=PLATFORM,
            inputs=(TensorSignature(INPUT_NAME, "UINT8", (-1, *self.image_shape)),),
            outputs=(TensorSignature(OUTPUT_NAME, "FP32", (-1, self.num_classes)),),
        )

    def infer(self, images: np.ndarray) -> InferenceResult:
        """Logits for uint8 ``images`` of shape ``(N, C, H, W)``, ``1 <= N <= max_batch``."""
        if not self.ready:
            raise ModelNotReadyError(f"model {self.model_name!r} is not ready")
        self._check_images(images)
        if not images.flags.writeable or not images.flags.c_contiguous:
            images = np.array(images, order="C")  # torch wants memory it may write to
        batch = torch.from_numpy(images)
        queued_ns = time.perf_counter_ns()
        with self._lock:
            started_ns = time.perf_counter_ns()
            with torch.inference_mode():
                logits = self.classifier(batch)
            out = logits.to(torch.float32).numpy()  # (N, K)
            finished_ns = time.perf_counter_ns()
        return InferenceResult(
            logits=out,
            queue_time_us=(started_ns - queued_ns) // 1000,
            compute_time_us=(finished_ns - started_ns) // 1000,
        )

    def _check_images(self, images: np.ndarray) -> None:
        expected = f"uint8 (N, {', '.join(map(str, self.image_shape))}) with 1 <= N <= {self.max_batch}"
        if not isinstance(images, np.ndarray) or images.dtype != np.uint8:
            got = images.dtype if isinstance(images, np.ndarray) else type(images).__name__
            raise TensorError(f"input {INPUT_NAME!r} must be {expected}; got dtype {got}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.image_shape:
            raise TensorError(f"input {INPUT_NAME!r} must be {expected}; got shape {list(images.shape)}")
        if not 1 <= images.shape[0] <= self.max_batch:
            raise TensorError(f"input {INPUT_NAME!r} must be {expected}; got batch size {images.shape[0]}")
