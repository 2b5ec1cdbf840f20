"""In-memory image classification datasets and their train/validation/test splits.

Every loader in :mod:`specedge.data` returns a :class:`DatasetSplits`: uint8 images in
``(N, C, H, W)`` layout and int64 labels, the same representation the edge sends over the wire
(raw camera pixels), so models carry their own preprocessing (``specedge.models.classifier.Preprocess``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from specedge.errors import DatasetError

__all__ = ["Dataset", "DatasetSplits"]


@dataclass(frozen=True)
class Dataset:
    """One split: ``images`` uint8 ``(N, C, H, W)``, ``labels`` int64 ``(N,)``."""

    images: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4:
            raise DatasetError(
                f"images must be uint8 with shape (N, C, H, W); got {self.images.dtype} {self.images.shape}"
            )
        if self.labels.dtype != np.int64 or self.labels.shape != (self.images.shape[0],):
            raise DatasetError(
                f"labels must be int64 with shape ({self.images.shape[0]},); "
                f"got {self.labels.dtype} {self.labels.shape}"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, indices: np.ndarray) -> Dataset:
        """The items at ``indices``, in that order."""
        return Dataset(self.images[indices], self.labels[indices])

    def class_counts(self, num_classes: int) -> np.ndarray:
        """Number of items per class, length ``num_classes``."""
        return np.bincount(self.labels, minlength=num_classes)


@dataclass(frozen=True)
class DatasetSplits:
    """A dataset divided into disjoint train, validation and test splits.

    Validation is carved out of the source's training data only, so it never overlaps test;
    it is what detectors and thresholds are calibrated on. ``split_rule`` documents how the
    split was made, in words, for manifests and reports.
    """

    name: str
    source: str
    class_names: tuple[str, ...]
    train: Dataset
    val: Dataset
    test: Dataset
    split_rule: str
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        shapes = {s.images.shape[1:] for s in (self.train, self.val, self.test)}
        if len(shapes) != 1:
            raise DatasetError(f"{self.name}: splits disagree on image shape: {sorted(shapes)}")
        for split_name, split in (("train", self.train), ("val", self.val), ("test", self.test)):
            if len(split) == 0:
                raise DatasetError(f"{self.name}: the {split_name} split is empty")
            if split.labels.min() < 0 or split.labels.max() >= len(self.class_names):
                raise DatasetError(
                    f"{self.name}: {split_name} labels must lie in [0, {len(self.class_names) - 1}]; "
                    f"got [{split.labels.min()}, {split.labels.max()}]"
                )

    @property
    def num_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image."""
        c, h, w = self.train.images.shape[1:]
        return (int(c), int(h), int(w))

    def describe(self) -> dict[str, Any]:
        """JSON-ready summary used in model manifests and reports."""
        return {
            "name": self.name,
            "source": self.source,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "sizes": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "split_rule": self.split_rule,
        }
