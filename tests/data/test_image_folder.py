"""Image folders on tiny synthetic PNG/BMP trees: classes, pixels, modes, the decode cache, errors."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from specedge.data import image_folder, load_dataset, load_image_folder
from specedge.data.splits import holdout_indices
from specedge.errors import DatasetError

CLASSES = ("cat", "ant", "bee")  # written unsorted; loaded as ant, bee, cat
HEIGHT, WIDTH = 4, 5


def _pixels(label: int, index: int, *, rgb: bool) -> np.ndarray:
    """A distinct, orientation-revealing image for each (class, index)."""
    ramp = np.arange(HEIGHT * WIDTH).reshape(HEIGHT, WIDTH)
    gray = ((label * 60 + index * 7 + ramp) % 256).astype(np.uint8)
    return np.stack([gray, 255 - gray, gray // 2], axis=-1) if rgb else gray


def make_folder(
    root: Path, *, n_train: int = 5, n_test: int = 2, rgb: tuple[str, str, int] | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write ``root/{train,test}/<class>/NNN.png`` (one .bmp per class) and return what should load.

    ``rgb=(split, class, index)`` writes that one image as RGB; every image then loads as RGB.
    Returns ``{split: (images (N, C, H, W), labels)}`` in load order.
    """
    expected: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    for split, count in (("train", n_train), ("test", n_test)):
        for label, class_name in enumerate(sorted(CLASSES)):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for index in range(count):
                is_rgb = rgb == (split, class_name, index)
                array = _pixels(label, index, rgb=is_rgb)
                suffix = ".bmp" if index == 1 else ".png"
                Image.fromarray(array).save(folder / f"{index:03d}{suffix}")
                expected[split][0].append(array)
                expected[split][1].append(label)
    as_rgb = rgb is not None
    result = {}
    for split, (arrays, labels) in expected.items():
        if as_rgb:
            stacked = np.stack([a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for a in arrays])
            images = stacked.transpose(0, 3, 1, 2)
        else:
            images = np.stack(arrays)[:, None]
        result[split] = (images, np.array(labels, dtype=np.int64))
    return result


def test_grayscale_folder_loads_classes_pixels_and_split(tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "toy")
    (tmp_path / "toy" / "train" / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "toy" / "train" / ".hidden").mkdir()
    (tmp_path / "toy" / "test" / ".hidden").mkdir()
    splits = load_image_folder(tmp_path / "toy", seed=2)
    assert splits.name == "toy"
    assert splits.class_names == ("ant", "bee", "cat")
    assert splits.image_shape == (1, HEIGHT, WIDTH)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (12, 3, 6)
    np.testing.assert_array_equal(splits.test.images, expected["test"][0])
    np.testing.assert_array_equal(splits.test.labels, expected["test"][1])
    train_idx, val_idx = holdout_indices(expected["train"][1], n_test=6, seed=2)
    np.testing.assert_array_equal(splits.train.images, expected["train"][0][train_idx])
    np.testing.assert_array_equal(splits.val.images, expected["train"][0][val_idx])
    np.testing.assert_array_equal(splits.val.labels, expected["train"][1][val_idx])
    assert splits.val.class_counts(3).tolist() == [1, 1, 1]
    assert splits.extra["cache_hit"] is False
    assert splits.extra["cache_file"] is None


def test_one_rgb_image_makes_everything_rgb(tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "toy", rgb=("test", "bee", 0))
    splits = load_dataset(tmp_path / "toy")
    assert splits.image_shape == (3, HEIGHT, WIDTH)
    np.testing.assert_array_equal(splits.test.images, expected["test"][0])
    gray_item = splits.train.images[0]
    np.testing.assert_array_equal(gray_item[0], gray_item[1])  # grayscale replicated into R, G, B


def test_cache_is_written_then_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_folder(tmp_path / "toy")
    cache_dir = tmp_path / "cache"
    first = load_image_folder(tmp_path / "toy", cache_dir=cache_dir)
    assert first.extra["cache_hit"] is False
    assert Path(first.extra["cache_file"]).is_file()
    assert Path(first.extra["cache_file"]).parent == cache_dir

    def refuse(path: Path) -> np.ndarray:
        raise AssertionError(f"decoded {path} although the cache is valid")

    monkeypatch.setattr(image_folder, "_decode_image", refuse)
    second = load_image_folder(tmp_path / "toy", cache_dir=cache_dir)
    assert second.extra["cache_hit"] is True
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(first, part).images, getattr(second, part).images)
        np.testing.assert_array_equal(getattr(first, part).labels, getattr(second, part).labels)


