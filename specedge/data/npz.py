"""Keras-style ``.npz`` archives: ``x_train``, ``y_train``, ``x_test``, ``y_test``.

The lowest-effort way to bring your own dataset: ``np.savez("mine.npz", x_train=..., ...)``
with the arrays ``keras.datasets.*.load_data()`` returns. Images are ``(N, H, W)`` or
channels-last ``(N, H, W, C)`` with ``C`` in 1, 3 or 4, as uint8 or as floats in ``[0, 1]``
(scaled by 255 and rounded); labels are non-negative integers, ``(N,)`` or ``(N, 1)``. An
optional ``class_names`` string array names the classes. The archive is opened with
``allow_pickle=False``: object arrays are refused, never unpickled. The split rule is in
:mod:`specedge.data.splits`.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from specedge.data.dataset import Dataset, DatasetSplits
from specedge.data.labels import check_labels
from specedge.data.splits import check_seed, split_official
from specedge.errors import DatasetError

__all__ = ["NPZ_KEYS", "load_npz"]

#: Arrays an archive must hold.
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
_CHANNELS = (1, 3, 4)


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The required arrays, plus ``class_names`` when present, read without unpickling."""
    try:
        # Opened here, not by np.load, so the file is closed even when the archive is corrupt.
        with path.open("rb") as handle:
            return _read_archive(handle, path)
    except ValueError as exc:  # neither .npz nor .npy: numpy would only try to unpickle it, and refuses
        raise DatasetError(
            f"{path} is not an .npz archive; expected a zip of .npy arrays as numpy.savez writes"
        ) from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"cannot read .npz archive {path}: {exc}") from exc


def _read_archive(handle: BinaryIO, path: Path) -> dict[str, np.ndarray]:
    """The arrays of an open archive; see :func:`_read_arrays`."""
    loaded = np.load(handle, allow_pickle=False)
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DatasetError(f"{path} holds a single .npy array; expected an .npz archive with {', '.join(NPZ_KEYS)}")
    with loaded as archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise DatasetError(
                f"{path} lacks {', '.join(missing)}; it holds {', '.join(archive.files) or 'no arrays'}, "
                f"expected {', '.join(NPZ_KEYS)} (optional: class_names)"
            )
        wanted = [*NPZ_KEYS, *(["class_names"] if "class_names" in archive.files else [])]
        return {key: _read_member(archive, key, path) for key in wanted}


def _read_member(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """One array of the archive; object arrays and corrupt members raise DatasetError."""
    try:
        return archive[key]
    except ValueError as exc:
        if "pickle" in str(exc).lower():  # numpy refuses to unpickle an object array
            raise DatasetError(
                f"{path}: array {key!r} is an object array, which would need unpickling; "
                "save plain numeric or string arrays instead"
            ) from exc
        raise DatasetError(f"{path}: array {key!r} is corrupt: {exc}") from exc
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DatasetError(f"{path}: array {key!r} is corrupt: {exc}") from exc


def _images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """``(N, H, W)`` or ``(N, H, W, C)`` uint8 / float-in-[0, 1] images as ``(N, C, H, W)`` uint8."""
    if x.ndim == 3:
        x = x[..., np.newaxis]
    if x.ndim != 4 or x.shape[-1] not in _CHANNELS:
        raise DatasetError(
            f"{path}: {key} has shape {x.shape}; expected (N, H, W) or channels-last (N, H, W, C) "
            f"with C in {', '.join(map(str, _CHANNELS))}"
        )
    if x.dtype == np.uint8:
        pixels = x
    elif x.dtype.kind == "f":
        if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
            raise DatasetError(
                f"{path}: float {key} must lie in [0, 1]; got values in [{np.nanmin(x)}, {np.nanmax(x)}]"
                + ("" if np.isfinite(x).all() else " and non-finite values")
            )
        pixels = np.rint(x * 255.0).astype(np.uint8)
    else:
        raise DatasetError(f"{path}: {key} has dtype {x.dtype}; expected uint8 or float in [0, 1]")
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def _labels(y: np.ndarray, key: str, path: Path, n_images: int) -> np.ndarray:
    """``(N,)`` or ``(N, 1)`` non-negative integer labels as ``(N,)`` int64."""
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DatasetError(f"{path}: {key} is {y.dtype} {y.shape}; expected integer labels of shape (N,) or (N, 1)")
    if len(y) != n_images:
        raise DatasetError(f"{path}: {key} holds {len(y)} labels but its images hold {n_images}; the counts must match")
    if len(y) and y.min() < 0:
        raise DatasetError(f"{path}: {key} labels must be non-negative; got {y.min()}")
    return y.astype(np.int64)


def _class_names(arrays: dict[str, np.ndarray], path: Path, labels: dict[str, np.ndarray]) -> tuple[str, ...]:
    """The archive's ``class_names``, or ``"0"`` .. ``"K-1"`` with ``K`` one past the largest label.

    Either way the labels are checked against the class count (:func:`~specedge.data.labels.check_labels`).
    """
    sources = {f"{path}: {key}": y for key, y in labels.items()}
    names = arrays.get("class_names")
    if names is None:
        hint = " If those labels are real classes, declare every class with a class_names array."
        num_classes = check_labels(sources, num_classes=None, hint=hint)
        return tuple(str(k) for k in range(num_classes))
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise DatasetError(f"{path}: class_names is {names.dtype} {names.shape}; expected a 1-D string array")
    check_labels(sources, num_classes=len(names))
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())


def load_npz(
    path: str | os.PathLike[str],
    *,
    name: str | None = None,
    source: str | None = None,
    seed: int = 0,
) -> DatasetSplits:
    """Load a Keras-style archive's official train and test sets and split off validation.

    Args:
        path: the ``.npz`` file.
        name: display name; defaults to the file stem.
        source: recorded source; defaults to the resolved file path.
        seed: seed of the stratified validation draw.
    """
    seed = check_seed(seed)
    path = Path(path).resolve()
    arrays = _read_arrays(path)
    x_train = _images(arrays["x_train"], "x_train", path)
    x_test = _images(arrays["x_test"], "x_test", path)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(
            f"{path}: x_train images are {x_train.shape[1:]} (C, H, W) but x_test images are {x_test.shape[1:]}"
        )
    y_train = _labels(arrays["y_train"], "y_train", path, len(x_train))
    y_test = _labels(arrays["y_test"], "y_test", path, len(x_test))
    return split_official(
        name=name or path.stem,
        source=source or str(path),
        class_names=_class_names(arrays, path, {"y_train": y_train, "y_test": y_test}),
        train=Dataset(x_train, y_train),
        test=Dataset(x_test, y_test),
        seed=seed,
        extra={"layout": "npz"},
    )
