"""Runners: ONNX Runtime reproduces torch on every zoo model; inputs are checked at the edge."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnxruntime")

from specedge.backends import ModelRunner, OnnxRunner, TorchRunner, export_onnx, parity_check
from specedge.errors import ArtifactError, ConfigError, TensorError
from specedge.models import list_models, model_entry
from specedge.models.classifier import ImageClassifier, build_classifier


def _images(shape: tuple[int, int, int], n: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _smallest(arch: str) -> ImageClassifier:
    """The architecture at its smallest input, with the reference channel count."""
    entry = model_entry(arch)
    torch.manual_seed(0)
    size = entry.min_input_size
    return build_classifier(arch, num_classes=10, image_shape=(entry.reference_input[0], size, size))


CASES = [pytest.param(lambda arch=arch: _smallest(arch), id=arch) for arch in list_models()]
CASES.append(  # 8x8 digits upsampled to 28x28 inside the graph: the Resize must match too
    pytest.param(lambda: build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8)), id="lenet5-resize")
)


@pytest.mark.parametrize("make", CASES)
def test_onnxruntime_matches_torch_on_every_zoo_model(make):
    classifier = make()
    images = _images(classifier.spec.image_shape)
    reference = TorchRunner(classifier)
    candidate = OnnxRunner(export_onnx(classifier, images))
    parity = parity_check(reference, candidate, images)
    assert parity.agreement == 1.0 and parity.count == 32
    assert parity.max_abs_logit_diff < 1e-4
    for runner in (reference, candidate):
        full = runner.logits(images)
        assert full.dtype == np.float32 and full.shape == (32, 10)
        np.testing.assert_allclose(runner.logits(images[:1]), full[:1], atol=1e-5)
        runner.batch_size = 7  # 32 images in batches of 7, the last one of 4
        np.testing.assert_allclose(runner.logits(images), full, atol=1e-5)


def test_forward_pre_hooks_are_exported():
    """SIEVE applies activation formats with pre-hooks; the export must carry them (thesis 4.4)."""
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 16, 16))
    images = _images((1, 16, 16))
    plain = TorchRunner(classifier).logits(images)
    first_conv = next(m for m in classifier.backbone.modules() if isinstance(m, nn.Conv2d))
    first_conv.register_forward_pre_hook(lambda _module, args: (torch.round(args[0] * 2.0) / 2.0,))
    hooked = TorchRunner(classifier)
    onnx_runner = OnnxRunner(export_onnx(classifier, images))
    assert np.abs(onnx_runner.logits(images) - plain).max() > 1e-3
    parity = parity_check(hooked, onnx_runner, images)
    assert parity.passed and parity.max_abs_logit_diff < 1e-4


@pytest.fixture(scope="module")
def runners() -> dict[str, ModelRunner]:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    model_bytes = export_onnx(classifier, _images((1, 8, 8), n=2))
    return {"torch": TorchRunner(classifier), "onnxruntime": OnnxRunner(model_bytes)}


BAD_INPUTS = [
    pytest.param(np.zeros((2, 1, 8, 8), dtype=np.float32), "got dtype float32", id="dtype"),
    pytest.param(np.zeros((2, 3, 8, 8), dtype=np.uint8), r"got shape \(2, 3, 8, 8\)", id="channels"),
    pytest.param(np.zeros((1, 8, 8), dtype=np.uint8), r"got shape \(1, 8, 8\)", id="3-d"),
    pytest.param(torch.zeros((2, 1, 8, 8), dtype=torch.uint8), "got Tensor", id="tensor"),
]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize(("images", "what"), BAD_INPUTS)
def test_runners_reject_bad_input_naming_expected_and_got(runners, backend, images, what):
    with pytest.raises(TensorError, match=rf"numpy uint8 array of shape \(N, 1, 8, 8\); {what}"):
        runners[backend].logits(images)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_runners_accept_read_only_and_empty_input(runners, backend):
    images = _images((1, 8, 8), n=3)
    images.flags.writeable = False
    assert runners[backend].logits(images).shape == (3, 10)
    empty = runners[backend].logits(images[:0])
    assert empty.shape == (0, 10) and empty.dtype == np.float32
    assert runners[backend].backend == backend


def test_onnx_runner_exposes_its_model(runners):
    runner = runners["onnxruntime"]
    assert isinstance(runner, OnnxRunner)
    assert runner.input_name == "images" and runner.image_shape == (1, 8, 8) and runner.num_classes == 10
    assert OnnxRunner(runner.model_bytes, threads=2).logits(_images((1, 8, 8), n=1)).shape == (1, 10)


def test_torch_runner_restores_the_process_thread_setting(runners):
    runner = TorchRunner(runners["torch"].classifier, threads=2)
    before = torch.get_num_threads()
    runner.logits(_images((1, 8, 8), n=2))
    assert torch.get_num_threads() == before


def test_runner_settings_and_model_bytes_are_checked():
    with pytest.raises(ConfigError, match="threads >= 1"):
        OnnxRunner(b"", threads=0)
    with pytest.raises(ConfigError, match="batch_size 0"):
        TorchRunner(build_classifier("lenet5", num_classes=10, image_shape=(1, 16, 16)), batch_size=0)
    with pytest.raises(ArtifactError, match=r"cannot load the ONNX model \(9 bytes\)"):
        OnnxRunner(b"not onnx!")