def test_changed_file_changes_the_cache_key(tmp_path: Path) -> None:
    make_folder(tmp_path / "toy")
    cache_dir = tmp_path / "cache"
    first = load_image_folder(tmp_path / "toy", cache_dir=cache_dir)
    changed = tmp_path / "toy" / "test" / "ant" / "000.png"
    Image.fromarray(np.zeros((HEIGHT, WIDTH), dtype=np.uint8)).save(changed)
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    second = load_image_folder(tmp_path / "toy", cache_dir=cache_dir)
    assert second.extra["cache_hit"] is False
    assert second.extra["cache_file"] != first.extra["cache_file"]
    assert not second.test.images[0].any()


def test_corrupt_cache_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    expected = make_folder(tmp_path / "toy")
    cache_dir = tmp_path / "cache"
    cache_file = Path(load_image_folder(tmp_path / "toy", cache_dir=cache_dir).extra["cache_file"])
    cache_file.write_bytes(b"PK\x03\x04 this is no longer a zip archive")
    with caplog.at_level(logging.WARNING, logger="specedge.data.image_folder"):
        rebuilt = load_image_folder(tmp_path / "toy", cache_dir=cache_dir)
    assert rebuilt.extra["cache_hit"] is False
    assert "ignoring unreadable image cache" in caplog.text
    np.testing.assert_array_equal(rebuilt.test.images, expected["test"][0])
    assert load_image_folder(tmp_path / "toy", cache_dir=cache_dir).extra["cache_hit"] is True


def test_cache_with_wrong_contents_is_rebuilt(tmp_path: Path) -> None:
    expected = make_folder(tmp_path / "toy")
    cache_dir = tmp_path / "cache"
    cache_file = Path(load_image_folder(tmp_path / "toy", cache_dir=cache_dir).extra["cache_file"])
    tiny = np.zeros((1, 1, 1, 1), np.uint8)
    np.savez(cache_file, train_images=tiny, test_images=tiny, class_names=np.array(["x"]))
    rebuilt = load_image_folder(tmp_path / "toy", cache_dir=cache_dir)
    assert rebuilt.extra["cache_hit"] is False
    np.testing.assert_array_equal(rebuilt.test.images, expected["test"][0])


def test_undecodable_file_is_named(tmp_path: Path) -> None:
    make_folder(tmp_path / "toy")
    broken = tmp_path / "toy" / "train" / "bee" / "003.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n but then nothing useful")
    with pytest.raises(DatasetError, match=re.escape(f"cannot decode image {broken}")):
        load_image_folder(tmp_path / "toy")


def test_mismatched_class_folders(tmp_path: Path) -> None:
    make_folder(tmp_path / "toy")
    (tmp_path / "toy" / "test" / "cat").rename(tmp_path / "toy" / "test" / "dog")
    message = "must have the same class folders; only in train/: ['cat'], only in test/: ['dog']"
    with pytest.raises(DatasetError, match=re.escape(message)):
        load_image_folder(tmp_path / "toy")


def test_images_of_different_sizes(tmp_path: Path) -> None:
    make_folder(tmp_path / "toy")
    odd = tmp_path / "toy" / "test" / "cat" / "001.bmp"
    Image.fromarray(np.zeros((HEIGHT + 1, WIDTH), dtype=np.uint8)).save(odd)
    with pytest.raises(DatasetError, match=re.escape(f"image {odd} is {WIDTH}x{HEIGHT + 1} but")):
        load_image_folder(tmp_path / "toy")


def test_class_folder_without_images(tmp_path: Path) -> None:
    make_folder(tmp_path / "toy")
    for file in (tmp_path / "toy" / "train" / "bee").iterdir():
        file.unlink()
    with pytest.raises(DatasetError, match=r"bee holds no images; expected files ending in \.bmp, \.jpeg"):
        load_image_folder(tmp_path / "toy")


def test_progress_bar_when_asked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_folder(tmp_path / "toy")
    load_image_folder(tmp_path / "toy", show_progress=True)
    assert "decoding images" in capsys.readouterr().err
