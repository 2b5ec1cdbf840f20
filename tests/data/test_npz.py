"""Keras-style .npz archives: layouts, dtypes, class names, and refusals."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from specedge.data import load_dataset, load_npz
from specedge.data.splits import holdout_indices
from specedge.errors import DatasetError


def keras_arrays(shape: tuple[int, ...], seed: int = 0) -> dict[str, Any]:
    """Random uint8 images of ``(N, *shape)`` with 3 balanced classes: 30 train, 9 test."""
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (30, *shape), dtype=np.uint8),
        "y_train": np.arange(30, dtype=np.int64) % 3,
        "x_test": rng.integers(0, 256, (9, *shape), dtype=np.uint8),
        "y_test": np.arange(9, dtype=np.int64) % 3,
    }


def test_channels_last_uint8_round_trip(tmp_path: Path) -> None:
    arrays = keras_arrays((4, 5, 3))
    np.savez(tmp_path / "colour.npz", **arrays)
    splits = load_dataset(tmp_path / "colour.npz", seed=1)
    assert splits.name == "colour"
    assert splits.source == str((tmp_path / "colour.npz").resolve())
    assert splits.class_names == ("0", "1", "2")
    assert splits.image_shape == (3, 4, 5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (24, 6, 9)
    np.testing.assert_array_equal(splits.test.images, arrays["x_test"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(splits.test.labels, arrays["y_test"])
    train_idx, val_idx = holdout_indices(arrays["y_train"], n_test=9, seed=1)
    np.testing.assert_array_equal(splits.val.images, arrays["x_train"][val_idx].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(splits.train.labels, arrays["y_train"][train_idx])
    assert splits.extra["layout"] == "npz"


def test_grayscale_float_and_column_labels(tmp_path: Path) -> None:
    arrays = keras_arrays((6, 6))
    floats: dict[str, Any] = {key: value / 255.0 for key, value in arrays.items() if key.startswith("x_")}
    columns: dict[str, Any] = {
        key: value[:, None].astype(np.uint8) for key, value in arrays.items() if key.startswith("y_")
    }
    np.savez(tmp_path / "gray.npz", **floats, **columns)
    splits = load_npz(tmp_path / "gray.npz")
    assert splits.image_shape == (1, 6, 6)
    np.testing.assert_array_equal(splits.test.images[:, 0], arrays["x_test"])  # /255 then *255 rounds back
    assert splits.test.labels.dtype == np.int64
    np.testing.assert_array_equal(splits.test.labels, arrays["y_test"])


def test_class_names_from_archive(tmp_path: Path) -> None:
    names = np.array(["red", "green", "blue"])
    np.savez(tmp_path / "named.npz", **keras_arrays((2, 2, 1)), class_names=names)
    splits = load_npz(tmp_path / "named.npz", name="Named")
    assert (splits.name, splits.image_shape) == ("Named", (1, 2, 2))
    assert splits.class_names == ("red", "green", "blue")


def test_missing_key_lists_what_was_found(tmp_path: Path) -> None:
    arrays = keras_arrays((2, 2))
    del arrays["y_test"]
    np.savez(tmp_path / "partial.npz", **arrays, extra=np.zeros(1))
    message = "lacks y_test; it holds x_train, y_train, x_test, extra"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_npz(tmp_path / "partial.npz")


def test_object_array_is_refused_not_unpickled(tmp_path: Path) -> None:
    arrays = keras_arrays((2, 2))
    arrays["y_train"] = np.array([{"label": 1}] * 30, dtype=object)
    np.savez(tmp_path / "pickled.npz", **arrays)
    with pytest.raises(DatasetError, match="array 'y_train' is an object array, which would need unpickling"):
        load_npz(tmp_path / "pickled.npz")


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("x_train", np.zeros((30, 2, 2), dtype=np.int32), "x_train has dtype int32; expected uint8 or float"),
        ("x_test", np.full((9, 2, 2), 1.5), "float x_test must lie in [0, 1]; got values in [1.5, 1.5]"),
        ("x_train", np.zeros((30, 2, 2, 5), dtype=np.uint8), "x_train has shape (30, 2, 2, 5); expected"),
        ("y_train", np.zeros(30, dtype=np.float32), "y_train is float32 (30,); expected integer labels"),
        ("y_test", np.zeros(8, dtype=np.int64), "y_test holds 8 labels but its images hold 9"),
        ("y_test", np.full(9, -2, dtype=np.int64), "y_test labels must be non-negative; got -2"),
    ],
)
def test_bad_arrays_are_named(tmp_path: Path, key: str, value: np.ndarray, message: str) -> None:
    arrays = keras_arrays((2, 2))
    arrays[key] = value
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_npz(tmp_path / "bad.npz")


def test_train_and_test_shapes_must_agree(tmp_path: Path) -> None:
    arrays = keras_arrays((2, 2))
    arrays["x_test"] = np.zeros((9, 3, 3), dtype=np.uint8)
    np.savez(tmp_path / "mixed.npz", **arrays)
    with pytest.raises(DatasetError, match=re.escape("x_train images are (1, 2, 2) (C, H, W) but x_test")):
        load_npz(tmp_path / "mixed.npz")


def test_not_an_archive(tmp_path: Path) -> None:
    path = tmp_path / "text.npz"
    path.write_text("hello")
    with pytest.raises(DatasetError, match=re.escape(f"{path} is not an .npz archive")):
        load_npz(path)


def test_corrupt_zip(tmp_path: Path) -> None:
    path = tmp_path / "cut.npz"
    np.savez(path, **keras_arrays((2, 2)))
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DatasetError, match=re.escape(str(path))):
        load_npz(path)


def test_single_npy_array(tmp_path: Path) -> None:
    path = tmp_path / "single.npz"
    with path.open("wb") as handle:
        np.save(handle, np.zeros(3))
    with pytest.raises(DatasetError, match=re.escape("holds a single .npy array; expected an .npz archive")):
        load_npz(path)
