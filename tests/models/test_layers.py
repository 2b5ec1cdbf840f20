import pickle

import numpy as np
import pytest
import torch

from specedge.errors import ConfigError
from specedge.models.classifier import build_classifier
from specedge.models.layers import (
    activation_formats_of,
    apply_activation_formats,
    apply_weight_formats,
    compressible_layers,
    uncompressed_parameters,
    with_formats,
)
from specedge.numerics.floats import FloatFormat, quantize

LENET_LAYERS = ["backbone.features.0", "backbone.features.3", "backbone.classifier.1", "backbone.classifier.3"]
COARSE = FloatFormat(3, 1, 4, overflow="saturate")  # 2 significant bits, exponents -3..2


@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25).eval()


@pytest.fixture
def images(rng):
    return torch.from_numpy(rng.integers(0, 256, size=(6, 1, 8, 8), dtype=np.uint8))


def test_compressible_layers_are_convs_and_linears_in_forward_order(lenet):
    assert [name for name, _ in compressible_layers(lenet)] == LENET_LAYERS
    assert uncompressed_parameters(lenet) == [("preprocess", "Preprocess")]


def test_batchnorm_is_listed_as_uncompressed():
    resnet = build_classifier("resnet8", num_classes=10, image_shape=(3, 16, 16), width=2)
    kept = uncompressed_parameters(resnet)
    assert ("backbone.stem.1", "BatchNorm2d") in kept
    assert all(kind in {"Preprocess", "BatchNorm2d"} for _, kind in kept)
    assert not {name for name, _ in kept} & {name for name, _ in compressible_layers(resnet)}


def test_weights_are_rounded_exactly_like_the_numpy_reference_and_biases_stay(lenet):
    layer = dict(compressible_layers(lenet))["backbone.features.3"]
    weight, bias = layer.weight.detach().clone(), layer.bias.detach().clone()
    apply_weight_formats(lenet, {"backbone.features.3": COARSE})
    expected = quantize(weight.numpy(), COARSE)
    np.testing.assert_array_equal(layer.weight.detach().numpy(), expected)
    assert not np.array_equal(expected, weight.numpy())
    torch.testing.assert_close(layer.bias.detach(), bias, rtol=0, atol=0)


def test_unknown_layer_names_are_refused(lenet):
    with pytest.raises(ConfigError, match=r"'backbone\.features\.1'.*backbone\.features\.0"):
        apply_weight_formats(lenet, {"backbone.features.1": COARSE})
    with pytest.raises(ConfigError, match="'nope'"):
        apply_activation_formats(lenet, {"nope": COARSE})


def test_activation_hook_rounds_the_layer_input_and_is_removable(lenet, images):
    name = "backbone.classifier.1"
    layer = dict(compressible_layers(lenet))[name]
    seen = []
    layer.register_forward_hook(lambda _module, args, _output: seen.append(args[0].detach().clone()))
    with torch.no_grad():
        reference = lenet(images)
        handles = apply_activation_formats(lenet, {name: COARSE})
        assert activation_formats_of(lenet) == {name: COARSE}
        rounded = lenet(images)
        handles[0].remove()
        restored = lenet(images)
    raw, hooked = seen[0].numpy(), seen[1].numpy()
    np.testing.assert_array_equal(hooked, quantize(raw, COARSE))
    np.testing.assert_array_equal(quantize(hooked, COARSE), hooked)
    assert not np.array_equal(raw, hooked)
    assert not torch.equal(rounded, reference)
    torch.testing.assert_close(restored, reference, rtol=0, atol=0)
    assert activation_formats_of(lenet) == {}


def test_rounding_an_input_twice_is_refused(lenet):
    apply_activation_formats(lenet, {"backbone.features.0": COARSE})
    with pytest.raises(ConfigError, match="already rounds its input"):
        apply_activation_formats(lenet, {"backbone.features.0": FloatFormat(4, 2, overflow="saturate")})


def test_with_formats_copies_and_the_copy_pickles(lenet, images):
    weights = {"backbone.features.0": COARSE}
    activations = {"backbone.features.3": COARSE, "backbone.classifier.3": FloatFormat(2, 3, overflow="saturate")}
    original = lenet.state_dict()
    lenet.train()
    compressed = with_formats(lenet, weights, activations)
    assert not compressed.training and lenet.training
    assert activation_formats_of(lenet) == {}
    for key, value in lenet.state_dict().items():
        torch.testing.assert_close(value, original[key], rtol=0, atol=0)
    assert activation_formats_of(compressed) == activations
    clone = pickle.loads(pickle.dumps(compressed))
    assert activation_formats_of(clone) == activations
    with torch.no_grad():
        torch.testing.assert_close(clone(images), compressed(images), rtol=0, atol=0)
