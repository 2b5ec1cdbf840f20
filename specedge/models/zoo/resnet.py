"""The CIFAR ResNets of He et al. (2016, section 4.2): depth 6n + 2.

A 3x3 stem conv, then three stages of ``n`` basic blocks (two 3x3 convs with BN) at
``width``, ``2·width`` and ``4·width`` channels (16/32/64 by default) on 32x32, 16x16 and
8x8 maps, global average pooling and one FC layer. ResNet-20 (n = 3) costs 40.55M MACs and
has 0.27M parameters on 3x32x32, the figures of the paper's Table 6.

Shortcuts are the paper's *option A*, the one it uses for CIFAR: identity, and where a stage
halves the resolution and doubles the channels, stride-2 subsampling plus zero-padded extra
channels (:class:`PadShortcut`). Option A adds no parameters and no MACs, so the reference
counts above match the paper; a 1x1-conv shortcut (option B) would add ~2% parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from specedge.errors import ConfigError
from specedge.models.registry import register_model

__all__ = ["BasicBlock", "CifarResNet", "PadShortcut", "resnet8", "resnet20"]


class PadShortcut(nn.Module):
    """Option-A shortcut: keep every ``stride``-th pixel, zero-pad channels to ``out_ch``."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        extra = out_ch - in_ch
        self.pad = (extra // 2, extra - extra // 2)  # new channels split around the old ones

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_ch, H, W)`` -> ``(N, out_ch, H/stride, W/stride)``; the new channels are zero."""
        x = x[:, :, :: self.stride, :: self.stride]
        return nn.functional.pad(x, (0, 0, 0, 0, *self.pad))


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus shortcut, then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        same_shape = stride == 1 and in_ch == out_ch
        self.shortcut: nn.Module = nn.Identity() if same_shape else PadShortcut(in_ch, out_ch, stride)
        self.relu2 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_ch, H, W)`` -> ``(N, out_ch, H/stride, W/stride)``."""
        out: torch.Tensor = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu2(out + self.shortcut(x))
        return out


class CifarResNet(nn.Module):
    """Stem, three stages of ``blocks_per_stage`` basic blocks, average pool, FC."""

    def __init__(self, *, num_classes: int, in_channels: int, blocks_per_stage: int, width: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
        )
        stages: list[nn.Module] = []
        channels = width
        for stage in range(3):  # (width, S, S) -> (2w, S/2, S/2) -> (4w, S/4, S/4)
            out_ch = width * 2**stage
            for i in range(blocks_per_stage):
                stride = 2 if stage > 0 and i == 0 else 1
                stages.append(BasicBlock(channels, out_ch, stride))
                channels = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` normalised images -> ``(N, num_classes)`` logits."""
        x = self.stages(self.stem(x))  # (N, 4w, S/4, S/4)
        logits: torch.Tensor = self.fc(self.flatten(self.pool(x)))
        return logits


def _resnet(depth: int, *, num_classes: int, in_channels: int, input_size: int, width: int) -> CifarResNet:
    if width < 1:
        raise ConfigError(f"resnet{depth} width (base channels) must be >= 1; got {width}")
    if input_size < 8:
        raise ConfigError(f"resnet{depth} needs input_size >= 8 (two stride-2 stages); got {input_size}")
    return CifarResNet(num_classes=num_classes, in_channels=in_channels, blocks_per_stage=(depth - 2) // 6, width=width)


@register_model(
    "resnet8",
    description="CIFAR ResNet-8 (He et al. 2016, option-A shortcuts): smallest of the family",
    min_input_size=16,
    default_input_size=32,
    reference_input=(3, 32, 32),
    reference_params=75_290,
    reference_macs=12_239_488,
)
def resnet8(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: int = 16) -> CifarResNet:
    """ResNet-8 (n = 1); ``width`` is the first stage's channel count."""
    return _resnet(8, num_classes=num_classes, in_channels=in_channels, input_size=input_size, width=width)


@register_model(
    "resnet20",
    description="CIFAR ResNet-20 (He et al. 2016, option-A shortcuts)",
    min_input_size=16,
    default_input_size=32,
    reference_input=(3, 32, 32),
    reference_params=269_722,
    reference_macs=40_551_040,
)
def resnet20(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: int = 16) -> CifarResNet:
    """ResNet-20 (n = 3); ``width`` is the first stage's channel count."""
    return _resnet(20, num_classes=num_classes, in_channels=in_channels, input_size=input_size, width=width)
