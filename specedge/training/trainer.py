"""Supervised training with fixed seeds and validation-based early stopping.

The loop is deliberately plain (nanoGPT-style): one function, :func:`fit`, that a reader can
follow top to bottom. AdamW at a constant rate until validation stops improving, then the rate
drops (x0.3) after ``patience // 3`` flat epochs and training stops after ``patience``: the
schedule follows the data instead of a fixed epoch budget, which suits early stopping (a
one-cycle schedule keeps validation noisy until it anneals and stops too early). "Better" means
higher validation accuracy, ties broken by lower validation loss (small validation sets tie
often). The best epoch's weights are restored at the end. A custom
``loss_fn`` lets other passes reuse the loop: knowledge distillation
(``specedge.compression.distillation``) supplies a teacher-guided loss.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from specedge.data import Dataset, DatasetSplits
from specedge.errors import ConfigError
from specedge.training.evaluate import evaluate

__all__ = ["EpochStats", "LossFn", "TrainConfig", "TrainResult", "channel_stats", "fit"]

#: Data augmentations :func:`fit` knows. Flips suit natural images (CIFAR), never digits.
AUGMENTATIONS = ("none", "shift", "shift-flip")

#: ``loss_fn(logits, labels, images) -> scalar loss``; images are the raw uint8 batch.
LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run (stored in the artifact manifest)."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    patience: int = 8  # epochs without a better validation score before stopping
    seed: int = 0
    augment: str = "none"  # "none", "shift" (random translations) or "shift-flip" (plus mirror images)
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0 and math.isfinite(self.lr),
            "weight_decay": self.weight_decay >= 0,
            "patience": self.patience >= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "augment": self.augment in AUGMENTATIONS,
        }
        for name, ok in checks.items():
            if not ok:
                hint = f"; expected one of: {', '.join(AUGMENTATIONS)}" if name == "augment" else ""
                raise ConfigError(f"invalid training option {name}={getattr(self, name)!r}{hint}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


@dataclass(frozen=True)
class EpochStats:
    """What happened in one epoch."""

    epoch: int
    train_loss: float
    train_accuracy: float
    val_loss: float
    val_accuracy: float
    lr: float
    seconds: float


@dataclass
class TrainResult:
    """The outcome of :func:`fit`; the model passed in now holds the best weights."""

    history: list[EpochStats] = field(default_factory=list)
    best_epoch: int = 0
    best_val_accuracy: float = 0.0
    stopped_early: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for manifests."""
        return {
            "best_epoch": self.best_epoch,
            "best_val_accuracy": self.best_val_accuracy,
            "stopped_early": self.stopped_early,
            "epochs_run": len(self.history),
            "history": [asdict(h) for h in self.history],
        }


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 ``(N, C, H, W)`` images scaled to [0, 1]."""
    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = np.maximum(x.std(axis=(0, 2, 3)), 1e-3)  # a constant channel must not divide by zero
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def _augment(images: torch.Tensor, generator: torch.Generator, *, flip: bool) -> torch.Tensor:
    """Random translations by up to 1/8 of the image side (zero fill), optionally mirrored; uint8 in and out."""
    n, channels, h, w = images.shape
    pad = max(1, round(h / 8))
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w)
    shifted = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(channels).view(1, -1, 1, 1), rows, cols]
    if flip:
        mirror = torch.rand(n, generator=generator) < 0.5
        shifted[mirror] = shifted[mirror].flip(-1)
    return shifted


def fit(
    model: nn.Module,
    splits: DatasetSplits,
    config: TrainConfig,
    *,
    loss_fn: LossFn | None = None,
    show_progress: bool = False,
    description: str = "train",
) -> TrainResult:
    """Train ``model`` (raw uint8 in, logits out) on ``splits.train``; early-stop on ``splits.val``.

    Deterministic for a given seed on a given machine: the model's initial weights are not
    touched here (seed before building the model), but shuffling and augmentation draw from a
    generator seeded with ``config.seed``.
    """
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train: Dataset = splits.train
    images = torch.from_numpy(train.images)
    labels = torch.from_numpy(train.labels)
    if loss_fn is None:

        def loss_fn(logits: torch.Tensor, target: torch.Tensor, _images: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(logits, target, label_smoothing=config.label_smoothing)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=0.3, patience=max(1, config.patience // 3)
    )
    val_labels = torch.from_numpy(splits.val.labels)

    result = TrainResult(best_val_accuracy=-1.0)
    best_score = (-1.0, -math.inf)  # (val accuracy, -val loss), compared lexicographically
    best_state: dict[str, torch.Tensor] = copy.deepcopy(model.state_dict())
    epochs_without_gain = 0
    bar = tqdm(range(1, config.epochs + 1), desc=description, unit="epoch", disable=not show_progress)
    for epoch in bar:
        start = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=generator)
        total_loss, total_correct = 0.0, 0
        for step in range(steps_per_epoch):
            idx = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch, target = images[idx], labels[idx]
            if config.augment != "none":
                batch = _augment(batch, generator, flip=config.augment == "shift-flip")
            logits = model(batch)
            loss = loss_fn(logits, target, batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
            total_correct += int((logits.argmax(1) == target).sum())
        val = evaluate(model, splits.val, num_classes=splits.num_classes)
        val_loss = float(F.cross_entropy(torch.from_numpy(val.logits), val_labels))
        stats = EpochStats(
            epoch=epoch,
            train_loss=total_loss / len(train),
            train_accuracy=total_correct / len(train),
            val_loss=val_loss,
            val_accuracy=val.accuracy,
            lr=optimizer.param_groups[0]["lr"],
            seconds=time.perf_counter() - start,
        )
        result.history.append(stats)
        bar.set_postfix(loss=f"{stats.train_loss:.3f}", val_acc=f"{val.accuracy:.4f}")
        score = (val.accuracy, -val_loss)
        scheduler.step(val.accuracy - 1e-3 * val_loss)  # one number: accuracy first, loss breaks ties
        if score > best_score:
            best_score = score
            result.best_val_accuracy, result.best_epoch = val.accuracy, epoch
            best_state = copy.deepcopy(model.state_dict())
            epochs_without_gain = 0
        else:
            epochs_without_gain += 1
            if epochs_without_gain >= config.patience:
                result.stopped_early = True
                break
    bar.close()
    model.load_state_dict(best_state)
    model.eval()
    return result
