"""The steps every entry point shares: train a fresh model, check a model fits a dataset, save it.

``specedge train``, ``specedge distill``, ``specedge eval`` and the demo all go through these, so
a model trained by one is normalised, checked and recorded exactly like a model trained by another.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from specedge.data import DatasetSplits
from specedge.errors import ConfigError
from specedge.models import ClassifierSpec, ImageClassifier, build_classifier, save_artifact
from specedge.training.evaluate import EvalResult, evaluate
from specedge.training.trainer import TrainConfig, TrainingError, TrainResult, at_chance, channel_stats, fit

__all__ = ["check_fits", "save_evaluated", "train_new"]


def train_new(
    architecture: str,
    splits: DatasetSplits,
    config: TrainConfig,
    *,
    arch_options: Mapping[str, Any] | None = None,
    input_size: int | None = None,
    show_progress: bool = False,
    description: str = "train",
) -> tuple[ImageClassifier, TrainResult]:
    """Build ``architecture(**arch_options)`` for ``splits`` (normalised by its training statistics) and fit it.

    The options come as one mapping, not as keyword arguments, so an option may share a name with
    a parameter here (foundation review item 9). ``input_size`` is the backbone's input side
    (default: the images' own, or the architecture's default if they are too small). The seed is
    set before the weights are drawn, so the same config gives the same model.

    Raises:
        TrainingError: the model did not learn (see :func:`specedge.training.fit`).
    """
    mean, std = channel_stats(splits.train.images)
    torch.manual_seed(config.seed)
    model = build_classifier(
        architecture,
        num_classes=splits.num_classes,
        image_shape=splits.image_shape,
        mean=mean,
        std=std,
        input_size=input_size,
        arch_options=arch_options,
    )
    return model, fit(model, splits, config, show_progress=show_progress, description=description)


def check_fits(spec: ClassifierSpec, splits: DatasetSplits, *, what: str) -> None:
    """:class:`ConfigError` unless a model of ``spec`` reads ``splits``' images and classes."""
    if spec.image_shape != splits.image_shape or spec.num_classes != splits.num_classes:
        raise ConfigError(
            f"{what} expects images {spec.image_shape} with {spec.num_classes} classes; "
            f"dataset {splits.name!r} has {splits.image_shape} with {splits.num_classes}"
        )


def save_evaluated(
    directory: Path, model: ImageClassifier, splits: DatasetSplits, *, training: dict[str, Any]
) -> tuple[Path, EvalResult, EvalResult]:
    """Save ``model`` with its validation and test accuracy in the manifest.

    Returns the artifact path and both evaluations, so callers reuse them instead of
    evaluating again.

    Raises:
        TrainingError: the model is at chance on validation; such a model is never saved, so no
            later step (serving, the demo's verdict) can build on it.
    """
    val = evaluate(model, splits.val, num_classes=splits.num_classes)
    chance = at_chance(val, splits.num_classes)
    if chance is not None:
        raise TrainingError(f"refusing to save {model.spec.label} to {directory}: {chance}")
    test = evaluate(model, splits.test, num_classes=splits.num_classes)
    path = save_artifact(
        directory,
        model,
        dataset=splits.describe(),
        metrics={"val_accuracy": val.accuracy, "test_accuracy": test.accuracy},
        training=training,
    )
    return path, val, test
