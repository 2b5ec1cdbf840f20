"""The split math: stratified sampling, hold-out and three-way splits, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from specedge.data import Dataset
from specedge.data.splits import (
    check_seed,
    holdout_indices,
    split_official,
    split_three_way,
    stratified_sample,
    three_way_indices,
    validation_size,
)
from specedge.errors import ConfigError, DatasetError


def _labels(counts: list[int], rng: np.random.Generator) -> np.ndarray:
    """Shuffled labels with ``counts[k]`` items of class ``k``."""
    return rng.permutation(np.repeat(np.arange(len(counts)), counts)).astype(np.int64)


def _dataset(labels: np.ndarray) -> Dataset:
    """Images whose single pixel is the item's index, so subsets can be traced back."""
    images = (np.arange(len(labels)) % 256).astype(np.uint8).reshape(-1, 1, 1, 1)
    return Dataset(images, labels.astype(np.int64))


def test_stratified_sample_allocates_proportionally(rng: np.random.Generator) -> None:
    labels = _labels([50, 30, 20], rng)
    picked = stratified_sample(labels, 10, np.random.default_rng(0))
    assert np.bincount(labels[picked], minlength=3).tolist() == [5, 3, 2]
    assert np.all(np.diff(picked) > 0)  # sorted, no repeats
    assert picked.dtype == np.int64


def test_stratified_sample_largest_remainder_goes_to_lower_class_on_ties(rng: np.random.Generator) -> None:
    labels = _labels([3, 3, 3], rng)
    picked = stratified_sample(labels, 4, np.random.default_rng(0))
    assert np.bincount(labels[picked], minlength=3).tolist() == [2, 1, 1]


def test_stratified_sample_is_seeded(rng: np.random.Generator) -> None:
    labels = _labels([400, 300, 300], rng)
    first = stratified_sample(labels, 100, np.random.default_rng(7))
    again = stratified_sample(labels, 100, np.random.default_rng(7))
    other = stratified_sample(labels, 100, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_stratified_sample_rejects_impossible_size() -> None:
    with pytest.raises(ConfigError, match="cannot draw 5 items from 3"):
        stratified_sample(np.zeros(3, dtype=np.int64), 5, np.random.default_rng(0))


@pytest.mark.parametrize(("n_train", "n_test", "expected"), [(60000, 10000, 10000), (500, 1000, 100), (4, 9, 0)])
def test_validation_size(n_train: int, n_test: int, expected: int) -> None:
    assert validation_size(n_train, n_test) == expected


def test_holdout_indices_are_disjoint_cover_and_stratified(rng: np.random.Generator) -> None:
    labels = _labels([600, 300, 100], rng)
    train_idx, val_idx = holdout_indices(labels, n_test=150, seed=3)
    assert len(val_idx) == 150
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(1000))
    assert np.bincount(labels[val_idx]).tolist() == [90, 45, 15]


def test_three_way_indices_sizes_and_cover(rng: np.random.Generator) -> None:
    labels = _labels([100, 100, 50], rng)
    train_idx, val_idx, test_idx = three_way_indices(labels, seed=0)
    assert (len(train_idx), len(val_idx), len(test_idx)) == (150, 50, 50)
    everything = np.concatenate([train_idx, val_idx, test_idx])
    np.testing.assert_array_equal(np.sort(everything), np.arange(250))
    assert np.bincount(labels[test_idx]).tolist() == [20, 20, 10]
    assert np.bincount(labels[val_idx]).tolist() == [20, 20, 10]


def test_three_way_indices_rejects_bad_fractions() -> None:
    with pytest.raises(ConfigError, match=r"val_fraction=0\.5 and test_fraction=0\.5"):
        three_way_indices(np.zeros(10, dtype=np.int64), seed=0, val_fraction=0.5, test_fraction=0.5)


@pytest.mark.parametrize("seed", [-1, 1.5, True, "0"])
def test_check_seed_rejects_non_natural_numbers(seed: object) -> None:
    with pytest.raises(ConfigError, match=f"seed must be a non-negative integer; got {seed!r}"):
        check_seed(seed)  # type: ignore[arg-type]


def test_split_official_keeps_test_and_order(rng: np.random.Generator) -> None:
    train = _dataset(_labels([30, 20], rng))
    test = _dataset(_labels([5, 5], rng))
    splits = split_official(name="toy", source="toy", class_names=("a", "b"), train=train, test=test, seed=4)
    assert splits.test is test
    assert (len(splits.train), len(splits.val)) == (40, 10)
    # Pixels are item indices: each split keeps the source order and together they cover train.
    train_pixels = splits.train.images.ravel()
    val_pixels = splits.val.images.ravel()
    assert np.all(np.diff(train_pixels.astype(int)) > 0)
    assert np.all(np.diff(val_pixels.astype(int)) > 0)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_pixels, val_pixels])), np.arange(50))
    assert "seed 4" in splits.split_rule
    assert splits.extra["seed"] == 4


def test_split_official_needs_enough_training_items(rng: np.random.Generator) -> None:
    tiny = _dataset(_labels([2, 2], rng))
    with pytest.raises(DatasetError, match="toy: the official training set has 4 items; at least 5"):
        split_official(name="toy", source="toy", class_names=("a", "b"), train=tiny, test=tiny, seed=0)


def test_split_three_way_records_rule(rng: np.random.Generator) -> None:
    data = _dataset(_labels([25, 25], rng))
    splits = split_three_way(name="toy", source="toy", class_names=("a", "b"), data=data, seed=9)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (30, 10, 10)
    assert "60/20/20" in splits.split_rule
    assert "seed 9" in splits.split_rule
