"""build_classifier picks the backbone input size and runs on raw uint8 pixels."""

from __future__ import annotations

import pytest
import torch

from specedge.errors import ConfigError
from specedge.models import build_classifier


def test_small_digits_are_upsampled_to_the_lenet_default() -> None:
    clf = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8))
    assert clf.spec.input_size == 28
    assert clf.backbone_input_shape == (1, 28, 28)


def test_cifar_images_keep_their_size() -> None:
    for arch in ("convnet", "resnet8", "mobilenet_v1"):
        assert build_classifier(arch, num_classes=10, image_shape=(3, 32, 32)).spec.input_size == 32


def test_uint8_in_logits_out() -> None:
    torch.manual_seed(0)
    clf = build_classifier("convnet", num_classes=7, image_shape=(3, 32, 32), width=0.25).eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        logits = clf(images)
    assert logits.dtype == torch.float32
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_arch_options_are_recorded_in_the_spec() -> None:
    clf = build_classifier("mobilenet_v1", num_classes=10, image_shape=(3, 32, 32), alpha=0.25, rho=0.5)
    assert clf.spec.arch_kwargs == {"alpha": 0.25, "rho": 0.5}


def test_bad_sizes_and_normalisation_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="too small for lenet5"):
        build_classifier("lenet5", num_classes=10, image_shape=(1, 28, 28), input_size=8)
    with pytest.raises(ConfigError, match="mean/std need 3 values"):
        build_classifier("convnet", num_classes=10, image_shape=(3, 32, 32), mean=(0.5,), std=(0.5,))
    with pytest.raises(ConfigError, match="unknown model 'vgg99'"):
        build_classifier("vgg99", num_classes=10, image_shape=(3, 32, 32))
