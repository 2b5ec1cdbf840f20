"""CIFAR-10 (JPEG) from ../shared, decoded in full once, then read back from the cache.

The cold load decodes all 60,000 JPEGs (about 17 s on the 2-core CI machine); the rest of
the module reuses it. Expected statistics are those documented in shared/datasets/SOURCES.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from specedge.data import DatasetSplits, image_folder, load_dataset
from tests.conftest import shared_path

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cifar-cache")


@pytest.fixture(scope="module")
def data_root() -> Path:
    return shared_path("datasets", "cifar-10-jpeg").parent


@pytest.fixture(scope="module")
def cold(data_root: Path, cache_dir: Path) -> DatasetSplits:
    return load_dataset("cifar10-jpeg", data_root=data_root, cache_dir=cache_dir)


def test_cifar_sizes_classes_and_pixels(cold: DatasetSplits) -> None:
    assert cold.name == "CIFAR-10 (JPEG)"
    assert cold.source == "cifar10-jpeg"
    assert cold.class_names == CLASSES
    assert cold.image_shape == (3, 32, 32)
    assert (len(cold.train), len(cold.val), len(cold.test)) == (40000, 10000, 10000)
    assert cold.train.class_counts(10).tolist() == [4000] * 10
    assert cold.val.class_counts(10).tolist() == [1000] * 10
    assert cold.test.class_counts(10).tolist() == [1000] * 10
    official_train = np.concatenate([cold.train.images, cold.val.images])
    channel_mean = official_train.transpose(1, 0, 2, 3).reshape(3, -1).mean(axis=1) / 255
    # Within JPEG-decoder differences of the documented means; a channel-order bug would be off by ~0.045.
    np.testing.assert_allclose(channel_mean, [0.4913, 0.4821, 0.4465], atol=2e-3)
    assert cold.extra["cache_hit"] is False


def test_cifar_second_load_comes_from_cache(
    cold: DatasetSplits, data_root: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: Path) -> np.ndarray:
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(image_folder, "_decode_image", refuse)
    warm = load_dataset("cifar10-jpeg", data_root=data_root, cache_dir=cache_dir)
    assert warm.extra["cache_hit"] is True
    assert warm.extra["cache_file"] == cold.extra["cache_file"]
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(warm, part).images, getattr(cold, part).images)
        np.testing.assert_array_equal(getattr(warm, part).labels, getattr(cold, part).labels)
