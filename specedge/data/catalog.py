"""Turn a dataset name or path into loaded splits: the one entry point the CLI calls.

Names are a small fixed catalog: ``digits`` is embedded in scikit-learn and needs no files;
``mnist``, ``fashion-mnist`` and ``cifar10-jpeg`` are read from their folder under a data root
the caller passes in (the CLI's ``--data-root``; nothing here reads environment variables).
Anything else is taken as a path and its layout is detected: a folder of IDX files, a folder
with ``train/`` and ``test/`` class folders, or a Keras-style ``.npz`` file. Names win over
same-named relative folders; write ``./mnist`` to load a folder called ``mnist``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from specedge.data.dataset import DatasetSplits
from specedge.data.digits import DIGITS_DISPLAY_NAME, load_digits
from specedge.data.idx import IDX_FILE_STEMS, is_idx_folder, load_idx_folder
from specedge.data.image_folder import is_image_folder, load_image_folder
from specedge.data.npz import load_npz
from specedge.data.splits import check_seed
from specedge.errors import DatasetError

__all__ = ["ACCEPTED_LAYOUTS", "FASHION_MNIST_CLASSES", "dataset_folder", "list_datasets", "load_dataset"]

ACCEPTED_LAYOUTS = "an IDX folder, an image folder with train/ and test/, or a .npz file"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


@dataclass(frozen=True)
class _Entry:
    """A named dataset: how to show it, and the folder under the data root it is read from."""

    display_name: str
    description: str
    layout: Literal["embedded", "idx", "image-folder"]
    folder: str | None  # under the data root; None for the embedded dataset
    class_names: tuple[str, ...] | None = None


_CATALOG: dict[str, _Entry] = {
    "cifar10-jpeg": _Entry(
        display_name="CIFAR-10 (JPEG)",
        description="CIFAR-10 re-encoded as JPEG: 32x32 RGB, 10 classes, 50,000 train + 10,000 test "
        "(DATA_ROOT/cifar-10-jpeg); close to, not comparable with, published CIFAR-10 results",
        layout="image-folder",
        folder="cifar-10-jpeg",
    ),
    "digits": _Entry(
        display_name=DIGITS_DISPLAY_NAME,
        description="scikit-learn handwritten digits: 8x8 grayscale, 10 classes, 1,797 images "
        "split 60/20/20; embedded, needs no files",
        layout="embedded",
        folder=None,
    ),
    "fashion-mnist": _Entry(
        display_name="Fashion-MNIST",
        description="Zalando clothing: 28x28 grayscale, 10 classes, 60,000 train + 10,000 test "
        "(IDX files in DATA_ROOT/fashion-mnist)",
        layout="idx",
        folder="fashion-mnist",
        class_names=FASHION_MNIST_CLASSES,
    ),
    "mnist": _Entry(
        display_name="MNIST",
        description="handwritten digits: 28x28 grayscale, 10 classes, 60,000 train + 10,000 test "
        "(IDX files in DATA_ROOT/mnist)",
        layout="idx",
        folder="mnist",
    ),
}


def list_datasets() -> dict[str, str]:
    """Every dataset name with a one-line description, sorted by name."""
    return {name: entry.description for name, entry in sorted(_CATALOG.items())}


def dataset_folder(name: str) -> str | None:
    """The folder under the data root that the catalog name ``name`` is read from (None if embedded)."""
    if name not in _CATALOG:
        raise DatasetError(f"unknown dataset {name!r}; expected one of: {', '.join(sorted(_CATALOG))}")
    return _CATALOG[name].folder


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    data_root: Path | None = None,
    cache_dir: Path | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> DatasetSplits:
    """Load a dataset by catalog name or by path, split into train, validation and test.

    Args:
        name_or_path: a name from :func:`list_datasets`, or a path to an IDX folder, an image
            folder with ``train/`` and ``test/``, or a ``.npz`` file.
        data_root: folder holding ``mnist/``, ``fashion-mnist/`` and ``cifar-10-jpeg/``; needed
            only for those names.
        cache_dir: where image folders cache their decoded arrays; None decodes every time.
        seed: seed of the stratified validation (and, for digits, test) draw.
        show_progress: show a progress bar while decoding image folders.

    Raises:
        DatasetError: the name is unknown, the path or folder is missing or has no known
            layout, or a file in it is malformed.
        ConfigError: ``seed`` is not a non-negative integer.
    """
    seed = check_seed(seed)
    if isinstance(name_or_path, str) and name_or_path in _CATALOG:
        return _load_named(
            name_or_path, data_root=data_root, cache_dir=cache_dir, seed=seed, show_progress=show_progress
        )
    path = Path(name_or_path).expanduser()
    if not path.exists():
        raise DatasetError(_not_found_message(name_or_path))
    return _load_path(path, cache_dir=cache_dir, seed=seed, show_progress=show_progress)


def _not_found_message(name_or_path: str | os.PathLike[str]) -> str:
    """Say whether the argument was read as an unknown name or a missing path, and what is accepted."""
    names = ", ".join(sorted(_CATALOG))
    text = os.fspath(name_or_path)
    # A bare word is most likely a mistyped name; anything path-like (or a PathLike) is a path.
    bare_word = not {os.sep, "/"} & set(text) and not Path(text).suffix
    looks_like_name = isinstance(name_or_path, str) and bare_word
    if looks_like_name:
        return f"unknown dataset {text!r}; expected one of: {names}, or a path to {ACCEPTED_LAYOUTS}"
    return f"dataset path {text!r} does not exist; expected a path to {ACCEPTED_LAYOUTS}, or one of: {names}"


def _load_named(
    name: str, *, data_root: Path | None, cache_dir: Path | None, seed: int, show_progress: bool
) -> DatasetSplits:
    """Load a catalog dataset from its folder under ``data_root`` (or from scikit-learn)."""
    entry = _CATALOG[name]
    if entry.layout == "embedded" or entry.folder is None:
        return load_digits(seed=seed)
    if data_root is None:
        raise DatasetError(
            f"dataset {name!r} is read from the folder {entry.folder}/ under a data root, but none was "
            f"given; pass --data-root DIR where DIR holds {entry.folder}/"
        )
    folder = Path(data_root).expanduser() / entry.folder
    if not folder.is_dir():
        raise DatasetError(
            f"dataset {name!r}: folder {folder} not found; pass --data-root DIR where DIR holds {entry.folder}/"
        )
    if entry.layout == "image-folder":
        return load_image_folder(
            folder,
            name=entry.display_name,
            source=name,
            cache_dir=cache_dir,
            seed=seed,
            show_progress=show_progress,
        )
    return load_idx_folder(folder, name=entry.display_name, source=name, class_names=entry.class_names, seed=seed)


def _load_path(path: Path, *, cache_dir: Path | None, seed: int, show_progress: bool) -> DatasetSplits:
    """Detect the layout at ``path`` and load it; DatasetError listing the layouts if none fits."""
    resolved = path.resolve()
    if resolved.is_file() and resolved.suffix.lower() == ".npz":
        return load_npz(resolved, seed=seed)
    if is_idx_folder(resolved):
        return load_idx_folder(resolved, seed=seed)
    if is_image_folder(resolved):
        return load_image_folder(resolved, cache_dir=cache_dir, seed=seed, show_progress=show_progress)
    idx_names = ", ".join(f"{stem}[.gz]" for stem in IDX_FILE_STEMS.values())
    raise DatasetError(
        f"{resolved} has no known dataset layout; expected a folder with the IDX files {idx_names}, "
        "a folder with train/ and test/ each holding one folder per class of images, or a .npz file"
    )
