"""Int8 post-training static quantisation through ONNX Runtime (thesis 4.4; anchors.md section 7).

Why ONNX Runtime: in torch 2.13 eager ``torch.ao.quantization`` is deprecated and warns that it
will be removed, and the PT2E flow (``quantize_pt2e``) is gone from torch itself; the maintained
alternatives are torchao (which needs torch.compile) or ``onnxruntime.quantization``. The device
already runs ONNX Runtime (``specedge.backends``), so the quantised model is a QDQ ONNX graph:
int8 weights (per output channel by default), uint8 activations whose ranges are calibrated on
the given validation images, int32 biases. On this host ResNet-20 runs about 2x faster than
its fp32 ONNX graph at batch 1 and 64, and the zoo's files shrink 3-4x.

An int8 model runs only on ONNX Runtime (``specedge.backends.OnnxRunner``); there is no torch
module behind it. The misspeculation detector must therefore be calibrated on the logits of
that ORT session itself, not on the fp32 classifier it came from.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process

from specedge.backends.export import export_onnx
from specedge.backends.runners import check_images
from specedge.errors import ConfigError
from specedge.models.classifier import ImageClassifier

__all__ = ["CALIBRATION_METHODS", "describe_int8", "quantize_int8"]

# MinMax (the default) is exact about the observed range and fast; Percentile and Entropy clip
# outliers using histograms, which helps when a few activations are extreme.
CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "percentile": CalibrationMethod.Percentile,
    "entropy": CalibrationMethod.Entropy,
}
_MINMAX_BATCH = 64
_MAX_HELD_BATCHES = 8  # MinMax merges its ranges every 8 batches instead of holding every activation


def quantize_int8(
    classifier: ImageClassifier,
    calibration_images: np.ndarray,
    *,
    per_channel: bool = True,
    method: str = "minmax",
    max_calibration: int | None = None,
) -> bytes:
    """The QDQ int8 ONNX model of ``classifier``, calibrated on (the first ``max_calibration``) images.

    Deterministic: the same classifier and images give the same bytes. ONNX Runtime's messages
    (prints, log records, warnings) are kept from the user during the call.
    """
    if method not in CALIBRATION_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; expected one of: {', '.join(CALIBRATION_METHODS)}")
    if max_calibration is not None and max_calibration < 1:
        raise ConfigError(f"max_calibration must be >= 1 image; got {max_calibration}")
    check_images(calibration_images, classifier.spec.image_shape)
    images = calibration_images[:max_calibration]
    if len(images) == 0:
        raise ConfigError("int8 calibration needs at least one image")
    fp32_bytes = export_onnx(classifier, images)
    with tempfile.TemporaryDirectory(prefix="specedge-int8-") as tmp, _quiet_quantization():
        fp32, prepared, quantized = (Path(tmp) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        fp32.write_bytes(fp32_bytes)
        # Shape inference and graph clean-up first, as ORT recommends; symbolic shapes are not needed here.
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(quantized),
            _ImageReader(_input_name(fp32_bytes), images, _MINMAX_BATCH if method == "minmax" else 1),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[method],
            extra_options={"CalibMaxIntermediateOutputs": _held_batches(len(images), method)},
        )
        return quantized.read_bytes()


def _held_batches(count: int, method: str) -> int:
    """Batches ORT may hold before folding ranges: at most :data:`_MAX_HELD_BATCHES`, never a divisor of their count.

    onnxruntime 1.31's minmax calibrator folds and clears every ``held`` batches and then raises
    "No data is collected" when the last fold left nothing, i.e. when ``held`` divides the count.
    """
    batches = -(-count // (_MINMAX_BATCH if method == "minmax" else 1))
    return next((held for held in range(_MAX_HELD_BATCHES, 1, -1) if batches % held), batches + 1)


def describe_int8(model_bytes: bytes) -> dict[str, Any]:
    """Per quantised initializer its name, element count, dtype and bits; and the activation quantisers.

    A quantised initializer is one a ``DequantizeLinear`` reads directly (weights int8, biases
    int32); each ``QuantizeLinear`` on a computed tensor quantises one activation to 8 bits.
    """
    graph = onnx.load_from_string(model_bytes).graph
    initializers = {init.name: init for init in graph.initializer}
    dequantized = [n.input[0] for n in graph.node if n.op_type == "DequantizeLinear" and n.input[0] in initializers]
    weights = [_initializer_entry(initializers[name]) for name in dict.fromkeys(dequantized)]
    activations = sum(1 for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in initializers)
    return {"weights": weights, "activation_quantizers": activations}


def _input_name(model_bytes: bytes) -> str:
    name: str = onnx.load_from_string(model_bytes).graph.input[0].name
    return name


def _initializer_entry(tensor: onnx.TensorProto) -> dict[str, Any]:
    dtype = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type))
    return {"name": tensor.name, "elements": int(np.prod(tensor.dims)), "dtype": dtype.name, "bits": dtype.itemsize * 8}


class _ImageReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over uint8 images, in batches of ``batch_size``.

    The histogram methods stack every batch's activations into one array, so they need batches
    of equal size; one image per batch always is.
    """

    def __init__(self, input_name: str, images: np.ndarray, batch_size: int) -> None:
        starts = range(0, len(images), batch_size)
        self._batches = iter([{input_name: images[start : start + batch_size]} for start in starts])

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch, or None when calibration has seen every image."""
        return next(self._batches, None)


@contextmanager
def _quiet_quantization() -> Iterator[None]:
    """Swallow ORT quantisation's prints, warnings and log records for the duration of the call.

    ORT logs with ``logging.warning`` on the root logger, which would also install a handler on
    an unconfigured root (``logging.basicConfig``); a temporary NullHandler and a filter on the
    records ORT emits prevent both.
    """
    root, ort_logger = logging.getLogger(), logging.getLogger("onnxruntime")
    guard, level = logging.NullHandler(), ort_logger.level
    root.addHandler(guard)
    root.addFilter(_not_from_onnxruntime)
    ort_logger.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ort_logger.setLevel(level)
        root.removeFilter(_not_from_onnxruntime)
        root.removeHandler(guard)


def _not_from_onnxruntime(record: logging.LogRecord) -> bool:
    return "onnxruntime" not in Path(record.pathname).parts
