"""Per-layer profiles: hand-checked fields, MAC convention, totals, mode restoration."""

from __future__ import annotations

import json

import torch
from torch import nn

from specedge.models import build_classifier, profile_classifier, profile_model


def _net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(4, 6, 3, stride=2, padding=1),  # (4, 9, 9) -> (6, 5, 5)
        nn.BatchNorm2d(6),
        nn.Conv2d(6, 6, 3, padding=1, groups=6, bias=False),  # depthwise
        nn.MaxPool2d(2),  # (6, 2, 2)
        nn.Flatten(),
        nn.Linear(24, 5),
    )


def test_conv_fields_are_hand_checked() -> None:
    conv = profile_model(_net(), (4, 9, 9)).layers[0]
    assert (conv.name, conv.type) == ("0", "Conv2d")
    assert (conv.input_shape, conv.output_shape) == ((4, 9, 9), (6, 5, 5))
    assert (conv.kernel, conv.stride, conv.padding, conv.groups) == ((3, 3), (2, 2), (1, 1), 1)
    assert conv.macs == 6 * 5 * 5 * 4 * 3 * 3  # out elements x (in / groups) x kh x kw
    assert conv.params == 6 * 4 * 9 + 6
    assert conv.param_bytes == conv.params * 4
    assert conv.activation_bytes == 6 * 5 * 5 * 4


def test_depthwise_pool_linear_and_zero_mac_layers() -> None:
    layers = profile_model(_net(), (4, 9, 9)).layers
    bn, dw, pool, flat, fc = layers[1:]
    assert (dw.groups, dw.macs, dw.params) == (6, 6 * 5 * 5 * 1 * 9, 6 * 9)
    assert (pool.kernel, pool.stride, pool.padding, pool.groups, pool.macs) == (
        (2, 2),
        (2, 2),
        (0, 0),
        None,
        0,
    )
    assert (bn.macs, bn.params, bn.kernel) == (0, 12, None)
    assert (flat.output_shape, flat.macs) == ((24,), 0)
    assert (fc.macs, fc.params, fc.kernel, fc.groups) == (24 * 5, 24 * 5 + 5, None, None)


def test_totals_include_parameters_of_non_leaf_modules() -> None:
    class Scaled(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 2)
            self.scale = nn.Parameter(torch.ones(2))  # owned by a non-leaf module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y: torch.Tensor = self.fc(x) * self.scale
            return y

    profile = profile_model(Scaled(), (3,))
    assert sum(layer.params for layer in profile.layers) == 8
    assert (profile.total_params, profile.total_param_bytes, profile.total_macs) == (10, 40, 6)


def test_a_module_called_twice_gives_two_rows_and_counts_params_once() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y: torch.Tensor = self.fc(self.fc(x))
            return y

    profile = profile_model(Twice(), (4,))
    assert [(layer.name, layer.macs, layer.params) for layer in profile.layers] == [
        ("fc", 16, 20),
        ("fc", 16, 0),
    ]
    assert profile.total_macs == 32


def test_activation_bytes_follow_dtype_and_totals() -> None:
    net = _net().double()
    profile = profile_model(net, (4, 9, 9), dtype=torch.float64)
    assert profile.layers[0].activation_bytes == 6 * 5 * 5 * 8
    assert profile.peak_activation_bytes == max(layer.activation_bytes for layer in profile.layers)
    assert profile.total_activation_bytes == sum(layer.activation_bytes for layer in profile.layers)


def test_training_modes_and_buffers_are_restored() -> None:
    net = _net().train()
    net[1].eval()  # mixed modes must come back exactly
    before = {k: v.clone() for k, v in net.state_dict().items()}
    profile_model(net, (4, 9, 9))
    assert net.training and not net[1].training and net[0].training
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no BN statistics updated
    assert torch.is_grad_enabled()
    assert all(p.grad is None for p in net.parameters())


def test_hooks_are_removed() -> None:
    net = _net()
    profile_model(net, (4, 9, 9))
    assert all(not m._forward_hooks for m in net.modules())


def test_to_dict_is_json_and_to_table_is_aligned() -> None:
    profile = profile_model(_net(), (4, 9, 9))
    d = json.loads(json.dumps(profile.to_dict()))
    assert d["total_macs"] == profile.total_macs
    assert d["layers"][0]["kernel"] == [3, 3]
    assert len(d["layers"]) == 6
    lines = profile.to_table().splitlines()
    assert lines[0].split()[:2] == ["layer", "type"]
    assert lines[-1].split()[0] == "total"
    assert f"{profile.total_macs:,}" in lines[-1]
    rule = lines[1]
    assert all(len(line) <= len(rule) for line in lines)
    macs_end = lines[0].index("MACs") + len("MACs")  # numbers are right-aligned under their header
    assert lines[2][:macs_end].endswith(f"{profile.layers[0].macs:,}")


def test_profile_classifier_uses_backbone_input_size() -> None:
    clf = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8))
    profile = profile_classifier(clf)
    assert profile.input_shape == (1, 28, 28)
    assert profile.total_macs == 2_293_000
