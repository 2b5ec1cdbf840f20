"""Datasets for SpecEdge experiments, loaded into memory as uint8 images with fixed splits.

Speculative inference is judged on held-out data, and its misspeculation detector and escalation
threshold are calibrated on a validation set that must never touch the test set. This package
gives every experiment the same three splits from one call::

    splits = load_dataset("mnist", data_root=Path("/data"), seed=0)

Accepted inputs (see :func:`list_datasets`): the names ``digits`` (embedded in scikit-learn),
``mnist``, ``fashion-mnist`` and ``cifar10-jpeg`` (read from their folder under ``data_root``),
or a path to an IDX folder, an image folder with ``train/`` and ``test/`` class folders, or a
Keras-style ``.npz`` file. The split rules live in :mod:`specedge.data.splits`: sources with an
official test set keep it untouched and draw a stratified validation set of
``min(len(test), len(train) // 5)`` items from the official training set (the SIEVE thesis
validates on a test-sized sample of the training data); digits is split 60/20/20.

Module map: ``catalog`` (names and path detection), ``splits`` (split math), ``idx``,
``image_folder``, ``npz`` and ``digits`` (one layout each), ``dataset`` (the types).
"""

from __future__ import annotations

from specedge.data.catalog import dataset_folder, list_datasets, load_dataset
from specedge.data.dataset import Dataset, DatasetSplits
from specedge.data.digits import load_digits
from specedge.data.idx import load_idx_folder, read_idx
from specedge.data.image_folder import load_image_folder
from specedge.data.npz import load_npz

__all__ = [
    "Dataset",
    "DatasetSplits",
    "dataset_folder",
    "list_datasets",
    "load_dataset",
    "load_digits",
    "load_idx_folder",
    "load_image_folder",
    "load_npz",
    "read_idx",
]
