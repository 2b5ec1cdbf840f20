"""The scikit-learn 8x8 handwritten digits: the dataset that needs no files.

``sklearn.datasets.load_digits`` ships inside scikit-learn, so demos, smoke tests and CI can run
the whole SpecEdge pipeline without a data folder. Its 1,797 images hold values 0..16; they are
rescaled to the uint8 pixels every other loader produces (``round(v * 255 / 16)``). Digits has no
official test set, so it is split 60/20/20, stratified and seeded (:mod:`specedge.data.splits`).
"""

from __future__ import annotations

import numpy as np

from specedge.data.dataset import Dataset, DatasetSplits
from specedge.data.splits import check_seed, split_three_way

__all__ = ["DIGITS_DISPLAY_NAME", "load_digits"]

DIGITS_DISPLAY_NAME = "digits (scikit-learn)"
_MAX_VALUE = 16  # load_digits counts set pixels in 4x4 blocks of a 32x32 bitmap


def load_digits(*, seed: int = 0) -> DatasetSplits:
    """The 1,797 digits as ``(N, 1, 8, 8)`` uint8, split 60/20/20 train/val/test with ``seed``."""
    seed = check_seed(seed)
    # Imported here: sklearn.datasets costs most of a second and only this loader needs it.
    from sklearn.datasets import load_digits as sklearn_load_digits  # noqa: PLC0415

    bunch = sklearn_load_digits()
    values = np.asarray(bunch.images, dtype=np.float64)  # (1797, 8, 8), 0..16
    images = np.rint(values * 255 / _MAX_VALUE).astype(np.uint8)[:, np.newaxis]
    labels = np.asarray(bunch.target, dtype=np.int64)
    return split_three_way(
        name=DIGITS_DISPLAY_NAME,
        source="digits",
        class_names=tuple(str(k) for k in range(10)),
        data=Dataset(images, labels),
        seed=seed,
        extra={"layout": "embedded"},
    )
