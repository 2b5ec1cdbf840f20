"""Folders of image files: ``root/{train,test}/<class>/<image>``, decoded once and cached.

This is the layout of the shared CIFAR-10 (JPEG) re-encoding and of most hand-made datasets.
Classes are the sorted subfolder names of ``train/``; ``test/`` must have the same ones. Images
(``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, sorted by name within a class) are decoded with Pillow
on a thread pool (Pillow releases the GIL while decoding) and must all have the same size. They
stay one-channel when every image is grayscale (mode ``L`` or ``1``); otherwise all become RGB.

Decoding 60,000 JPEGs takes a while on a small machine, so with a ``cache_dir`` the decoded
arrays are saved as an uncompressed ``.npz`` named by a SHA-256 of the resolved root and every
file's relative name, size and ``mtime_ns``: editing, adding or removing any image gives a new
key. A cache file that cannot be read back is ignored and rebuilt; a cache that cannot be written
is skipped. Both are logged, never fatal. Caches are read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from specedge.data.dataset import Dataset, DatasetSplits
from specedge.data.splits import check_seed, split_official
from specedge.errors import DatasetError

__all__ = ["IMAGE_SUFFIXES", "is_image_folder", "load_image_folder"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
_SUFFIX_TUPLE = tuple(sorted(IMAGE_SUFFIXES))  # str.endswith wants a tuple
_GRAY_MODES = frozenset({"L", "1"})
_CACHE_FORMAT = 1  # bump when the decoded representation changes; it is part of the cache key
_CHUNK = 256  # images per thread-pool task: amortises task overhead, keeps the progress bar live


@dataclass(frozen=True)
class _FileEntry:
    """One image file: its path, its name relative to the root, and the stat fields in the cache key."""

    path: str  # a plain string: building 60,000 Path objects costs about a second
    relative: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _FolderIndex:
    """Every image of a folder dataset, listed in load order, with its label."""

    root: Path
    class_names: tuple[str, ...]
    train: tuple[_FileEntry, ...]
    train_labels: np.ndarray
    test: tuple[_FileEntry, ...]
    test_labels: np.ndarray


def is_image_folder(root: Path) -> bool:
    """Whether ``root`` has both a ``train/`` and a ``test/`` subfolder."""
    return (root / "train").is_dir() and (root / "test").is_dir()


def _class_folders(split_dir: Path) -> list[str]:
    """Sorted names of the visible subfolders of ``split_dir``."""
    try:
        return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise DatasetError(f"cannot list {split_dir}: {exc.strerror or exc}") from exc


def _list_images(root: Path, split: str, class_name: str) -> list[_FileEntry]:
    """Image files of one class folder, sorted by name; other files are ignored."""
    folder = root / split / class_name
    try:
        entries = sorted(
            (e for e in os.scandir(folder) if e.is_file() and e.name.lower().endswith(_SUFFIX_TUPLE)),
            key=lambda e: e.name,
        )
        stats = [e.stat() for e in entries]
    except OSError as exc:
        raise DatasetError(f"cannot list {folder}: {exc.strerror or exc}") from exc
    return [
        _FileEntry(e.path, f"{split}/{class_name}/{e.name}", st.st_size, st.st_mtime_ns)
        for e, st in zip(entries, stats, strict=True)
    ]


def _scan(root: Path) -> _FolderIndex:
    """List classes and files; DatasetError if the class folders of train/ and test/ differ."""
    train_classes = _class_folders(root / "train")
    test_classes = _class_folders(root / "test")
    if not train_classes:
        raise DatasetError(f"{root / 'train'} has no class folders; expected one subfolder per class")
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes)) or "none"
        only_test = sorted(set(test_classes) - set(train_classes)) or "none"
        raise DatasetError(
            f"{root}: train/ and test/ must have the same class folders; only in train/: {only_train}, "
            f"only in test/: {only_test}"
        )
    files: dict[str, list[_FileEntry]] = {"train": [], "test": []}
    labels: dict[str, list[int]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for label, class_name in enumerate(train_classes):
            entries = _list_images(root, split, class_name)
            if split == "train" and not entries:
                suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
                raise DatasetError(f"{root / split / class_name} holds no images; expected files ending in {suffixes}")
            files[split].extend(entries)
            labels[split].extend([label] * len(entries))
    if not files["test"]:
        raise DatasetError(f"{root / 'test'} holds no images in any class folder")
    return _FolderIndex(
        root=root,
        class_names=tuple(train_classes),
        train=tuple(files["train"]),
        train_labels=np.asarray(labels["train"], dtype=np.int64),
        test=tuple(files["test"]),
        test_labels=np.asarray(labels["test"], dtype=np.int64),
    )


def _cache_key(index: _FolderIndex) -> str:
    """SHA-256 over the cache format, the resolved root, and every file's name, size and mtime."""
    digest = hashlib.sha256(f"specedge-image-folder-v{_CACHE_FORMAT}\0{index.root}\0".encode())
    for entry in (*index.train, *index.test):
        digest.update(f"{entry.relative}\0{entry.size}\0{entry.mtime_ns}\n".encode())
    return digest.hexdigest()


def _decode_image(path: str) -> np.ndarray:
    """Decode one file: ``(H, W)`` uint8 if grayscale, else ``(H, W, 3)`` uint8 RGB."""
    try:
        with Image.open(path) as image:
            if image.mode in ("L", "RGB"):  # the common case: no conversion copy
                return np.asarray(image, dtype=np.uint8)
            converted = image.convert("L" if image.mode in _GRAY_MODES else "RGB")
            return np.asarray(converted, dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"cannot decode image {path}: {exc}") from exc


