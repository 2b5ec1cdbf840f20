"""Loading artifacts for a dataset and computing their outputs: shared by ``calibrate`` and ``simulate``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from specedge.data import Dataset, DatasetSplits
from specedge.detector import ModelOutputs
from specedge.models import ImageClassifier, load_artifact
from specedge.training import check_fits, predict_logits

__all__ = ["load_for", "model_outputs"]


def load_for(path: Path, splits: DatasetSplits, *, role: str) -> ImageClassifier:
    """The artifact at ``path``, checked to read ``splits``' images and classes."""
    classifier = load_artifact(path).classifier
    check_fits(classifier.spec, splits, what=f"{role} {path}")
    return classifier


def model_outputs(speculative: Sequence[ImageClassifier], master: ImageClassifier, split: Dataset) -> ModelOutputs:
    """Speculative logits (stacked for a minion pair), the master's answers and the labels on ``split``."""
    logits = [predict_logits(model, split.images) for model in speculative]
    stacked = logits[0] if len(logits) == 1 else np.stack(logits, axis=1)
    return ModelOutputs(stacked, predict_logits(master, split.images).argmax(axis=1), split.labels)
