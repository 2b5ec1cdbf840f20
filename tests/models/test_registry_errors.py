"""Registry errors: a bad option is one clear ConfigError; a bug inside a builder is not disguised as one."""

from __future__ import annotations

import pytest
from torch import nn

from specedge.errors import ConfigError
from specedge.models import build_classifier, get_model, registry


@pytest.fixture
def zoo(monkeypatch):
    """The registry with two test builders added, restored afterwards."""
    registry.list_models()  # load the zoo into the real registry first, not into the copy
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    reference = {"min_input_size": 4, "default_input_size": 8, "reference_input": (1, 8, 8)}

    @registry.register_model(
        "buggy", description="raises TypeError inside", reference_params=0, reference_macs=0, **reference
    )
    def buggy(*, num_classes: int, in_channels: int, input_size: int, width: float = 1.0) -> nn.Module:
        return nn.Linear(in_channels * input_size * input_size, "ten")  # the bug: a str where an int belongs

    @registry.register_model(
        "named", description="has an option called name", reference_params=0, reference_macs=0, **reference
    )
    def named(*, num_classes: int, in_channels: int, input_size: int, name: str = "x") -> nn.Module:
        return nn.Flatten()


def test_a_type_error_inside_a_builder_propagates_as_itself(zoo):
    with pytest.raises(TypeError, match="str") as info:
        get_model("buggy", num_classes=10, in_channels=1, input_size=8)
    assert not isinstance(info.value, ConfigError)


def test_an_unknown_option_is_a_config_error_listing_the_options(zoo):
    with pytest.raises(
        ConfigError, match=r"cannot build 'buggy' with options \{'depth': 3\}.*its options are: width=1\.0"
    ):
        get_model("buggy", num_classes=10, in_channels=1, input_size=8, depth=3)
    with pytest.raises(ConfigError, match=r"its options are: alpha=1\.0, rho=1\.0"):
        get_model("mobilenet_v1", num_classes=10, in_channels=3, input_size=32, width=0.5)


def test_an_option_may_be_called_name(zoo):
    assert isinstance(get_model("named", num_classes=2, in_channels=1, input_size=8, name="y"), nn.Flatten)


@pytest.mark.parametrize("option", ["mean", "architecture", "image_shape"])
def test_options_in_one_mapping_never_collide_with_build_parameters(option):
    with pytest.raises(ConfigError, match=f"got an unexpected keyword argument '{option}'"):
        build_classifier("lenet5", num_classes=10, image_shape=(1, 28, 28), arch_options={option: 1})


def test_options_the_classifier_derives_are_refused():
    with pytest.raises(ConfigError, match="input_size cannot be an option of 'lenet5'"):
        build_classifier("lenet5", num_classes=10, image_shape=(1, 28, 28), arch_options={"input_size": 12})


def test_mobilenet_alpha_as_an_option_mapping():
    model = build_classifier("mobilenet_v1", num_classes=10, image_shape=(3, 32, 32), arch_options={"alpha": 0.25})
    assert model.spec.arch_kwargs == {"alpha": 0.25}
