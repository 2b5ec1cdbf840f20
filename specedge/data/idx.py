"""IDX files (the MNIST / Fashion-MNIST distribution format) and folders of them.

SpecEdge's small-image experiments run on MNIST and Fashion-MNIST, which ship as four IDX files.
The format is simple enough to parse here instead of depending on a downloader: two zero
bytes, a dtype code, the number of dimensions, that many big-endian uint32 sizes, then the
big-endian data. Files may be gzip-compressed; compression is detected by the gzip magic
bytes ``1f 8b``, not by the file name. Every malformed file (bad magic, unknown dtype, truncated
data, trailing bytes, corrupt gzip) raises :class:`~specedge.errors.DatasetError` naming it.

A folder is loaded as its official train and test sets; the split rule is in
:mod:`specedge.data.splits`.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from specedge.data.dataset import Dataset, DatasetSplits
from specedge.data.labels import check_labels
from specedge.data.splits import check_seed, split_official
from specedge.errors import DatasetError

__all__ = ["IDX_FILE_STEMS", "find_idx_files", "is_idx_folder", "load_idx_folder", "read_idx"]

GZIP_MAGIC = b"\x1f\x8b"

# IDX dtype code -> big-endian numpy dtype.
_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

#: The four files of an IDX folder, each found plain or with a ``.gz`` suffix.
IDX_FILE_STEMS: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file, plain or gzip-compressed, into a native-endian, writable array."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"cannot read IDX file {path}: {exc.strerror or exc}") from exc
    if data[:2] == GZIP_MAGIC:
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DatasetError(f"corrupt gzip data in IDX file {path}: {exc}") from exc
    return _parse_idx(data, path)


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Decode the bytes of an IDX file; ``path`` only names the file in error messages."""
    if len(data) < 4:
        raise DatasetError(f"{path} is not an IDX file: {len(data)} bytes, shorter than the 4-byte header")
    if data[0] != 0 or data[1] != 0:
        raise DatasetError(f"{path} is not an IDX file: it starts with 0x{data[:4].hex()}, expected 0x0000")
    code, ndim = data[2], data[3]
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _DTYPES)
        raise DatasetError(f"{path}: unknown IDX dtype code 0x{code:02X}; expected one of: {known}")
    if ndim == 0:
        raise DatasetError(f"{path}: IDX header declares 0 dimensions; expected at least 1")
    header_bytes = 4 + 4 * ndim
    if len(data) < header_bytes:
        raise DatasetError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header_bytes} bytes, got {len(data)}"
        )
    dims = struct.unpack(f">{ndim}I", data[4:header_bytes])
    dtype = _DTYPES[code]
    count = math.prod(dims)
    expected_bytes = header_bytes + count * dtype.itemsize
    if len(data) < expected_bytes:
        raise DatasetError(
            f"{path}: truncated IDX data: shape {dims} of {dtype.name} needs {expected_bytes} bytes, got {len(data)}"
        )
    if len(data) > expected_bytes:
        raise DatasetError(
            f"{path}: {len(data) - expected_bytes} unexpected trailing bytes after IDX data of shape {dims}"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header_bytes).reshape(dims)
    return array.astype(dtype.newbyteorder("="))  # copies: native byte order, writable


def _find_file(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` or ``folder/stem.gz``, preferring the uncompressed file; None if neither."""
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def is_idx_folder(folder: Path) -> bool:
    """Whether ``folder`` holds at least one of the four IDX files (so it is meant as one)."""
    return folder.is_dir() and any(_find_file(folder, stem) for stem in IDX_FILE_STEMS.values())


def find_idx_files(folder: Path) -> dict[str, Path]:
    """The four IDX files of ``folder`` keyed as in :data:`IDX_FILE_STEMS`; DatasetError if any is missing."""
    found = {key: _find_file(folder, stem) for key, stem in IDX_FILE_STEMS.items()}
    missing = [IDX_FILE_STEMS[key] for key, path in found.items() if path is None]
    if missing:
        raise DatasetError(f"IDX folder {folder} lacks {', '.join(missing)} (plain or .gz)")
    return {key: path for key, path in found.items() if path is not None}


def _read_split(images_path: Path, labels_path: Path) -> Dataset:
    """One official split: ``(N, H, W)`` uint8 images become ``(N, 1, H, W)``; labels int64."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{images_path}: expected uint8 images of shape (N, H, W); got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise DatasetError(f"{labels_path}: expected integer labels of shape (N,); got {labels.dtype} {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(
            f"{images_path.name} holds {len(images)} images but {labels_path.name} holds {len(labels)} "
            f"labels in {images_path.parent}; the counts must match"
        )
    if len(labels) and labels.min() < 0:
        raise DatasetError(f"{labels_path}: labels must be non-negative; got {labels.min()}")
    return Dataset(images[:, np.newaxis], labels.astype(np.int64))


def load_idx_folder(
    folder: str | os.PathLike[str],
    *,
    name: str | None = None,
    source: str | None = None,
    class_names: tuple[str, ...] | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """Load an IDX folder's official train and test sets and split off validation.

    Args:
        folder: folder holding the four files of :data:`IDX_FILE_STEMS`, plain or ``.gz``.
        name: display name; defaults to the folder name.
        source: recorded source; defaults to the resolved folder path.
        class_names: one name per class; defaults to ``"0"`` .. ``"K-1"`` with ``K`` one past the
            largest label, once the labels pass :func:`~specedge.data.labels.check_labels`.
        seed: seed of the stratified validation draw.
    """
    seed = check_seed(seed)
    folder = Path(folder).resolve()
    files = find_idx_files(folder)
    train = _read_split(files["train_images"], files["train_labels"])
    test = _read_split(files["test_images"], files["test_labels"])
    num_classes = check_labels(
        {str(files["train_labels"]): train.labels, str(files["test_labels"]): test.labels},
        num_classes=None if class_names is None else len(class_names),
    )
    if class_names is None:
        class_names = tuple(str(k) for k in range(num_classes))
    return split_official(
        name=name or folder.name,
        source=source or str(folder),
        class_names=class_names,
        train=train,
        test=test,
        seed=seed,
        extra={"layout": "idx", "files": {key: str(path) for key, path in files.items()}},
    )
