import numpy as np
import pytest
import torch

from specedge.data import load_dataset
from specedge.errors import ConfigError
from specedge.models import build_classifier
from specedge.training import TrainConfig, channel_stats, evaluate, fit
from specedge.training.trainer import _augment


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _model(splits, seed=0):
    torch.manual_seed(seed)
    mean, std = channel_stats(splits.train.images)
    return build_classifier("lenet5", num_classes=10, image_shape=splits.image_shape, mean=mean, std=std, width=0.25)


def test_training_learns_and_keeps_the_best_validation_epoch(digits):
    model = _model(digits)
    result = fit(model, digits, TrainConfig(epochs=6, lr=5e-3, patience=6))
    assert result.best_val_accuracy > 0.8  # ten classes: chance is 0.1
    assert result.best_val_accuracy == max(h.val_accuracy for h in result.history)
    # The returned model holds the best epoch's weights, not the last epoch's.
    assert evaluate(model, digits.val, num_classes=10).accuracy == pytest.approx(result.best_val_accuracy)
    assert not model.training


def test_training_is_deterministic_for_a_seed(digits):
    config = TrainConfig(epochs=2, augment="shift")
    a, b = _model(digits), _model(digits)
    fit(a, digits, config)
    fit(b, digits, config)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_early_stopping_stops_when_validation_stalls(digits):
    model = _model(digits)
    result = fit(model, digits, TrainConfig(epochs=40, lr=5e-3, patience=2))
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2 < 40


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("epochs", 0),
        ("batch_size", 0),
        ("lr", -1.0),
        ("patience", 0),
        ("augment", "rotate"),
        ("label_smoothing", 1.0),
    ],
)
def test_bad_training_options_are_refused(option, value):
    with pytest.raises(ConfigError, match=option):
        TrainConfig(**{option: value})


def test_shift_augmentation_only_translates(rng):
    images = torch.from_numpy(rng.integers(1, 256, (16, 2, 8, 8), dtype=np.uint8))
    out = _augment(images, torch.Generator().manual_seed(0), flip=False)
    assert out.dtype == torch.uint8 and out.shape == images.shape
    pad = 1  # 8 / 8
    for original, shifted in zip(images.numpy(), out.numpy(), strict=True):
        padded = np.pad(original, ((0, 0), (pad, pad), (pad, pad)))
        crops = [padded[:, dy : dy + 8, dx : dx + 8] for dy in range(3) for dx in range(3)]
        assert any(np.array_equal(shifted, crop) for crop in crops)


def test_flip_augmentation_mirrors_some_images(rng):
    images = torch.from_numpy(rng.integers(1, 256, (64, 1, 32, 32), dtype=np.uint8))
    out = _augment(images, torch.Generator().manual_seed(1), flip=True).numpy()
    pad = 4
    mirrored = 0
    for original, aug in zip(images.numpy(), out, strict=True):
        padded = np.pad(original, ((0, 0), (pad, pad), (pad, pad)))
        crops = [padded[:, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        if not any(np.array_equal(aug, c) for c in crops):
            assert any(np.array_equal(aug, c[:, :, ::-1]) for c in crops)
            mirrored += 1
    assert 10 < mirrored < 54


def test_channel_stats_match_numpy(rng):
    images = rng.integers(0, 256, (10, 3, 4, 4), dtype=np.uint8)
    mean, std = channel_stats(images)
    x = images / 255.0
    np.testing.assert_allclose(mean, x.mean(axis=(0, 2, 3)))
    np.testing.assert_allclose(std, x.std(axis=(0, 2, 3)))
    constant = np.zeros((2, 1, 3, 3), dtype=np.uint8)
    assert channel_stats(constant)[1] == (1e-3,)
