"""MisspeculationDetector: scikit-learn conventions, each policy end to end, persistence, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError

from specedge.detector import MisspeculationDetector, ModelOutputs, load_detector
from specedge.errors import ConfigError
from tests.detector.conftest import draw_outputs


@pytest.fixture(scope="module")
def calibration() -> ModelOutputs:
    return draw_outputs(4000, np.random.default_rng(11))


@pytest.fixture(scope="module")
def pair_calibration() -> ModelOutputs:
    rng = np.random.default_rng(12)
    first = draw_outputs(3000, rng)
    noise = rng.normal(0, 1.5, first.speculative_logits.shape)
    logits = np.stack([first.speculative_logits, first.speculative_logits + noise], axis=1)
    return ModelOutputs(logits, first.master_predictions, first.labels)


def _fit(outputs: ModelOutputs, **params) -> MisspeculationDetector:
    return MisspeculationDetector(**params).fit(outputs.speculative_logits, outputs.master_predictions, outputs.labels)


def _system_accuracy(detector: MisspeculationDetector, outputs: ModelOutputs) -> float:
    escalate = detector.escalate(outputs.speculative_logits)
    final = np.where(escalate, outputs.master_predictions, detector.predict_speculative(outputs.speculative_logits))
    return float((final == outputs.labels).mean())


def test_follows_scikit_learn_conventions(calibration):
    detector = MisspeculationDetector(policy="per-class-optimal", target=0.99)
    assert clone(detector).get_params() == detector.get_params()
    with pytest.raises(NotFittedError):
        detector.escalate(calibration.speculative_logits)
    assert detector.fit(calibration.speculative_logits, calibration.master_predictions, calibration.labels) is detector
    assert not hasattr(clone(detector), "threshold_")


@pytest.mark.parametrize("policy", ["threshold", "per-class-heuristic", "per-class-optimal"])
def test_fitted_policies_meet_the_target_on_their_calibration_data(calibration, policy):
    detector = _fit(calibration, policy=policy, target=1.0, delta=None, temperature=True)
    master = (calibration.master_predictions == calibration.labels).mean()
    assert _system_accuracy(detector, calibration) >= master - 1e-12
    assert detector.escalation_rate_ == pytest.approx(detector.escalate(calibration.speculative_logits).mean())
    assert 0 < detector.escalation_rate_ < 0.5


def test_per_class_optimum_escalates_no_more_than_one_threshold(calibration):
    rates = {
        p: _fit(calibration, policy=p, target=1.0, delta=None).escalation_rate_
        for p in ("threshold", "per-class-optimal")
    }
    assert rates["per-class-optimal"] <= rates["threshold"]


def test_pair_rule_escalates_every_disagreement(pair_calibration):
    detector = _fit(pair_calibration, policy="pair", target=0.99, delta=None)
    votes = pair_calibration.speculative_logits.argmax(axis=2)
    escalated = detector.escalate(pair_calibration.speculative_logits)
    assert escalated[votes[:, 0] != votes[:, 1]].all()
    assert (
        _system_accuracy(detector, pair_calibration)
        >= 0.99 * (pair_calibration.master_predictions == pair_calibration.labels).mean()
    )


def test_certified_policies_with_learned_parts_certify_on_held_out_inputs(calibration):
    detector = _fit(calibration, policy="per-class-heuristic", quality="agreement", target=0.97, delta=0.05)
    assert detector.n_learn_ + detector.n_certify_ == len(calibration)
    assert detector.n_learn_ == pytest.approx(0.5 * len(calibration), abs=1)
    assert detector.p_value_ is not None and detector.p_value_ <= 0.05
    unsplit = _fit(calibration, quality="agreement", target=0.97, delta=0.05)
    assert unsplit.n_certify_ == len(calibration)


def test_label_free_calibration_needs_only_the_masters_answers(calibration):
    unlabelled = calibration.without_labels()
    detector = MisspeculationDetector(quality="agreement", target=0.97).fit(
        unlabelled.speculative_logits, unlabelled.master_predictions
    )
    assert detector.agreement_ >= 0.97
    assert detector.system_accuracy_ is None
    assert set(detector.outcomes_.counts) == {"agree", "disagree"}


def test_escalation_probability_per_predicted_class(calibration):
    detector = _fit(calibration, target=0.99)
    predicted = detector.predict_speculative(calibration.speculative_logits)
    escalated = detector.escalate(calibration.speculative_logits)
    for c in range(calibration.num_classes):
        assert detector.escalation_rate_per_class_[c] == pytest.approx(escalated[predicted == c].mean())


def test_outcome_statistics_partition_the_calibration_inputs(calibration):
    detector = _fit(calibration, target=0.99, delta=None)
    counts = detector.outcomes_.counts
    assert sum(counts.values()) == len(calibration)
    spec = detector.predict_speculative(calibration.speculative_logits)
    assert counts["correctable"] == int(
        ((spec != calibration.labels) & (calibration.master_predictions == calibration.labels)).sum()
    )
    assert all(sum(h) == counts[name] for name, h in detector.outcomes_.histograms.items())


@pytest.mark.parametrize("policy", ["threshold", "per-class-optimal", "pair"])
def test_state_round_trips_through_json(calibration, pair_calibration, policy):
    outputs = pair_calibration if policy == "pair" else calibration
    detector = _fit(outputs, policy=policy, target=0.99, temperature=True)
    state = json.loads(json.dumps(detector.to_dict()))
    again = load_detector(state)
    assert again.get_params() == detector.get_params()
    np.testing.assert_array_equal(
        again.escalate(outputs.speculative_logits), detector.escalate(outputs.speculative_logits)
    )
    assert again.describe() == detector.describe()


def test_a_foundation_state_gets_a_clear_message():
    legacy = {"detector": "confidence-threshold", "threshold": 0.9}
    with pytest.raises(ConfigError, match=r"written by SpecEdge 0\.1 .*specedge calibrate"):
        load_detector(legacy)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"policy": "magic"}, "unknown policy 'magic'; expected one of"),
        ({"quality": "agreement", "target": 1.0}, r"agreement target must lie in \(0, 1\)"),
        ({"delta": 1.5}, r"delta must lie in \(0, 1\)"),
        ({"policy": "pair"}, r"needs the logits of two minions, \(N, 2, K\)"),
    ],
)
def test_bad_parameters_are_named(calibration, params, message):
    with pytest.raises(ConfigError, match=message):
        _fit(calibration, **params)


def test_accuracy_without_labels_is_refused(calibration):
    with pytest.raises(ConfigError, match="needs labels"):
        MisspeculationDetector(quality="accuracy").fit(calibration.speculative_logits, calibration.master_predictions)


def test_an_unreachable_target_is_reported_not_clipped(calibration):
    with pytest.raises(ConfigError, match=r"out of reach .* at best"):
        _fit(calibration, target=1.2, delta=None)


def test_logits_of_the_wrong_shape_are_refused(calibration):
    detector = _fit(calibration, target=0.99)
    with pytest.raises(ConfigError, match=r"K = 10"):
        detector.escalate(np.zeros((3, 7)))


@pytest.mark.parametrize(
    "mutate", [lambda s: s.pop("threshold"), lambda s: s.update(kind="other"), lambda s: s.update(offsets=[1, 2, 3])]
)
def test_malformed_state_is_refused(calibration, mutate):
    state = _fit(calibration, target=0.99).to_dict()
    mutate(state)
    with pytest.raises(ConfigError):
        load_detector(state)


def test_decide_agrees_with_the_single_purpose_methods(calibration, pair_calibration):
    for outputs, policy in ((calibration, "per-class-optimal"), (pair_calibration, "pair")):
        detector = _fit(outputs, policy=policy, target=0.99, temperature=True)
        decisions = detector.decide(outputs.speculative_logits)
        np.testing.assert_array_equal(decisions.escalate, detector.escalate(outputs.speculative_logits))
        np.testing.assert_array_equal(decisions.predictions, detector.predict_speculative(outputs.speculative_logits))
        np.testing.assert_array_equal(decisions.keep_scores, detector.keep_scores(outputs.speculative_logits))
