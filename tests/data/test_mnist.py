"""MNIST and Fashion-MNIST from ../shared: exact file contents, splits, determinism.

The expected label counts are the ones documented in shared/datasets/SOURCES.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from specedge.data import DatasetSplits, load_dataset, read_idx
from specedge.data.catalog import FASHION_MNIST_CLASSES
from specedge.data.splits import holdout_indices
from tests.conftest import shared_path

MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
EXPECTED_COUNTS = {
    "mnist": (MNIST_TRAIN_COUNTS, MNIST_TEST_COUNTS),
    "fashion-mnist": ([6000] * 10, [1000] * 10),
}


def _data_root() -> Path:
    return shared_path("datasets", "mnist").parent


@pytest.fixture(scope="module")
def official() -> dict[str, dict[str, np.ndarray]]:
    """The four raw arrays of each dataset, read once for the module."""
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for name in EXPECTED_COUNTS:
        folder = shared_path("datasets", name)
        arrays[name] = {
            "x_train": read_idx(folder / "train-images-idx3-ubyte.gz"),
            "y_train": read_idx(folder / "train-labels-idx1-ubyte.gz"),
            "x_test": read_idx(folder / "t10k-images-idx3-ubyte.gz"),
            "y_test": read_idx(folder / "t10k-labels-idx1-ubyte.gz"),
        }
    return arrays


@pytest.fixture(scope="module")
def loaded() -> dict[str, DatasetSplits]:
    """Each dataset loaded by name with seed 0, once for the module."""
    return {name: load_dataset(name, data_root=_data_root(), seed=0) for name in EXPECTED_COUNTS}


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_read_idx_gives_the_documented_files(official: dict[str, dict[str, np.ndarray]], name: str) -> None:
    arrays = official[name]
    assert arrays["x_train"].shape == (60000, 28, 28)
    assert arrays["x_test"].shape == (10000, 28, 28)
    assert arrays["x_train"].dtype == np.uint8
    assert arrays["y_train"].shape == (60000,)
    assert arrays["y_test"].shape == (10000,)
    train_counts, test_counts = EXPECTED_COUNTS[name]
    assert np.bincount(arrays["y_train"], minlength=10).tolist() == train_counts
    assert np.bincount(arrays["y_test"], minlength=10).tolist() == test_counts


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_load_dataset_sizes_and_shapes(loaded: dict[str, DatasetSplits], name: str) -> None:
    splits = loaded[name]
    assert len(splits.train) + len(splits.val) == 60000
    assert (len(splits.val), len(splits.test)) == (10000, 10000)
    assert splits.image_shape == (1, 28, 28)
    assert splits.source == name
    assert splits.extra["seed"] == 0


def test_display_names_and_class_names(loaded: dict[str, DatasetSplits]) -> None:
    assert loaded["mnist"].name == "MNIST"
    assert loaded["mnist"].class_names == tuple(str(k) for k in range(10))
    assert loaded["fashion-mnist"].name == "Fashion-MNIST"
    assert loaded["fashion-mnist"].class_names == FASHION_MNIST_CLASSES


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_splits_are_official_sets_partitioned(
    official: dict[str, dict[str, np.ndarray]], loaded: dict[str, DatasetSplits], name: str
) -> None:
    arrays, splits = official[name], loaded[name]
    # Test is the official test set, untouched.
    np.testing.assert_array_equal(splits.test.images[:, 0], arrays["x_test"])
    np.testing.assert_array_equal(splits.test.labels, arrays["y_test"])
    # The index sets partition the official training set ...
    train_idx, val_idx = holdout_indices(arrays["y_train"], n_test=10000, seed=0)
    assert np.intersect1d(train_idx, val_idx).size == 0
    np.testing.assert_array_equal(np.union1d(train_idx, val_idx), np.arange(60000))
    # ... and are exactly what the loader took, in source order.
    np.testing.assert_array_equal(splits.train.images[:, 0], arrays["x_train"][train_idx])
    np.testing.assert_array_equal(splits.val.images[:, 0], arrays["x_train"][val_idx])
    np.testing.assert_array_equal(splits.val.labels, arrays["y_train"][val_idx])
    # Independently of the indices: every validation image is an official training image.
    official_rows = {row.tobytes() for row in arrays["x_train"]}
    assert all(row.tobytes() in official_rows for row in splits.val.images)


@pytest.mark.parametrize("name", list(EXPECTED_COUNTS))
def test_validation_is_stratified(loaded: dict[str, DatasetSplits], name: str) -> None:
    train_counts, _ = EXPECTED_COUNTS[name]
    expected = np.array(train_counts) * 10000 / 60000
    val_counts = loaded[name].val.class_counts(10)
    assert np.all(np.abs(val_counts - expected) < 1)
    assert val_counts.sum() == 10000


def test_loading_is_deterministic_and_seeded(loaded: dict[str, DatasetSplits]) -> None:
    again = load_dataset("mnist", data_root=_data_root(), seed=0)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(again, part).images, getattr(loaded["mnist"], part).images)
        np.testing.assert_array_equal(getattr(again, part).labels, getattr(loaded["mnist"], part).labels)
    other = load_dataset("mnist", data_root=_data_root(), seed=1)
    assert "seed 1" in other.split_rule
    assert len(other.val) == 10000
    assert not np.array_equal(other.val.images, loaded["mnist"].val.images)
    np.testing.assert_array_equal(other.test.images, loaded["mnist"].test.images)


def test_mnist_by_path_uses_folder_name() -> None:
    folder = shared_path("datasets", "mnist")
    splits = load_dataset(folder)
    assert splits.name == "mnist"
    assert splits.source == str(folder.resolve())
    assert len(splits.test) == 10000
