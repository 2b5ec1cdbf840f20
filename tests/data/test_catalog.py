"""Name and path resolution: the catalog, layout detection, and the errors users see."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from specedge.data import list_datasets, load_dataset
from specedge.errors import ConfigError, DatasetError
from tests.data.test_idx import write_idx_folder

NAMES = "cifar10-jpeg, digits, fashion-mnist, mnist"
LAYOUTS = "an IDX folder, an image folder with train/ and test/, or a .npz file"


def test_list_datasets_names_and_one_line_descriptions() -> None:
    datasets = list_datasets()
    assert list(datasets) == ["cifar10-jpeg", "digits", "fashion-mnist", "mnist"]
    for description in datasets.values():
        assert description
        assert "\n" not in description


def test_unknown_name_lists_names_and_layouts() -> None:
    message = f"unknown dataset 'mnistt'; expected one of: {NAMES}, or a path to {LAYOUTS}"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_dataset("mnistt")


@pytest.mark.parametrize("as_path", [False, True])
def test_missing_path(tmp_path: Path, as_path: bool) -> None:
    missing = tmp_path / "nope.npz"
    message = f"dataset path '{missing}' does not exist; expected a path to {LAYOUTS}, or one of: {NAMES}"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_dataset(missing if as_path else str(missing))


def test_path_like_is_never_a_name() -> None:
    with pytest.raises(DatasetError, match=re.escape("dataset path 'digits' does not exist")):
        load_dataset(Path("digits"))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10-jpeg"])
def test_named_dataset_needs_a_data_root(name: str) -> None:
    with pytest.raises(DatasetError, match=r"under a data root, but none was given; pass --data-root DIR"):
        load_dataset(name)


def test_named_dataset_folder_missing(tmp_path: Path) -> None:
    message = f"dataset 'fashion-mnist': folder {tmp_path / 'fashion-mnist'} not found; pass --data-root DIR"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_dataset("fashion-mnist", data_root=tmp_path)


def test_named_dataset_under_any_data_root(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "fashion-mnist", num_classes=10, n_train=50, n_test=20)
    splits = load_dataset("fashion-mnist", data_root=tmp_path)
    assert splits.name == "Fashion-MNIST"
    assert splits.source == "fashion-mnist"
    assert splits.class_names[0] == "T-shirt/top"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (40, 10, 20)


@pytest.mark.parametrize("kind", ["empty-folder", "text-file", "train-only"])
def test_unrecognised_layout_lists_accepted_layouts(tmp_path: Path, kind: str) -> None:
    if kind == "empty-folder":
        target = tmp_path / "empty"
        target.mkdir()
    elif kind == "text-file":
        target = tmp_path / "data.csv"
        target.write_text("1,2,3\n")
    else:
        target = tmp_path / "half"
        (target / "train" / "a").mkdir(parents=True)
    message = "has no known dataset layout; expected a folder with the IDX files"
    with pytest.raises(DatasetError, match=message) as info:
        load_dataset(target)
    assert "train/ and test/" in str(info.value)
    assert ".npz file" in str(info.value)


def test_path_detection_picks_each_layout(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "digits-idx")
    np.savez(
        tmp_path / "arrays.npz",
        x_train=np.zeros((10, 2, 2), np.uint8),
        y_train=np.arange(10) % 2,
        x_test=np.zeros((4, 2, 2), np.uint8),
        y_test=np.arange(4) % 2,
    )
    for split, count in (("train", 5), ("test", 2)):
        for class_name in ("a", "b"):
            folder = tmp_path / "pictures" / split / class_name
            folder.mkdir(parents=True)
            for index in range(count):
                Image.fromarray(np.full((3, 3), index, np.uint8)).save(folder / f"{index}.png")
    names = ("digits-idx", "arrays.npz", "pictures")
    layouts = {name: load_dataset(tmp_path / name).extra["layout"] for name in names}
    assert layouts == {"digits-idx": "idx", "arrays.npz": "npz", "pictures": "image-folder"}
    assert load_dataset(str(tmp_path / "arrays.npz")).name == "arrays"


def test_bad_seed_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="seed must be a non-negative integer; got -3"):
        load_dataset("digits", seed=-3)
