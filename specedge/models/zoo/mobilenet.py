"""MobileNet-V1 with the width (alpha) and resolution (rho) multipliers of M&MNet (thesis ch. 5).

M&MNet derives its pair of speculative *Minions* from a *Master* with the two knobs of
MobileNets (Howard et al. 2017), section 5.3 of the thesis:

* width multiplier ``alpha`` (5.3.1) scales every layer's channel count. A standard conv
  then costs ``K·K·αM·αN·H·W`` MACs (eq. 5.1) and a depthwise one ``K·K·αM·H·W`` (eq. 5.2), so
  the pointwise-dominated network costs about ``α²`` as much. Channels are ``α·c`` rounded to
  the nearest multiple of 8, at least 8 (exact for the usual α = 0.25, 0.5, 0.75, 1.0).
* resolution multiplier ``rho`` (5.3.2) shrinks the input: the backbone's first layer,
  :class:`Resize`, bilinearly resizes its ``input_size`` input to ``round(ρ·input_size)``, so
  every later layer's ``H·W`` and thus the MACs scale by about ``ρ²`` (eqs. 5.3, 5.4) while
  the parameters stay the same. The resize itself counts 0 MACs.

Everything except the resolution is decided from the nominal ``input_size``, so all ρ of
one α share one architecture and only the feature maps shrink, as in the thesis' Table 5.2.

With ``input_size`` 224 and 1000 classes this is the paper's network: 569M MACs and 4.2M
parameters at α = 1 (thesis Table 5.1); ``tests/models/test_mobilenet.py`` checks both
tables. For small images (``input_size <= 64``, e.g. CIFAR-10's 32x32) the stem uses stride 1
instead of 2, the usual CIFAR adaptation: with five stride-2 stages a 32x32 image would be
1x1 after the fourth, leaving nothing for the last blocks to see; with four it ends at 2x2.
"""

from __future__ import annotations

import torch
from torch import nn

from specedge.errors import ConfigError
from specedge.models.registry import register_model

__all__ = ["MobileNetV1", "Resize", "mobilenet_v1"]

# (output channels, stride) of the 13 depthwise-separable blocks, Table 1 of Howard et al.
_BLOCKS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (512, 1),
    (1024, 2),
    (1024, 1),
)
_STEM_CHANNELS = 32
_SMALL_INPUT = 64  # at or below this nominal input size the stem keeps full resolution


def scaled_channels(channels: int, alpha: float) -> int:
    """``alpha · channels`` rounded to the nearest multiple of 8, at least 8."""
    return max(8, int(channels * alpha / 8 + 0.5) * 8)


def resized_input_size(input_size: int, rho: float) -> int:
    """Resolution the network computes at: ``round(rho · input_size)``."""
    return round(rho * input_size)


class Resize(nn.Module):
    """Bilinear resize to ``size x size``: the resolution multiplier as a layer (0 MACs)."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, H, W)`` -> ``(N, C, size, size)``; a no-op when already that size."""
        if x.shape[-2:] == (self.size, self.size):
            return x
        return nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        """Shown in ``print(model)``."""
        return f"size={self.size}"


def _conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Sequential):
    """3x3 depthwise conv (one filter per channel) then 1x1 pointwise conv, each BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__(
            _conv_bn_relu(in_ch, in_ch, 3, stride, groups=in_ch),  # depthwise: K·K·M·H·W MACs
            _conv_bn_relu(in_ch, out_ch, 1, 1),  # pointwise: M·N·H·W MACs
        )


class MobileNetV1(nn.Module):
    """Resize -> stem conv -> 13 depthwise-separable blocks -> global average pool -> FC."""

    def __init__(self, *, num_classes: int, in_channels: int, input_size: int, alpha: float, rho: float) -> None:
        super().__init__()
        stem_stride = 1 if input_size <= _SMALL_INPUT else 2
        layers: list[nn.Module] = []
        if rho != 1.0:
            layers.append(Resize(resized_input_size(input_size, rho)))  # (C, ρS, ρS)
        channels = scaled_channels(_STEM_CHANNELS, alpha)
        layers.append(_conv_bn_relu(in_channels, channels, 3, stem_stride))
        for base_channels, stride in _BLOCKS:
            out_channels = scaled_channels(base_channels, alpha)
            layers.append(DepthwiseSeparable(channels, out_channels, stride))
            channels = out_channels
        self.features = nn.Sequential(*layers)  # (αC_last, ρS/16 or ρS/32, ...)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` normalised images -> ``(N, num_classes)`` logits."""
        x = self.features(x)  # (N, αC_last, s, s)
        logits: torch.Tensor = self.fc(self.flatten(self.pool(x)))
        return logits


@register_model(
    "mobilenet_v1",
    description="MobileNet-V1 (Howard et al. 2017) with alpha/rho multipliers: M&MNet Masters and Minions",
    min_input_size=16,
    default_input_size=32,
    reference_input=(3, 32, 32),
    reference_params=3_217_226,
    reference_macs=46_354_432,
)
def mobilenet_v1(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    input_size: int = 32,
    alpha: float = 1.0,
    rho: float = 1.0,
) -> MobileNetV1:
    """MobileNet-V1 with width multiplier ``alpha`` and resolution multiplier ``rho``."""
    if alpha <= 0:
        raise ConfigError(f"mobilenet_v1 alpha must be > 0 (e.g. 0.25, 0.5, 0.75, 1.0); got {alpha}")
    if rho <= 0 or resized_input_size(input_size, rho) < 8:
        raise ConfigError(
            f"mobilenet_v1 rho={rho} at input_size {input_size} gives a "
            f"{resized_input_size(input_size, rho)}-pixel input; choose rho so that rho*input_size >= 8"
        )
    return MobileNetV1(num_classes=num_classes, in_channels=in_channels, input_size=input_size, alpha=alpha, rho=rho)
