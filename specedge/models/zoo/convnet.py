"""ConvNet, the CIFAR-10 benchmark of SIEVE (thesis Table 4.1, "0.01 GMACs").

The thesis cites cuda-convnet (Krizhevsky 2012); the network of that size class that every
framework ships is Caffe's ``cifar10_quick``, reproduced layer for layer here:

    conv 5x5 32 pad 2 -> maxpool 3 s2 -> ReLU
    conv 5x5 32 pad 2 -> ReLU -> avgpool 3 s2
    conv 5x5 64 pad 2 -> ReLU -> avgpool 3 s2
    fc 64 -> fc num_classes            (no ReLU between them, as in Caffe)

Caffe rounds pooled sizes up, so pooling uses ``ceil_mode=True`` and 32x32 shrinks
32 -> 16 -> 8 -> 4. On 3x32x32 that is 12,354,176 MACs (conv 2,457,600 + 6,553,600 +
3,276,800; fc 65,536 + 640). ``width`` scales every channel and hidden count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from specedge.errors import ConfigError
from specedge.models.registry import register_model

__all__ = ["ConvNet", "convnet"]

_CHANNELS = (32, 32, 64)
_HIDDEN = 64


def _pooled(size: int) -> int:
    """Caffe/``ceil_mode`` output side of a 3x3 stride-2 pool without padding."""
    return math.ceil((size - 3) / 2) + 1


class ConvNet(nn.Module):
    """cifar10_quick. Takes ``(N, C, S, S)``, returns ``(N, num_classes)``."""

    def __init__(self, *, num_classes: int, in_channels: int, input_size: int, width: float) -> None:
        super().__init__()
        c1, c2, c3 = (max(1, round(c * width)) for c in _CHANNELS)
        hidden = max(1, round(_HIDDEN * width))
        side = _pooled(_pooled(_pooled(input_size)))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2),  # (c1, S, S)
            nn.MaxPool2d(3, stride=2, ceil_mode=True),  # (c1, S/2, S/2)
            nn.ReLU(inplace=True),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(3, stride=2, ceil_mode=True),  # (c2, S/4, S/4)
            nn.Conv2d(c2, c3, 5, padding=2),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(3, stride=2, ceil_mode=True),  # (c3, side, side); side = 4 for S = 32
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * side * side, hidden),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` normalised images -> ``(N, num_classes)`` logits."""
        x = self.features(x)  # (N, c3, side, side)
        logits: torch.Tensor = self.classifier(x)
        return logits


@register_model(
    "convnet",
    description="Caffe cifar10_quick ConvNet: CIFAR-10 benchmark of SIEVE Table 4.1",
    min_input_size=16,
    default_input_size=32,
    reference_input=(3, 32, 32),
    reference_params=145_578,
    reference_macs=12_354_176,
)
def convnet(*, num_classes: int = 10, in_channels: int = 3, input_size: int = 32, width: float = 1.0) -> ConvNet:
    """The CIFAR ConvNet; ``width`` < 1 gives thinner speculative variants."""
    if width <= 0:
        raise ConfigError(f"convnet width must be > 0; got {width}")
    if input_size < 8:
        raise ConfigError(f"convnet needs input_size >= 8 (three stride-2 pools); got {input_size}")
    return ConvNet(num_classes=num_classes, in_channels=in_channels, input_size=input_size, width=width)