def _decode_chunk(paths: Sequence[str]) -> list[np.ndarray]:
    """Decode a run of files on one worker thread."""
    return [_decode_image(path) for path in paths]


def _decode_all(entries: Sequence[_FileEntry], *, show_progress: bool) -> list[np.ndarray]:
    """Decode every file on a thread pool, in order; the first failure cancels the rest."""
    paths = [entry.path for entry in entries]
    chunks = [paths[i : i + _CHUNK] for i in range(0, len(paths), _CHUNK)]
    decoded: list[np.ndarray] = []
    pool = ThreadPoolExecutor(thread_name_prefix="specedge-decode")
    try:
        with tqdm(total=len(paths), desc="decoding images", unit="img", disable=not show_progress) as bar:
            for arrays in pool.map(_decode_chunk, chunks):
                decoded.extend(arrays)
                bar.update(len(arrays))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return decoded


def _stack(arrays: list[np.ndarray], entries: Sequence[_FileEntry]) -> np.ndarray:
    """Stack decoded images into ``(N, C, H, W)``; C is 1 if all are grayscale, else 3."""
    height, width = arrays[0].shape[:2]
    if len({array.shape[:2] for array in arrays}) > 1:
        array, entry = next((a, e) for a, e in zip(arrays, entries, strict=True) if a.shape[:2] != (height, width))
        raise DatasetError(
            f"image {entry.path} is {array.shape[1]}x{array.shape[0]} but {entries[0].path} is "
            f"{width}x{height}; all images must have the same size"
        )
    if all(array.ndim == 2 for array in arrays):
        return np.stack(arrays)[:, np.newaxis]
    rgb = [np.repeat(a[:, :, np.newaxis], 3, axis=2) if a.ndim == 2 else a for a in arrays]
    return np.ascontiguousarray(np.stack(rgb).transpose(0, 3, 1, 2))


def _decode_index(index: _FolderIndex, *, show_progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode train and test together so both get the same channel count."""
    entries = (*index.train, *index.test)
    images = _stack(_decode_all(entries, show_progress=show_progress), entries)
    n_train = len(index.train)
    # Copies, so the combined array is freed once the train split has been subset out of it.
    return images[:n_train].copy(), images[n_train:].copy()


def _load_cache(path: Path, index: _FolderIndex) -> tuple[np.ndarray, np.ndarray] | None:
    """Cached ``(train_images, test_images)`` if ``path`` holds a valid cache for ``index``, else None."""
    if not path.is_file():
        return None
    try:
        # Opened here, not by np.load, so the file is closed even when the archive is corrupt.
        with path.open("rb") as handle:
            archive = np.load(handle, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            with archive:
                arrays = {key: archive[key] for key in ("train_images", "test_images", "class_names")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("ignoring unreadable image cache %s (%s); rebuilding it", path, exc)
        return None
    train, test = arrays["train_images"], arrays["test_images"]
    if (
        train.dtype != np.uint8
        or test.dtype != np.uint8
        or train.ndim != 4
        or train.shape[1:] != test.shape[1:]
        or (len(train), len(test)) != (len(index.train), len(index.test))
        or tuple(arrays["class_names"].tolist()) != index.class_names
    ):
        log.warning("ignoring image cache %s: its contents do not match %s; rebuilding it", path, index.root)
        return None
    return train, test


def _save_cache(path: Path, index: _FolderIndex, train: np.ndarray, test: np.ndarray) -> None:
    """Write the cache atomically (temporary file, then rename); log and carry on on failure."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as handle:
            np.savez(handle, train_images=train, test_images=test, class_names=np.asarray(index.class_names))
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not write image cache %s (%s); continuing without it", path, exc)
        tmp.unlink(missing_ok=True)


def load_image_folder(
    root: str | os.PathLike[str],
    *,
    name: str | None = None,
    source: str | None = None,
    cache_dir: Path | None = None,
    seed: int = 0,
    show_progress: bool = False,
) -> DatasetSplits:
    """Load ``root/train`` and ``root/test`` class folders, via the decode cache when possible.

    Args:
        root: folder with ``train/`` and ``test/``, each holding one subfolder per class.
        name: display name; defaults to the folder name.
        source: recorded source; defaults to the resolved root path.
        cache_dir: where decoded arrays are cached; None decodes every time.
        seed: seed of the stratified validation draw.
        show_progress: show a tqdm bar while decoding.
    """
    seed = check_seed(seed)
    root = Path(root).resolve()
    index = _scan(root)
    cache_file = None if cache_dir is None else Path(cache_dir) / f"{root.name}-{_cache_key(index)[:24]}.npz"
    cached = None if cache_file is None else _load_cache(cache_file, index)
    if cached is None:
        train_images, test_images = _decode_index(index, show_progress=show_progress)
        if cache_file is not None:
            _save_cache(cache_file, index, train_images, test_images)
    else:
        train_images, test_images = cached
    return split_official(
        name=name or root.name,
        source=source or str(root),
        class_names=index.class_names,
        train=Dataset(train_images, index.train_labels),
        test=Dataset(test_images, index.test_labels),
        seed=seed,
        extra={
            "layout": "image-folder",
            "cache_file": None if cache_file is None else str(cache_file),
            "cache_hit": cached is not None,
        },
    )
