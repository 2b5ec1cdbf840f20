"""The IDX reader and IDX folders, on small synthetic files."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from specedge.data import load_dataset, load_idx_folder, read_idx
from specedge.errors import DatasetError

_CODES = {"uint8": 0x08, "int8": 0x09, "int16": 0x0B, "int32": 0x0C, "float32": 0x0D, "float64": 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of ``array``: header, big-endian dims, big-endian data."""
    header = struct.pack(">BBBB", 0, 0, _CODES[array.dtype.name], array.ndim)
    dims = struct.pack(f">{array.ndim}I", *array.shape)
    return header + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, *, compress: bool = False) -> Path:
    """Write ``array`` as an IDX file, gzip-compressed when asked (whatever the suffix)."""
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def write_idx_folder(
    folder: Path,
    *,
    n_train: int = 40,
    n_test: int = 10,
    num_classes: int = 4,
    size: tuple[int, int] = (3, 2),
    compress: bool = True,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An IDX folder of random images; returns ``(x_train, y_train, x_test, y_test)``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    x_train = rng.integers(0, 256, (n_train, *size), dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, *size), dtype=np.uint8)
    y_train = (np.arange(n_train) % num_classes).astype(np.uint8)
    y_test = (np.arange(n_test) % num_classes).astype(np.uint8)
    suffix = ".gz" if compress else ""
    for stem, array in (
        ("train-images-idx3-ubyte", x_train),
        ("train-labels-idx1-ubyte", y_train),
        ("t10k-images-idx3-ubyte", x_test),
        ("t10k-labels-idx1-ubyte", y_test),
    ):
        write_idx(folder / f"{stem}{suffix}", array, compress=compress)
    return x_train, y_train, x_test, y_test


@pytest.mark.parametrize("dtype", list(_CODES))
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trips_every_dtype(tmp_path: Path, dtype: str, compress: bool) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    result = read_idx(write_idx(tmp_path / "a.idx", array, compress=compress))
    np.testing.assert_array_equal(result, array)
    assert result.dtype == np.dtype(dtype)
    assert result.dtype.isnative
    assert result.flags.writeable


def test_read_idx_detects_gzip_by_magic_not_suffix(tmp_path: Path) -> None:
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain.gz", array)), array)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "packed", array, compress=True)), array)


def test_read_idx_one_dimensional(tmp_path: Path) -> None:
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    assert read_idx(write_idx(tmp_path / "labels", labels)).tolist() == [3, 1, 4, 1, 5]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x00", "shorter than the 4-byte header"),
        (b"\x01\x02\x08\x01\x00\x00\x00\x01\x07", "is not an IDX file: it starts with 0x01020801"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "unknown IDX dtype code 0x07"),
        (b"\x00\x00\x08\x00", "declares 0 dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x03\x01\x02", "shape (3,) of uint8 needs 11 bytes, got 10"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x01\x02\x03", "2 unexpected trailing bytes"),
    ],
)
def test_read_idx_rejects_malformed_files(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(data)
    with pytest.raises(DatasetError, match=re.escape(message)) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_truncated_data_inside_gzip(tmp_path: Path) -> None:
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((4, 4), dtype=np.uint8))[:-3]))
    with pytest.raises(DatasetError, match="truncated IDX data"):
        read_idx(path)


@pytest.mark.parametrize("damage", ["cut", "flip"])
def test_read_idx_rejects_corrupt_gzip(tmp_path: Path, damage: str) -> None:
    rng = np.random.default_rng(0)
    packed = bytearray(gzip.compress(idx_bytes(rng.integers(0, 256, (50, 50), dtype=np.uint8))))
    if damage == "cut":
        packed = packed[: len(packed) // 2]
    else:
        packed[len(packed) // 2 : len(packed) // 2 + 8] = b"\xff" * 8
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(DatasetError, match=re.escape(f"corrupt gzip data in IDX file {path}")):
        read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"cannot read IDX file .*nothing-here"):
        read_idx(tmp_path / "nothing-here")


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_folder_shapes_labels_and_split(tmp_path: Path, compress: bool) -> None:
    x_train, y_train, x_test, y_test = write_idx_folder(tmp_path / "toy", compress=compress)
    splits = load_idx_folder(tmp_path / "toy", seed=5)
    assert splits.name == "toy"
    assert splits.source == str((tmp_path / "toy").resolve())
    assert splits.class_names == ("0", "1", "2", "3")
    assert splits.image_shape == (1, 3, 2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (32, 8, 10)
    np.testing.assert_array_equal(splits.test.images[:, 0], x_test)
    np.testing.assert_array_equal(splits.test.labels, y_test)
    assert splits.train.labels.dtype == np.int64
    assert np.bincount(splits.val.labels).tolist() == [2, 2, 2, 2]
    assert "seed 5" in splits.split_rule
    assert splits.extra["layout"] == "idx"
    # Every train and val item is an official training item with its own label.
    rows = {x.tobytes(): int(y) for x, y in zip(x_train, y_train, strict=True)}
    for part in (splits.train, splits.val):
        assert all(rows[x.tobytes()] == y for x, y in zip(part.images[:, 0], part.labels, strict=True))


def test_load_idx_folder_prefers_given_class_names(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "toy")
    splits = load_idx_folder(tmp_path / "toy", name="Toy", class_names=("a", "b", "c", "d"))
    assert (splits.name, splits.class_names) == ("Toy", ("a", "b", "c", "d"))


def test_image_label_count_mismatch(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "toy")
    write_idx(tmp_path / "toy" / "t10k-labels-idx1-ubyte.gz", np.zeros(9, dtype=np.uint8), compress=True)
    message = "t10k-images-idx3-ubyte.gz holds 10 images but t10k-labels-idx1-ubyte.gz holds 9 labels"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_dataset(tmp_path / "toy")


def test_missing_idx_file_is_named(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "toy")
    (tmp_path / "toy" / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError, match=r"lacks train-labels-idx1-ubyte \(plain or \.gz\)"):
        load_dataset(tmp_path / "toy")


def test_truncated_idx_in_folder(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "toy", compress=False)
    images = tmp_path / "toy" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:-1])
    with pytest.raises(DatasetError, match=re.escape(f"{images}: truncated IDX data")):
        load_dataset(tmp_path / "toy")


def test_corrupt_gzip_in_folder(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "toy")
    images = tmp_path / "toy" / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:20])
    with pytest.raises(DatasetError, match=re.escape(f"corrupt gzip data in IDX file {images}")):
        load_dataset(tmp_path / "toy")


def test_images_must_be_three_dimensional_uint8(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "toy")
    flat = np.zeros((40, 6), dtype=np.uint8)
    write_idx(tmp_path / "toy" / "train-images-idx3-ubyte.gz", flat, compress=True)
    message = "expected uint8 images of shape (N, H, W); got uint8 (40, 6)"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_dataset(tmp_path / "toy")


def test_negative_labels_refused(tmp_path: Path) -> None:
    write_idx_folder(tmp_path / "toy")
    write_idx(tmp_path / "toy" / "t10k-labels-idx1-ubyte.gz", np.full(10, -1, dtype=np.int8), compress=True)
    with pytest.raises(DatasetError, match="labels must be non-negative; got -1"):
        load_dataset(tmp_path / "toy")
