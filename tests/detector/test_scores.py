"""Scores keep the probability-scale order, stay finite and distinct where softmax saturates."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from specedge.detector import TemperatureScaler, expected_calibration_error, probability_from_score, score_logits
from specedge.errors import ConfigError


def _probability_scale(name: str, logits: np.ndarray) -> np.ndarray:
    p = np.sort(softmax(logits.astype(np.float64), axis=1), axis=1)[:, ::-1]
    if name == "max_softmax":
        return p[:, 0]
    if name == "margin":
        return p[:, 0] - p[:, 1]
    entropy = -(p * np.log(p)).sum(axis=1)
    return 1 - entropy / np.log(p.shape[1])


@pytest.mark.parametrize("name", ["max_softmax", "margin", "entropy"])
def test_scores_map_back_to_their_probability_scale(name):
    logits = np.random.default_rng(0).normal(0, 3, (500, 10))
    scores = score_logits(logits, name)
    np.testing.assert_allclose(probability_from_score(name, scores), _probability_scale(name, logits), atol=1e-9)


@pytest.mark.parametrize("name", ["max_softmax", "margin", "entropy"])
def test_scores_separate_inputs_whose_softmax_rounds_to_one(name):
    logits = np.zeros((3, 10))
    logits[:, 0] = [40.0, 50.0, 60.0]  # float64 softmax gives p1 == 1.0 for all three
    scores = score_logits(logits, name)
    assert np.isfinite(scores).all()
    assert scores[0] < scores[1] < scores[2]


def test_a_tie_at_the_top_is_the_least_confident_margin_not_a_nan():
    scores = score_logits(np.array([[2.0, 2.0, 0.0], [3.0, 1.0, 0.0]]), "margin")
    assert np.isfinite(scores).all() and scores[0] < scores[1]


def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 4000)
    z = rng.normal(0, 1, (4000, 10))
    z[np.arange(4000), labels] += 2.0
    # z_y ~ N(2, 1) and the others ~ N(0, 1): the true posterior is softmax(2 z), so 8 z is 4x overconfident.
    overconfident = 8.0 * z
    scaler = TemperatureScaler().fit(overconfident, labels)
    assert 3.0 < scaler.temperature_ < 5.0
    assert scaler.ece_after_ < scaler.ece_before_ / 3
    assert scaler.nll_after_ < scaler.nll_before_
    np.testing.assert_allclose(scaler.transform(overconfident), overconfident / scaler.temperature_)


def test_ece_of_perfectly_calibrated_confidences_is_small_and_of_overconfident_ones_large():
    rng = np.random.default_rng(2)
    n = 20000
    confidence = rng.uniform(0.5, 1.0, n)
    logits = np.zeros((n, 2))
    logits[:, 0] = np.log(confidence / (1 - confidence))
    truth = np.where(rng.random(n) < confidence, 0, 1)
    assert expected_calibration_error(logits, truth) < 0.015
    assert expected_calibration_error(logits * 5, truth) > 0.1


def test_bad_inputs_are_named():
    with pytest.raises(ConfigError, match="unknown confidence score 'energy'"):
        score_logits(np.zeros((2, 3)), "energy")
    with pytest.raises(ConfigError, match="K >= 2"):
        score_logits(np.zeros((2, 1)), "max_softmax")
    with pytest.raises(ConfigError, match="class indices"):
        TemperatureScaler().fit(np.zeros((2, 3)), np.array([0, 3]))
