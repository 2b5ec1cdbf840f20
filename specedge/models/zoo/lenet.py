"""LeNet-5, the MNIST benchmark of SIEVE (thesis Table 4.1).

The thesis uses the Caffe variant of LeCun et al. (1998): two 5x5 convolutions with 20 and 50
channels, each followed by ReLU and 2x2 max pooling, then a 500-unit hidden layer. On a
1x28x28 MNIST image it costs 2,293,000 multiply-accumulates (the table's "0.002 GMACs"):

    conv1  20 x 24x24 outputs x 1x5x5   =   288,000
    conv2  50 x  8x8  outputs x 20x5x5  = 1,600,000
    fc1    800 -> 500                   =   400,000
    fc2    500 -> 10                    =     5,000

``width`` scales every channel and hidden count at once, which is how a tiny speculative
LeNet is derived from the master one (SIEVE section 4.3.1: the speculative CNN is a cheaper
version of the original).
"""

from __future__ import annotations

import torch
from torch import nn

from specedge.errors import ConfigError
from specedge.models.registry import register_model

__all__ = ["LeNet5", "lenet5"]

_CONV1, _CONV2, _HIDDEN = 20, 50, 500
_KERNEL = 5


def _scaled(count: int, width: float) -> int:
    """``count`` scaled by ``width``, rounded, never below 1."""
    return max(1, round(count * width))


def _feature_size(input_size: int) -> int:
    """Side of the last feature map: (conv 5x5 valid, pool 2) twice."""
    after_block1 = (input_size - _KERNEL + 1) // 2
    return (after_block1 - _KERNEL + 1) // 2


class LeNet5(nn.Module):
    """conv-relu-pool x2, fc-relu, fc. Takes ``(N, C, S, S)``, returns ``(N, num_classes)``."""

    def __init__(self, *, num_classes: int, in_channels: int, input_size: int, width: float) -> None:
        super().__init__()
        c1, c2, hidden = _scaled(_CONV1, width), _scaled(_CONV2, width), _scaled(_HIDDEN, width)
        side = _feature_size(input_size)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, _KERNEL),  # (c1, S-4, S-4)
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (c1, (S-4)/2, ...)
            nn.Conv2d(c1, c2, _KERNEL),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # (c2, side, side); side = 4 for S = 28
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` normalised images -> ``(N, num_classes)`` logits."""
        x = self.features(x)  # (N, c2, side, side)
        logits: torch.Tensor = self.classifier(x)
        return logits


@register_model(
    "lenet5",
    description="LeNet-5 (LeCun et al. 1998), Caffe variant: MNIST benchmark of SIEVE Table 4.1",
    min_input_size=16,
    default_input_size=28,
    reference_input=(1, 28, 28),
    reference_params=431_080,
    reference_macs=2_293_000,
)
def lenet5(*, num_classes: int = 10, in_channels: int = 1, input_size: int = 28, width: float = 1.0) -> LeNet5:
    """LeNet-5; ``width`` < 1 gives the thinner speculative variants."""
    if width <= 0:
        raise ConfigError(f"lenet5 width must be > 0; got {width}")
    if input_size < 16:
        raise ConfigError(f"lenet5 needs input_size >= 16 (two 5x5 convs and 2x2 pools); got {input_size}")
    return LeNet5(num_classes=num_classes, in_channels=in_channels, input_size=input_size, width=width)
