"""Label sanity on load: a stray label byte is refused, naming the file, the value, its count and position."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from specedge.data import load_dataset, load_idx_folder
from specedge.data.labels import check_labels
from specedge.errors import DatasetError
from tests.conftest import SHARED_DATASETS
from tests.data.test_idx import write_idx

PER_CLASS = 120  # a stray label is one of ~1,200: under 1% of a typical class


def _idx_folder(folder: Path, y_train: np.ndarray, y_test: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for stem, array in (
        ("train-images-idx3-ubyte", rng.integers(0, 256, (len(y_train), 2, 2), dtype=np.uint8)),
        ("train-labels-idx1-ubyte", y_train.astype(np.uint8)),
        ("t10k-images-idx3-ubyte", rng.integers(0, 256, (len(y_test), 2, 2), dtype=np.uint8)),
        ("t10k-labels-idx1-ubyte", y_test.astype(np.uint8)),
    ):
        write_idx(folder / stem, array)
    return folder


def _balanced(n_classes: int, per_class: int) -> np.ndarray:
    return np.arange(n_classes * per_class) % n_classes


@pytest.mark.parametrize("stray", [42, 10])  # far past the classes (a gap), or right after them (rare)
def test_a_stray_label_byte_in_an_idx_file_is_refused(tmp_path, stray):
    y_train = _balanced(10, PER_CLASS)
    y_train[17] = stray
    folder = _idx_folder(tmp_path / "corrupt", y_train, _balanced(10, 20))
    path = folder / "train-labels-idx1-ubyte"
    message = f"{path}: label {stray} occurs 1 time(s) (first at item 17)"
    with pytest.raises(DatasetError, match=re.escape(message)) as info:
        load_dataset(folder)
    assert f"it would make {stray + 1} classes from 11 distinct labels" in str(info.value)


def test_a_largest_label_far_past_the_distinct_ones_is_refused_even_if_common(tmp_path):
    y_train = _balanced(3, PER_CLASS)
    y_train[y_train == 2] = 200  # a third of the labels: not rare, but 201 classes from 3 labels
    folder = _idx_folder(tmp_path / "gap", y_train, np.array([0, 1, 200]))
    with pytest.raises(DatasetError, match=r"label 200 occurs 121 time.*201 classes from 3 distinct labels"):
        load_dataset(folder)


def test_labels_outside_the_declared_classes_name_file_and_item(tmp_path):
    y_test = _balanced(10, 20)
    y_test[[5, 9]] = 12
    folder = _idx_folder(tmp_path / "fashion", _balanced(10, 20), y_test)
    message = f"{folder / 't10k-labels-idx1-ubyte'}: label 12 at item 5 is outside 0..9 (10 classes); 2 label(s)"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_idx_folder(folder, class_names=tuple("abcdefghij"))


def test_npz_stray_label_says_how_to_declare_classes(tmp_path):
    y_train = _balanced(4, PER_CLASS)
    y_train[3] = 99
    path = tmp_path / "mine.npz"
    np.savez(
        path,
        x_train=np.zeros((len(y_train), 2, 2), np.uint8),
        y_train=y_train,
        x_test=np.zeros((8, 2, 2), np.uint8),
        y_test=_balanced(4, 2),
    )
    with pytest.raises(DatasetError, match=re.escape(f"{path.resolve()}: y_train: label 99 occurs 1 time(s)")) as info:
        load_dataset(path)
    assert "declare every class with a class_names array" in str(info.value)


def test_npz_with_class_names_declares_its_classes(tmp_path):
    path = tmp_path / "named.npz"
    arrays = {
        "x_train": np.zeros((20, 2, 2), np.uint8),
        "y_train": np.arange(20) % 3,
        "x_test": np.zeros((6, 2, 2), np.uint8),
        "y_test": np.array([0, 1, 2, 0, 1, 3]),
    }
    np.savez(path, **arrays, class_names=np.array(["a", "b", "c"]))
    with pytest.raises(DatasetError, match=re.escape("y_test: label 3 at item 5 is outside 0..2 (3 classes)")):
        load_dataset(path)
    # A class absent from the data is legitimate once declared: five names, labels 0..2.
    arrays["y_test"] = np.array([0, 1, 2, 0, 1, 2])
    np.savez(path, **arrays, class_names=np.array(["a", "b", "c", "d", "e"]))
    assert load_dataset(path).num_classes == 5


@pytest.mark.parametrize(
    "labels",
    [
        np.arange(30) % 3,  # tiny and balanced
        np.array([0] * 500 + [1] * 20 + [2] * 6),  # imbalanced: 6 is over 1% of the median class
        np.array([0, 1, 3] * 40),  # a small gap (class 2 unseen) is not a stray byte
        np.array([0] * 100 + [1]),  # two classes, one seen once: too few values to call it stray
    ],
)
def test_legitimate_labels_pass(labels):
    assert check_labels({"f": labels}, num_classes=None) == int(labels.max()) + 1


def test_the_shared_mnist_labels_pass():
    folder = SHARED_DATASETS / "mnist"
    if not folder.is_dir():
        pytest.skip(f"optional shared data not present: {folder}")
    assert load_dataset(folder).num_classes == 10
