"""The steps every entry point shares: train a fresh model, check a model fits a dataset, save it.

``specedge train``, ``specedge distill``, ``specedge eval`` and the demo all go through these, so
a model trained by one is normalised, checked and recorded exactly like a model trained by another.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from specedge.data import DatasetSplits
from specedge.errors import ConfigError
from specedge.models import ClassifierSpec, ImageClassifier, build_classifier, save_artifact
from specedge.training.evaluate import EvalResult, evaluate
from specedge.training.trainer import TrainConfig, TrainResult, channel_stats, fit

__all__ = ["check_fits", "save_evaluated", "train_new"]


def train_new(
    architecture: str,
    splits: DatasetSplits,
    config: TrainConfig,
    *,
    show_progress: bool = False,
    description: str = "train",
    **arch_kwargs: Any,
) -> tuple[ImageClassifier, TrainResult]:
    """Build ``architecture`` for ``splits`` (normalised by its training statistics) and fit it.

    The seed is set before the weights are drawn, so the same config gives the same model.
    """
    mean, std = channel_stats(splits.train.images)
    torch.manual_seed(config.seed)
    model = build_classifier(
        architecture,
        num_classes=splits.num_classes,
        image_shape=splits.image_shape,
        mean=mean,
        std=std,
        **arch_kwargs,
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
    """
    val = evaluate(model, splits.val, num_classes=splits.num_classes)
    test = evaluate(model, splits.test, num_classes=splits.num_classes)
    path = save_artifact(
        directory,
        model,
        dataset=splits.describe(),
        metrics={"val_accuracy": val.accuracy, "test_accuracy": test.accuracy},
        training=training,
    )
    return path, val, test
