"""Every registered model matches its documented reference cost; per-family details."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from specedge.errors import ConfigError
from specedge.models import get_model, list_models, model_entry, profile_model
from specedge.models.zoo.resnet import PadShortcut

ZOO = ("convnet", "lenet5", "mobilenet_v1", "resnet8", "resnet20")


def _reference_model(name: str) -> nn.Module:
    entry = model_entry(name)
    channels, size, _ = entry.reference_input
    torch.manual_seed(0)
    return get_model(name, num_classes=entry.reference_num_classes, in_channels=channels, input_size=size)


def test_zoo_is_registered() -> None:
    assert set(ZOO) <= set(list_models())


@pytest.mark.parametrize("name", list_models())
def test_reference_params_and_macs(name: str) -> None:
    entry = model_entry(name)
    model, shape = _reference_model(name), entry.reference_input
    profile = profile_model(model, shape)
    assert profile.total_params == entry.reference_params
    assert profile.total_macs == entry.reference_macs
    with torch.no_grad():
        logits = model.eval()(torch.randn(2, *shape))
    assert logits.shape == (2, entry.reference_num_classes)


@pytest.mark.parametrize("name", ZOO)
def test_builds_and_runs_at_min_input_size(name: str) -> None:
    entry = model_entry(name)
    size = entry.min_input_size
    model = get_model(name, num_classes=3, in_channels=entry.reference_input[0], input_size=size)
    with torch.no_grad():
        assert model.eval()(torch.randn(1, entry.reference_input[0], size, size)).shape == (1, 3)


def test_lenet5_per_layer_macs_match_thesis_table_4_1() -> None:
    profile = profile_model(get_model("lenet5", num_classes=10, in_channels=1, input_size=28), (1, 28, 28))
    weighted = [(layer.type, layer.macs) for layer in profile.layers if layer.macs]
    assert weighted == [("Conv2d", 288_000), ("Conv2d", 1_600_000), ("Linear", 400_000), ("Linear", 5_000)]
    assert profile.total_macs == 2_293_000


def test_lenet5_width_scales_channels_and_hidden_units() -> None:
    model = get_model("lenet5", num_classes=10, in_channels=1, input_size=28, width=0.1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [c.out_channels for c in convs] == [2, 5]
    assert (fcs[0].in_features, fcs[0].out_features) == (5 * 4 * 4, 50)
    tiny = get_model("lenet5", num_classes=10, in_channels=1, input_size=28, width=0.001)
    assert [m.out_channels for m in tiny.modules() if isinstance(m, nn.Conv2d)] == [1, 1]  # at least 1


def test_convnet_pools_like_caffe_32_16_8_4() -> None:
    profile = profile_model(get_model("convnet", num_classes=10, in_channels=3, input_size=32), (3, 32, 32))
    pooled = [layer.output_shape[1] for layer in profile.layers if "Pool" in layer.type]
    assert pooled == [16, 8, 4]


def test_resnet20_has_20_weighted_layers_and_parameter_free_shortcuts() -> None:
    model = get_model("resnet20", num_classes=10, in_channels=3, input_size=32)
    weighted = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert len(weighted) == 20
    shortcuts = [m for m in model.modules() if isinstance(m, PadShortcut)]
    assert len(shortcuts) == 2
    assert all(not list(m.parameters()) for m in shortcuts)
    x = torch.arange(2 * 16 * 4 * 4, dtype=torch.float32).view(2, 16, 4, 4)
    y = PadShortcut(16, 32, 2)(x)
    assert y.shape == (2, 32, 2, 2)
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2])
    assert not y[:, :8].any() and not y[:, 24:].any()


def test_resnet_width_option_sets_base_channels() -> None:
    model = get_model("resnet8", num_classes=10, in_channels=3, input_size=32, width=4)
    assert [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)][-1] == 16


@pytest.mark.parametrize(
    ("name", "options", "fragment"),
    [
        ("lenet5", {"width": 0}, "width must be > 0"),
        ("convnet", {"width": -1.0}, "width must be > 0"),
        ("resnet20", {"width": 0}, "width (base channels) must be >= 1"),
        ("mobilenet_v1", {"alpha": 0}, "alpha must be > 0"),
        ("mobilenet_v1", {"rho": 0.1}, "rho*input_size >= 8"),
        ("lenet5", {"depth": 3}, "cannot build 'lenet5'"),
    ],
)
def test_bad_options_raise_config_error(name: str, options: dict[str, object], fragment: str) -> None:
    c = model_entry(name).reference_input[0]
    with pytest.raises(ConfigError) as info:
        get_model(name, num_classes=10, in_channels=c, input_size=32, **options)
    assert fragment in str(info.value)


def test_too_small_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="input_size >= 16"):
        get_model("lenet5", num_classes=10, in_channels=1, input_size=12)
