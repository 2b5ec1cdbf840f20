"""Deterministic, stratified train/validation/test splits.

SpecEdge calibrates its misspeculation detectors and escalation thresholds on a validation set
that must never overlap the test set it is judged on. Following the SIEVE thesis (evaluation
setup: a validation set the size of the test set, sampled from the training data), two rules
cover every source:

* **Official test set** (IDX folders, image folders, ``.npz`` files): test is the official test
  set, untouched; validation is a stratified random subset of the official training set of
  ``min(len(test), len(train) // 5)`` items; train is the rest of the official training set.
* **No official split** (scikit-learn digits): a stratified random 60/20/20 train/val/test split.

Stratification gives each class its proportional share of the held-out items (largest-remainder
rounding, ties to the lower class index), then draws that many items of the class uniformly at
random from ``numpy.random.default_rng(seed)``. Chosen indices are sorted, so every split keeps
the source order and the same seed always gives the same split.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from specedge.data.dataset import Dataset, DatasetSplits
from specedge.errors import ConfigError, DatasetError

__all__ = [
    "check_seed",
    "holdout_indices",
    "split_official",
    "split_three_way",
    "stratified_sample",
    "three_way_indices",
    "validation_size",
]

#: The smallest official training set from which ``len(train) // 5`` leaves one validation item.
MIN_OFFICIAL_TRAIN = 5


def check_seed(seed: int) -> int:
    """Return ``seed`` if it is a non-negative integer; :class:`ConfigError` otherwise."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer; got {seed!r}")
    return int(seed)


def stratified_sample(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``size`` items, drawn per class in proportion to the class sizes."""
    n = len(labels)
    if not 0 <= size <= n:
        raise ConfigError(f"cannot draw {size} items from {n}; expected 0 <= size <= {n}")
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    # Exact integer largest-remainder rounding: floor of each quota, then one more item for the
    # classes with the largest remainders (stable sort: ties go to the lower class index).
    alloc, remainder = np.divmod(counts * size, n)
    short = size - int(alloc.sum())
    alloc[np.argsort(-remainder, kind="stable")[:short]] += 1
    by_class = np.argsort(inverse, kind="stable")  # indices grouped by class, in source order
    starts = np.concatenate(([0], np.cumsum(counts)))
    picked = [rng.permutation(by_class[starts[k] : starts[k + 1]])[:take] for k, take in enumerate(alloc.tolist())]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def validation_size(n_train: int, n_test: int) -> int:
    """Validation size carved from an official training set: ``min(n_test, n_train // 5)``."""
    return min(n_test, n_train // 5)


def holdout_indices(train_labels: np.ndarray, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)`` into an official training set; disjoint, sorted, covering it."""
    n_val = validation_size(len(train_labels), n_test)
    val_idx = stratified_sample(train_labels, n_val, np.random.default_rng(check_seed(seed)))
    train_idx = np.setdiff1d(np.arange(len(train_labels), dtype=np.int64), val_idx, assume_unique=True)
    return train_idx, val_idx


def three_way_indices(
    labels: np.ndarray, seed: int, *, val_fraction: float = 0.2, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(train_idx, val_idx, test_idx)``: disjoint, sorted, stratified, covering all items.

    Test takes ``round(n * test_fraction)`` items, then validation takes
    ``round(n * val_fraction)`` of the rest; both rounded half to even.
    """
    if not (val_fraction > 0 and test_fraction > 0 and val_fraction + test_fraction < 1):
        raise ConfigError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} must be positive and sum to less than 1"
        )
    rng = np.random.default_rng(check_seed(seed))
    n = len(labels)
    everything = np.arange(n, dtype=np.int64)
    test_idx = stratified_sample(labels, round(n * test_fraction), rng)
    rest = np.setdiff1d(everything, test_idx, assume_unique=True)
    val_idx = rest[stratified_sample(labels[rest], round(n * val_fraction), rng)]
    train_idx = np.setdiff1d(rest, val_idx, assume_unique=True)
    return train_idx, val_idx, test_idx


def split_official(
    *,
    name: str,
    source: str,
    class_names: tuple[str, ...],
    train: Dataset,
    test: Dataset,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Keep the official test set; carve a stratified validation set out of the official train."""
    seed = check_seed(seed)
    if len(train) < MIN_OFFICIAL_TRAIN:
        raise DatasetError(
            f"{name}: the official training set has {len(train)} items; at least "
            f"{MIN_OFFICIAL_TRAIN} are needed to carve out a validation split"
        )
    train_idx, val_idx = holdout_indices(train.labels, len(test), seed)
    rule = (
        f"test: the official test set ({len(test)} items, untouched); "
        f"val: {len(val_idx)} items = min(len(test), len(train) // 5) drawn from the official "
        f"training set ({len(train)} items) by stratified random sampling with seed {seed}; "
        f"train: the other {len(train_idx)} official training items; source order kept within each split"
    )
    return DatasetSplits(
        name=name,
        source=source,
        class_names=class_names,
        train=train.subset(train_idx),
        val=train.subset(val_idx),
        test=test,
        split_rule=rule,
        extra={"seed": seed, **(extra or {})},
    )


def split_three_way(
    *,
    name: str,
    source: str,
    class_names: tuple[str, ...],
    data: Dataset,
    seed: int,
    extra: dict[str, Any] | None = None,
) -> DatasetSplits:
    """Split a source without an official test set 60/20/20, stratified by class."""
    seed = check_seed(seed)
    train_idx, val_idx, test_idx = three_way_indices(data.labels, seed)
    rule = (
        f"no official split: stratified random 60/20/20 train/val/test split of all {len(data)} items "
        f"with seed {seed} ({len(train_idx)}/{len(val_idx)}/{len(test_idx)}); "
        "source order kept within each split"
    )
    return DatasetSplits(
        name=name,
        source=source,
        class_names=class_names,
        train=data.subset(train_idx),
        val=data.subset(val_idx),
        test=data.subset(test_idx),
        split_rule=rule,
        extra={"seed": seed, **(extra or {})},
    )
