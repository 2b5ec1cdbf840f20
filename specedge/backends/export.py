"""Export a classifier to ONNX, so the device can run it on ONNX Runtime.

At the batch-1 sizes of a device, torch eager time is mostly per-operator overhead; ONNX Runtime
runs the same graph 2-10x faster on one thread (anchors.md section 8). The export uses the
``torch.export`` (dynamo) path: it traces exactly what torch runs, forward pre-hooks included, so
a SIEVE activation format applied by a hook (thesis 4.4) is part of the exported graph. The batch
dimension stays dynamic; preprocessing (uint8 pixels to normalised floats) is inside the graph.
"""

from __future__ import annotations

import io
import logging
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout

import numpy as np
import torch
from torch import nn

from specedge.errors import ConfigError, TensorError
from specedge.models.classifier import ImageClassifier

__all__ = ["ONNX_OPSET", "export_onnx"]

# The dynamo exporter's native opset in torch 2.13 (no version-conversion pass); ONNX Runtime >= 1.17 runs it.
ONNX_OPSET = 20
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


def export_onnx(classifier: nn.Module, example_images: np.ndarray | torch.Tensor) -> bytes:
    """Serialized ONNX model of ``classifier`` (eval mode) with a dynamic batch dimension.

    ``example_images`` (uint8 ``(N, C, H, W)``) fixes the image shape and dtype; only their
    shape matters. The exporter's progress lines, warnings and log messages are kept from the
    user; a failure becomes one :class:`ConfigError` line naming the model.
    """
    example = _example_batch(example_images)
    was_training = classifier.training
    classifier.eval()
    try:
        with _quiet_export():
            program = torch.onnx.export(
                classifier,
                (example,),
                dynamo=True,
                dynamic_shapes=({0: torch.export.Dim("batch")},),
                opset_version=ONNX_OPSET,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types (torch.export, onnxscript, ONNX checker)
        raise ConfigError(
            f"cannot export {_model_name(classifier)} to ONNX ({_root_cause(exc)}); run it with the torch backend"
        ) from exc
    finally:
        classifier.train(was_training)
    if program is None:  # only the legacy (dynamo=False) path writes to a file and returns None
        raise ConfigError(f"cannot export {_model_name(classifier)} to ONNX: the exporter returned no model")
    model_bytes: bytes = program.model_proto.SerializeToString()
    return model_bytes


def _example_batch(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Two example images: with one, torch.export would specialise the batch dimension to 1."""
    example = torch.as_tensor(np.array(images[:2])) if isinstance(images, np.ndarray) else images[:2].detach()
    if example.ndim != 4 or len(example) == 0:
        raise TensorError(f"example images must be a non-empty (N, C, H, W) batch; got shape {tuple(images.shape)}")
    return example.repeat(2, 1, 1, 1) if len(example) == 1 else example


@contextmanager
def _quiet_export() -> Iterator[None]:
    """Keep the exporter's output from the user, for this call only.

    torch logs e.g. "torchvision is not installed. Skipping torchvision::nms" on every export,
    its internals warn "isinstance(treespec, LeafSpec) is deprecated", and a failing export
    prints graph dumps; the error raised afterwards says what matters.
    """
    logger = logging.getLogger("torch")  # torch's loggers do not propagate to the root logger
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _root_cause(exc: BaseException) -> str:
    """First line of the innermost cause, without terminal colour codes."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    lines = _ANSI_ESCAPE.sub("", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _model_name(model: nn.Module) -> str:
    return model.spec.label if isinstance(model, ImageClassifier) else type(model).__name__
