"""ONNX export: quiet, dynamic batch, uint8 input, one-line errors."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")
import onnx

from specedge.backends import ONNX_OPSET, export_onnx
from specedge.errors import ConfigError, TensorError
from specedge.models.classifier import build_classifier


def _images(shape: tuple[int, int, int], n: int = 4) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def test_export_prints_logs_and_warns_nothing(capfd):
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8))
    torch_level = logging.getLogger("torch").level
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(classifier, _images((1, 8, 8)))
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    assert [str(w.message) for w in caught] == []
    assert logging.getLogger("torch").level == torch_level


def test_export_is_silent_in_a_fresh_process():
    """torch's log handler keeps the stderr of import time, which pytest's capture hides: check in a child."""
    code = (
        "import numpy as np; from specedge.backends import export_onnx; "
        "from specedge.models.classifier import build_classifier; "
        "export_onnx(build_classifier('lenet5', num_classes=10, image_shape=(1, 8, 8), width=0.25), "
        "np.zeros((2, 1, 8, 8), np.uint8))"
    )
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")


def test_export_has_a_dynamic_batch_of_uint8_images():
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 16, 16), width=0.25).train()
    model = onnx.load_from_string(export_onnx(classifier, torch.zeros((1, 1, 16, 16), dtype=torch.uint8)))
    (image,) = model.graph.input
    dims = image.type.tensor_type.shape.dim
    assert image.name == "images"
    assert image.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [1, 16, 16]
    assert model.opset_import[0].version == ONNX_OPSET
    assert classifier.training  # export works in eval mode and gives the mode back


class _DataDependent(nn.Module):
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        return x if x.sum() > 0 else -x


def test_export_failure_is_one_quiet_line_naming_the_model(capfd):
    with pytest.raises(ConfigError, match=r"cannot export _DataDependent to ONNX \(.*data-dependent") as info:
        export_onnx(_DataDependent(), _images((1, 8, 8)))
    assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
    assert capfd.readouterr() == ("", "")


def test_export_needs_a_batch_of_images():
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 16, 16), width=0.25)
    with pytest.raises(TensorError, match=r"got shape \(1, 16, 16\)"):
        export_onnx(classifier, _images((1, 16, 16))[0])
    with pytest.raises(TensorError, match="non-empty"):
        export_onnx(classifier, _images((1, 16, 16))[:0])
