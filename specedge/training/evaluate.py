"""Batched inference and accuracy on a dataset split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from specedge.data import Dataset

__all__ = ["EvalResult", "evaluate", "predict_logits", "softmax"]


@torch.inference_mode()
def predict_logits(model: nn.Module, images: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Logits ``(N, K)`` float32 for uint8 images ``(N, C, H, W)``; the model's mode is restored."""
    was_training = model.training
    model.eval()
    try:
        chunks = [
            model(torch.from_numpy(images[start : start + batch_size])).float().numpy()
            for start in range(0, len(images), batch_size)
        ]
    finally:
        model.train(was_training)
    return np.concatenate(chunks, axis=0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    probs: np.ndarray = exp / exp.sum(axis=1, keepdims=True)
    return probs


@dataclass(frozen=True)
class EvalResult:
    """Accuracy of a model on one split, with its predictions for later analysis."""

    accuracy: float
    predictions: np.ndarray
    logits: np.ndarray
    per_class_accuracy: np.ndarray

    @property
    def num_items(self) -> int:
        """Number of evaluated items."""
        return int(self.predictions.shape[0])


def evaluate(model: nn.Module, dataset: Dataset, *, num_classes: int, batch_size: int = 512) -> EvalResult:
    """Top-1 accuracy of ``model`` on ``dataset``."""
    return evaluate_logits(predict_logits(model, dataset.images, batch_size=batch_size), dataset.labels, num_classes)


def evaluate_logits(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> EvalResult:
    """Top-1 accuracy of logits computed elsewhere (e.g. on a device backend) against ``labels``."""
    predictions = logits.argmax(axis=1)
    correct = predictions == labels
    counts = np.bincount(labels, minlength=num_classes)
    hits = np.bincount(labels, weights=correct, minlength=num_classes)
    per_class = np.divide(hits, counts, out=np.full(num_classes, np.nan), where=counts > 0)
    return EvalResult(
        accuracy=float(correct.mean()),
        predictions=predictions,
        logits=logits,
        per_class_accuracy=per_class,
    )
