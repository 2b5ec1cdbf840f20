"""Training never fails silently: divergence and chance-level runs restart, then raise; chance models are not saved."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch

from specedge.data import Dataset, load_dataset
from specedge.models import build_classifier
from specedge.training import (
    TrainConfig,
    TrainingError,
    at_chance,
    chance_threshold,
    channel_stats,
    evaluate_logits,
    fit,
    save_evaluated,
    train_new,
)
from specedge.training.trainer import MAX_RESTARTS

TINY = {"width": 0.25}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def test_an_absurd_learning_rate_raises_after_the_restarts(digits):
    with pytest.raises(TrainingError, match="did not learn in 3 attempts") as info:
        train_new("lenet5", digits, TrainConfig(epochs=3, lr=1e4), arch_options=TINY)
    message = str(info.value)
    assert "\n" not in message
    assert "at chance for 10 classes" in message
    assert all(f"at lr {lr:g}" in message for lr in (1e4, 1e3, 1e2))


def test_a_too_high_learning_rate_recovers_at_a_tenth_and_says_so(digits):
    _, result = train_new("lenet5", digits, TrainConfig(epochs=3, lr=0.3), arch_options=TINY)
    assert result.lr == pytest.approx(0.03)
    assert len(result.restarts) == 1 and "at lr 0.3" in result.restarts[0]
    assert result.best_val_accuracy > 0.5
    assert all(h.lr <= 0.03 for h in result.history)  # the history is the kept run's
    manifest_part = result.to_dict()
    assert manifest_part["restarts"] == result.restarts and manifest_part["lr"] == result.lr
    json.dumps(manifest_part)


def test_images_that_carry_no_information_stay_at_chance_and_raise(digits):
    blank = Dataset(np.zeros_like(digits.train.images), digits.train.labels)
    with pytest.raises(TrainingError, match="is at chance for 10 classes") as info:
        train_new("lenet5", dataclasses.replace(digits, train=blank), TrainConfig(epochs=2), arch_options=TINY)
    assert "after 2 epochs at lr 0.002" in str(info.value)  # a shorter run is judged on all its epochs


def test_learning_that_never_reaches_validation_raises_at_the_end(digits):
    rng = np.random.default_rng(0)
    noise = Dataset(digits.val.images, rng.permutation(digits.val.labels))
    with pytest.raises(TrainingError) as info:
        train_new("lenet5", dataclasses.replace(digits, val=noise), TrainConfig(epochs=4), arch_options=TINY)
    # Training was above chance, so the first attempt ran all its epochs instead of stopping at the warm-up.
    first = str(info.value).split("; then ")[0]
    assert re.search(r"validation accuracy .* after 4 epochs at lr 0\.002 \(training accuracy \d+\.\d%\)$", first)


def test_a_learning_rate_too_small_to_move_the_weights_raises(digits):
    # Stuck is declared after the warm-up: 3 epochs and 100 steps, here 6 epochs of 17 steps.
    with pytest.raises(TrainingError, match=r"at chance .* after 6 epochs at lr 1e-09 \(validation loss"):
        train_new("lenet5", digits, TrainConfig(epochs=20, lr=1e-9), arch_options=TINY)


def test_a_non_finite_loss_stops_the_attempt_at_once(digits):
    calls = []

    def nan_loss(logits, labels, images):
        calls.append(1)
        return logits.sum() * float("nan")

    mean, std = channel_stats(digits.train.images)
    model = build_classifier("lenet5", num_classes=10, image_shape=digits.image_shape, mean=mean, std=std, width=0.25)
    with pytest.raises(TrainingError, match=r"training loss became nan at epoch 1 step 1 at lr 0\.002"):
        fit(model, digits, TrainConfig(epochs=5), loss_fn=nan_loss, description="nan")
    assert len(calls) == MAX_RESTARTS + 1  # one step per attempt


def test_save_evaluated_refuses_a_model_at_chance(digits, tmp_path):
    torch.manual_seed(0)
    untrained = build_classifier("lenet5", num_classes=10, image_shape=digits.image_shape, width=0.25)
    with pytest.raises(TrainingError, match=r"refusing to save lenet5\(width=0\.25\)"):
        save_evaluated(tmp_path / "m", untrained, digits, training={})
    assert not (tmp_path / "m").exists()


def test_chance_is_judged_per_class_so_a_majority_guess_is_caught():
    labels = np.array([0] * 90 + [1] * 10)
    majority = np.tile([5.0, 0.0], (100, 1))  # always class 0: 90% accurate, per-class mean 50%
    reason = at_chance(evaluate_logits(majority, labels, 2), 2)
    assert reason is not None and "90.0%" in reason and "per-class mean 50.0%" in reason
    perfect = np.eye(2)[labels] * 5
    assert at_chance(evaluate_logits(perfect, labels, 2), 2) is None
    assert chance_threshold(10) == pytest.approx(0.15)
    assert chance_threshold(2) == pytest.approx(0.55)
    assert chance_threshold(100) == pytest.approx(0.015)
