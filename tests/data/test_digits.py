"""The embedded scikit-learn digits: pixels, the 60/20/20 split, determinism."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits as sklearn_load_digits

from specedge.data import load_dataset, load_digits
from specedge.data.splits import three_way_indices


def test_digits_shapes_names_and_sizes() -> None:
    splits = load_dataset("digits")
    assert splits.name == "digits (scikit-learn)"
    assert splits.source == "digits"
    assert splits.class_names == tuple(str(k) for k in range(10))
    assert splits.image_shape == (1, 8, 8)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1079, 359, 359)
    assert splits.train.images.dtype == np.uint8
    assert "60/20/20" in splits.split_rule
    for part in (splits.train, splits.val, splits.test):
        # Stratified: every class within one item of its 60/20/20 share.
        share = len(part) / 1797
        assert np.all(np.abs(part.class_counts(10) - np.bincount(sklearn_load_digits().target) * share) < 1.5)


def test_digits_pixels_rescaled_and_partitioned() -> None:
    bunch = sklearn_load_digits()
    expected = np.rint(bunch.images * 255 / 16).astype(np.uint8)
    assert expected.max() == 255
    splits = load_digits(seed=3)
    train_idx, val_idx, test_idx = three_way_indices(bunch.target, seed=3)
    everything = np.concatenate([train_idx, val_idx, test_idx])
    assert len(np.unique(everything)) == 1797  # disjoint and covering
    for part, idx in ((splits.train, train_idx), (splits.val, val_idx), (splits.test, test_idx)):
        np.testing.assert_array_equal(part.images[:, 0], expected[idx])
        np.testing.assert_array_equal(part.labels, bunch.target[idx])


def test_digits_deterministic_per_seed() -> None:
    first, again, other = load_digits(seed=0), load_digits(seed=0), load_digits(seed=1)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, part).images, getattr(again, part).images)
        np.testing.assert_array_equal(getattr(first, part).labels, getattr(again, part).labels)
    assert not np.array_equal(first.test.images, other.test.images)
