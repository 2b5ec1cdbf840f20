"""MobileNet-V1's alpha/rho multipliers (thesis 5.3) are exact and reproduce Tables 5.1-5.2."""

from __future__ import annotations

import pytest
import torch

from specedge.errors import ConfigError
from specedge.models import ModelProfile, get_model, profile_model
from specedge.models.zoo.mobilenet import Resize, scaled_channels


def _profile(*, input_size: int, alpha: float = 1.0, rho: float = 1.0, classes: int = 10) -> ModelProfile:
    model = get_model("mobilenet_v1", num_classes=classes, in_channels=3, input_size=input_size, alpha=alpha, rho=rho)
    return profile_model(model, (3, input_size, input_size))


def test_scaled_channels_round_to_nearest_multiple_of_8_at_least_8() -> None:
    assert [scaled_channels(c, 0.25) for c in (32, 64, 1024)] == [8, 16, 256]
    assert [scaled_channels(c, 0.75) for c in (32, 64, 1024)] == [24, 48, 768]
    assert scaled_channels(32, 0.1) == 8
    assert (scaled_channels(35, 1.0), scaled_channels(36, 1.0)) == (32, 40)


def test_exact_macs_on_a_small_config_follow_eqs_5_1_and_5_2() -> None:
    # alpha 0.25 on 3x16x16: stride-1 stem (small input), 13 blocks as (M, N, output side).
    stem = 16 * 16 * 8 * 3 * 3 * 3
    blocks = [
        (8, 16, 16), (16, 32, 8), (32, 32, 8), (32, 64, 4), (64, 64, 4), (64, 128, 2),
        (128, 128, 2), (128, 128, 2), (128, 128, 2), (128, 128, 2), (128, 128, 2),
        (128, 256, 1), (256, 256, 1),
    ]  # fmt: skip
    depthwise = sum(3 * 3 * m * h * h for m, _, h in blocks)  # eq. 5.2: K·K·αM·H·W
    pointwise = sum(1 * 1 * m * n * h * h for m, n, h in blocks)  # eq. 5.1 with K = 1
    fc = 256 * 10
    profile = _profile(input_size=16, alpha=0.25)
    assert profile.total_macs == stem + depthwise + pointwise + fc
    convs = [layer for layer in profile.layers if layer.type == "Conv2d"]
    assert convs[0].stride == (1, 1)
    assert [layer.groups for layer in convs[1::2]] == [m for m, _, _ in blocks]  # depthwise


def test_alpha_half_costs_about_a_quarter() -> None:
    full, half = _profile(input_size=32), _profile(input_size=32, alpha=0.5)
    assert 0.24 < half.total_macs / full.total_macs < 0.28
    assert 0.24 < half.total_params / full.total_params < 0.27


def test_rho_half_costs_exactly_a_quarter_of_the_convolutions() -> None:
    full, half = _profile(input_size=32), _profile(input_size=32, rho=0.5)
    fc = 1024 * 10  # the classifier head does not depend on resolution
    assert half.total_macs - fc == (full.total_macs - fc) // 4
    assert half.total_params == full.total_params
    first = half.layers[0]
    assert (first.type, first.output_shape, first.macs) == ("Resize", (3, 16, 16), 0)
    assert full.layers[0].type != "Resize"


# Thesis Table 5.1 / 5.2 (= Howard et al. Tables 6-7): ImageNet, 1000 classes, 224x224.
@pytest.mark.parametrize(
    ("alpha", "size", "mmacs", "mparams"),
    [
        (1.0, 224, 569, 4.2),
        (0.75, 224, 325, 2.6),
        (0.5, 224, 149, 1.3),
        (0.25, 224, 41, 0.5),
        (1.0, 192, 418, 4.2),
        (1.0, 160, 290, 4.2),
        (1.0, 128, 186, 4.2),
    ],
)
def test_reproduces_thesis_tables_5_1_and_5_2(alpha: float, size: int, mmacs: int, mparams: float) -> None:
    profile = _profile(input_size=224, alpha=alpha, rho=size / 224, classes=1000)
    assert abs(profile.total_macs / 1e6 - mmacs) < 1  # the paper rounds loosely (290.7 is listed as 290)
    assert round(profile.total_params / 1e6, 1) == pytest.approx(mparams, abs=0.05)
    convs = [layer for layer in profile.layers if layer.type == "Conv2d"]
    assert convs[0].stride == (2, 2)  # ImageNet-size input keeps the stride-2 stem


def test_stem_stride_depends_on_nominal_input_size_not_rho() -> None:
    def stem_stride(input_size: int, rho: float) -> tuple[int, ...] | None:
        profile = _profile(input_size=input_size, rho=rho)
        return next(layer.stride for layer in profile.layers if layer.type == "Conv2d")

    assert stem_stride(64, 1.0) == (1, 1)
    assert stem_stride(96, 1.0) == (2, 2)
    assert stem_stride(96, 0.5) == (2, 2)  # same architecture for every rho


def test_resize_layer_is_bilinear_and_a_no_op_at_its_size() -> None:
    x = torch.rand(1, 3, 8, 8)
    assert Resize(8)(x) is x
    assert Resize(4)(x).shape == (1, 3, 4, 4)
    assert torch.allclose(Resize(4)(torch.ones(1, 1, 8, 8)), torch.ones(1, 1, 4, 4))


def test_non_positive_rho_is_rejected() -> None:
    with pytest.raises(ConfigError, match="rho=-1"):
        get_model("mobilenet_v1", num_classes=10, in_channels=3, input_size=32, rho=-1)
