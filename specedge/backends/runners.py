"""Model runners: uint8 images in, float32 logits out, on torch eager or ONNX Runtime.

A runner is what the device executes. :class:`TorchRunner` is the reference (the module the
master, the distillation and the SIEVE formats are defined on); :class:`OnnxRunner` runs an
exported graph (``specedge.backends.export``) or an int8 model (``specedge.compression.int8``),
usually several times faster at batch 1 (anchors.md section 8). Both check their input at the
edge and split large inputs into batches of ``batch_size``. Threads default to one: a device
answers one frame at a time (thesis 4.4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import torch

from specedge.errors import ArtifactError, ConfigError, TensorError
from specedge.models.classifier import ImageClassifier

__all__ = ["ModelRunner", "OnnxRunner", "TorchRunner", "check_images"]

DEFAULT_BATCH_SIZE = 256


class ModelRunner(Protocol):
    """Anything that turns uint8 ``(N, C, H, W)`` images into float32 ``(N, K)`` logits."""

    @property
    def backend(self) -> str:
        """``"torch"`` or ``"onnxruntime"`` (read-only, so a class attribute or a property satisfies it)."""
        ...

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Logits of ``images`` (any ``N``), computed in batches."""
        ...


class TorchRunner:
    """Torch eager inference of an :class:`ImageClassifier`: the reference backend.

    The classifier is put in eval mode. ``threads`` applies during :meth:`logits` only and the
    previous setting comes back after, as the demo does around its edge runs; the process's
    torch setting is otherwise left alone.
    """

    backend = "torch"

    def __init__(self, classifier: ImageClassifier, *, threads: int = 1, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        _check_settings(threads, batch_size)
        self.classifier = classifier.eval()
        self.threads = threads
        self.batch_size = batch_size
        self.image_shape = classifier.spec.image_shape
        self.num_classes = classifier.spec.num_classes

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Float32 logits ``(N, K)`` for uint8 images ``(N, C, H, W)``."""
        check_images(images, self.image_shape)
        with _torch_threads(self.threads), torch.inference_mode():
            return _batched(self._run, images, self.batch_size, self.num_classes)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        writable = batch if batch.flags.writeable else batch.copy()  # torch warns on read-only memory
        logits: np.ndarray = self.classifier(torch.from_numpy(np.ascontiguousarray(writable))).float().numpy()
        return logits


class OnnxRunner:
    """An ONNX Runtime CPU session over a serialized model (fp32 export or int8 QDQ)."""

    backend = "onnxruntime"

    def __init__(self, model_bytes: bytes, *, threads: int = 1, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        _check_settings(threads, batch_size)
        self.model_bytes = model_bytes
        self.threads = threads
        self.batch_size = batch_size
        self._session = _session(model_bytes, threads)
        self.input_name, self.image_shape = _image_input(self._session)
        self.num_classes = _num_classes(self._session)

    def logits(self, images: np.ndarray) -> np.ndarray:
        """Float32 logits ``(N, K)`` for uint8 images ``(N, C, H, W)``."""
        check_images(images, self.image_shape)
        return _batched(self._run, images, self.batch_size, self.num_classes)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        outputs = self._session.run(None, {self.input_name: np.ascontiguousarray(batch)})
        return np.asarray(outputs[0], dtype=np.float32)


def _check_settings(threads: int, batch_size: int) -> None:
    if threads < 1 or batch_size < 1:
        raise ConfigError(f"need threads >= 1 and batch_size >= 1; got threads {threads}, batch_size {batch_size}")


def check_images(images: object, image_shape: tuple[int, int, int]) -> None:
    """Raise :class:`TensorError` unless ``images`` is a uint8 numpy array ``(N, *image_shape)``."""
    expected = f"a numpy uint8 array of shape (N, {', '.join(map(str, image_shape))})"
    if not isinstance(images, np.ndarray):
        raise TensorError(f"images must be {expected}; got {type(images).__name__}")
    if images.dtype != np.uint8:
        raise TensorError(f"images must be {expected}; got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != image_shape:
        raise TensorError(f"images must be {expected}; got shape {images.shape}")


def _batched(
    run: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch_size: int, num_classes: int
) -> np.ndarray:
    """``run`` over consecutive slices of at most ``batch_size`` images, concatenated."""
    if 0 < len(images) <= batch_size:  # a device's usual single frame: no copy, no concatenation
        return run(images)
    parts = [run(images[start : start + batch_size]) for start in range(0, len(images), batch_size)]
    return np.concatenate(parts) if parts else np.empty((0, num_classes), dtype=np.float32)


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    """Run torch on ``threads`` threads, then restore the process's setting."""
    previous = torch.get_num_threads()
    if previous != threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if previous != threads:
            torch.set_num_threads(previous)


def _session(model_bytes: bytes, threads: int) -> Any:
    """A CPU inference session with all graph optimisations and ``threads`` threads."""
    import onnxruntime as ort  # noqa: PLC0415  (imported on use: without it the device falls back to torch)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: ORT's optimiser notes are not the user's concern
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own pybind exception types (InvalidProtobuf, Fail, ...)
        raise ArtifactError(f"cannot load the ONNX model ({len(model_bytes)} bytes): {exc}") from exc


def _image_input(session: Any) -> tuple[str, tuple[int, int, int]]:
    """Name and ``(C, H, W)`` of the session's single uint8 ``(N, C, H, W)`` input."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ArtifactError(f"the ONNX model must take one image input; it takes {[i.name for i in inputs]}")
    (image,) = inputs
    shape = image.shape
    if image.type != "tensor(uint8)" or len(shape) != 4 or not all(isinstance(d, int) for d in shape[1:]):
        raise ArtifactError(
            f"the ONNX model's input {image.name!r} must be uint8 (N, C, H, W) with fixed C, H, W; "
            f"it is {image.type} {shape}"
        )
    return image.name, (shape[1], shape[2], shape[3])


def _num_classes(session: Any) -> int:
    (logits, *_) = session.get_outputs()
    classes = logits.shape[-1]
    if len(logits.shape) != 2 or not isinstance(classes, int):
        raise ArtifactError(f"the ONNX model's output {logits.name!r} must be (N, K) logits; it is {logits.shape}")
    return classes
