"""A complete image classifier: raw uint8 pixels in, logits out.

The edge and the cloud both receive raw camera pixels (uint8, ``(N, C, H, W)``), so each model
carries its own preprocessing: scale to [0, 1], resize to the backbone's input size, normalise
per channel. :class:`ClassifierSpec` records all of it, so an artifact's manifest alone rebuilds
the model (``specedge.models.artifact``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from specedge.errors import ArtifactError, ConfigError
from specedge.models import registry

__all__ = ["ClassifierSpec", "ImageClassifier", "Preprocess", "build_classifier"]

#: Backbone arguments the classifier derives from the data; never architecture options.
_DERIVED = ("num_classes", "in_channels", "input_size")


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything needed to rebuild an :class:`ImageClassifier` (weights aside)."""

    architecture: str
    num_classes: int
    image_shape: tuple[int, int, int]  # raw input (C, H, W)
    input_size: int  # backbone input height = width, after resizing
    mean: tuple[float, ...]
    std: tuple[float, ...]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """``architecture(option=value, ...)``: how reports and records name the model."""
        options = ", ".join(f"{k}={v}" for k, v in self.arch_kwargs.items())
        return f"{self.architecture}({options})" if options else self.architecture

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        d = asdict(self)
        d["image_shape"] = list(self.image_shape)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClassifierSpec:
        """Inverse of :meth:`to_dict`; raises :class:`ArtifactError` on a malformed dict."""
        try:
            if len(d["image_shape"]) != 3:
                raise ValueError(f"image_shape must be [C, H, W]; got {d['image_shape']}")
            return cls(
                architecture=str(d["architecture"]),
                num_classes=int(d["num_classes"]),
                image_shape=tuple(int(v) for v in d["image_shape"]),  # type: ignore[arg-type]
                input_size=int(d["input_size"]),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                arch_kwargs=dict(d.get("arch_kwargs", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"malformed model spec in manifest: {exc!r}") from exc


class Preprocess(nn.Module):
    """uint8 ``(N, C, H, W)`` -> float32 ``(N, C, S, S)``: scale, resize, normalise."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, input_size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.input_size = input_size
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Raw pixels to the backbone's normalised input."""
        x = images.float() / 255.0
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std


class ImageClassifier(nn.Module):
    """Preprocessing followed by a zoo backbone; ``forward`` takes raw uint8 pixels."""

    def __init__(self, spec: ClassifierSpec) -> None:
        super().__init__()
        self.spec = spec
        derived = [name for name in _DERIVED if name in spec.arch_kwargs]
        if derived:
            raise ConfigError(
                f"{', '.join(derived)} cannot be an option of {spec.architecture!r}: the classifier derives it "
                "from the images and classes"
            )
        self.preprocess = Preprocess(spec.input_size, spec.mean, spec.std)
        self.backbone = registry.get_model(
            spec.architecture,
            num_classes=spec.num_classes,
            in_channels=spec.image_shape[0],
            input_size=spec.input_size,
            **spec.arch_kwargs,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for uint8 ``(N, C, H, W)`` images."""
        logits: torch.Tensor = self.backbone(self.preprocess(images))
        return logits

    @property
    def backbone_input_shape(self) -> tuple[int, int, int]:
        """``(C, S, S)``: what the backbone sees, e.g. for the per-layer profiler."""
        return (self.spec.image_shape[0], self.spec.input_size, self.spec.input_size)


def build_classifier(
    architecture: str,
    *,
    num_classes: int,
    image_shape: tuple[int, int, int],
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    input_size: int | None = None,
    arch_options: Mapping[str, Any] | None = None,
    **arch_kwargs: Any,
) -> ImageClassifier:
    """Build an untrained classifier for images of ``image_shape``.

    The backbone runs at the image's own size when the architecture accepts it, otherwise at
    the architecture's default size (e.g. 8x8 scikit-learn digits are upsampled to 28x28 for
    LeNet-5). Pass ``input_size`` to choose explicitly. ``mean``/``std`` default to 0.5.
    Architecture options come as keywords (``width=0.5``) or, where their names are not known
    in advance (the CLI's ``--arch-opt``), as one ``arch_options`` mapping that cannot collide
    with this function's own parameters (foundation review item 9).
    """
    entry = registry.model_entry(architecture)
    channels, height, width = image_shape
    if input_size is None:
        native = min(height, width)
        input_size = native if native >= entry.min_input_size else entry.default_input_size
    if input_size < entry.min_input_size:
        raise ConfigError(
            f"input size {input_size} is too small for {architecture}; it needs at least {entry.min_input_size}"
        )
    mean = mean if mean is not None else (0.5,) * channels
    std = std if std is not None else (0.5,) * channels
    if len(mean) != channels or len(std) != channels:
        raise ConfigError(f"mean/std need {channels} values (one per channel); got {len(mean)} and {len(std)}")
    spec = ClassifierSpec(
        architecture=architecture,
        num_classes=num_classes,
        image_shape=(channels, height, width),
        input_size=input_size,
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        arch_kwargs={**(arch_options or {}), **arch_kwargs},
    )
    return ImageClassifier(spec)
