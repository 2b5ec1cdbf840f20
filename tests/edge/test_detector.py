import json

import numpy as np
import pytest

from specedge.edge.detector import ESCALATE_ALL, ConfidenceThresholdDetector, choose_threshold, max_confidence
from specedge.errors import ConfigError


def _system_accuracy(threshold, conf, spec_ok, master_ok):
    escalate = conf < threshold
    return np.where(escalate, master_ok, spec_ok).mean(), escalate.mean()


@pytest.mark.parametrize("seed", range(20))
def test_choose_threshold_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    # Coarse confidences force ties, which a threshold cannot split.
    conf = rng.integers(1, 8, n) / 8
    spec_ok = rng.random(n) < conf
    master_ok = rng.random(n) < 0.9
    target = float(rng.uniform(0.5, 1.0))
    choice = choose_threshold(conf, spec_ok, master_ok, target)

    acc, rate = _system_accuracy(choice.threshold, conf, spec_ok, master_ok)
    assert acc == pytest.approx(choice.system_accuracy)
    assert rate == pytest.approx(choice.escalation_rate)
    candidates = np.concatenate([[0.0], np.unique(conf) + 1e-9, [ESCALATE_ALL]])
    outcomes = [_system_accuracy(t, conf, spec_ok, master_ok) for t in candidates]
    feasible_rates = [r for a, r in outcomes if a >= target - 1e-12]
    if feasible_rates:
        assert acc >= target - 1e-12
        assert rate == pytest.approx(min(feasible_rates))
    else:
        assert choice.threshold == ESCALATE_ALL and rate == 1.0


def test_threshold_escalates_nothing_when_speculation_is_good_enough():
    conf = np.array([0.6, 0.7, 0.9])
    ok = np.array([True, True, True])
    choice = choose_threshold(conf, ok, ok, target_accuracy=1.0)
    assert choice.threshold == 0.0 and choice.escalation_rate == 0.0


def test_threshold_sits_between_escalated_and_kept():
    conf = np.array([0.3, 0.5, 0.8, 0.95])
    spec_ok = np.array([False, True, True, True])
    master_ok = np.array([True, True, True, True])
    choice = choose_threshold(conf, spec_ok, master_ok, target_accuracy=1.0)
    assert choice.threshold == pytest.approx(0.4)
    assert choice.escalation_rate == 0.25


def _fitted(target_ratio=1.0, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(200, 5)) * 3
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.where(rng.random(200) < 0.8, probs.argmax(1), rng.integers(0, 5, 200))
    master = np.where(rng.random(200) < 0.95, labels, (labels + 1) % 5)
    return (
        ConfidenceThresholdDetector(target_ratio=target_ratio).fit(probs, master, labels),
        probs,
        master,
        labels,
    )


def test_fit_meets_target_on_calibration_data_and_relaxing_escalates_less():
    strict, probs, master, labels = _fitted(1.0)
    relaxed, *_ = _fitted(0.9)
    assert strict.val_system_accuracy_ >= strict.target_accuracy_ - 1e-12
    assert strict.master_accuracy_ == pytest.approx((master == labels).mean())
    system = np.where(strict.escalate(probs), master, probs.argmax(1))
    assert (system == labels).mean() == pytest.approx(strict.val_system_accuracy_)
    assert relaxed.val_escalation_rate_ <= strict.val_escalation_rate_


def test_state_round_trips_through_json():
    detector, probs, *_ = _fitted()
    restored = ConfidenceThresholdDetector.from_dict(json.loads(json.dumps(detector.to_dict())))
    np.testing.assert_array_equal(restored.escalate(probs), detector.escalate(probs))


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="not fitted"):
        ConfidenceThresholdDetector().escalate(np.ones((1, 2)) / 2)
    with pytest.raises(ConfigError, match="target_ratio"):
        ConfidenceThresholdDetector(target_ratio=1.5).fit(np.ones((2, 2)) / 2, np.zeros(2), np.zeros(2))
    with pytest.raises(ConfigError, match="fit needs"):
        ConfidenceThresholdDetector().fit(np.ones((3, 2)) / 2, np.zeros(2), np.zeros(3))
    with pytest.raises(ConfigError, match="confidence-threshold"):
        ConfidenceThresholdDetector.from_dict({"detector": "other"})


def test_max_confidence_is_top_probability():
    assert max_confidence(np.array([[0.2, 0.8], [0.6, 0.4]])).tolist() == [0.8, 0.6]
