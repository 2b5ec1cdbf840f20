"""The Learn-then-Test guarantee holds over many calibration draws, and fitting to the data does not."""

from __future__ import annotations

import numpy as np
import pytest

from specedge.detector import MisspeculationDetector, ModelOutputs
from specedge.detector.guarantee import wsr_p_values
from specedge.errors import ConfigError
from tests.detector.conftest import draw_outputs

DRAWS = 200
DELTA = 0.1
#: Three binomial standard deviations of a share estimated from DRAWS draws at DELTA.
TOLERANCE = 3 * np.sqrt(DELTA * (1 - DELTA) / DRAWS)


def test_wsr_p_values_are_valid_under_the_null():
    """At a true mean on the null boundary, p <= delta happens at most delta of the time."""
    rng = np.random.default_rng(0)
    losses = (rng.random((400, 2000)) < 0.3).astype(float)  # Bernoulli(0.3): mean exactly the null
    p = wsr_p_values(losses, 0.3, 0.1)
    assert (p <= 0.1).mean() <= 0.1 + 3 * np.sqrt(0.09 / 2000)


def test_wsr_rejects_a_clearly_lower_mean():
    rng = np.random.default_rng(1)
    losses = (rng.random((2000, 50)) < 0.2).astype(float)
    assert (wsr_p_values(losses, 0.3, 0.05) < 0.01).all()


@pytest.fixture(scope="module")
def scored_population(population: ModelOutputs) -> dict[str, np.ndarray]:
    """Keep scores of the whole population, once: the single-threshold policy on raw scores needs no fit."""
    reference = MisspeculationDetector(delta=None).fit(
        population.speculative_logits[:1000], population.master_predictions[:1000], population.labels[:1000]
    )
    return {
        "keep": reference.keep_scores(population.speculative_logits),
        "speculative": reference.predict_speculative(population.speculative_logits),
    }


def _test_quality(
    threshold: float, population: ModelOutputs, scored: dict[str, np.ndarray], test: np.ndarray
) -> tuple[float, float]:
    """Accuracy ratio and agreement on the ``test`` rows of the stored table."""
    final = np.where(scored["keep"] < threshold, population.master_predictions, scored["speculative"])[test]
    labels, master = population.labels[test], population.master_predictions[test]
    return float((final == labels).mean() / (master == labels).mean()), float((final == master).mean())


@pytest.mark.parametrize(
    ("quality", "target", "n_calibration"),
    [("accuracy", 0.99, 3000), ("agreement", 0.97, 1500)],
)
def test_guarantee_holds_over_200_calibration_draws(population, scored_population, quality, target, n_calibration):
    """200 random calibration/test re-splits of a stored table of outputs: the share of splits whose
    test part misses the target is at most delta. The test part has ~397,000 inputs, so its own
    sampling error (under 0.001) is far below the margins involved; the stated tolerance is the
    binomial error of a share estimated from 200 splits."""
    rng = np.random.default_rng(7)
    misses = {"certified": 0, "fitted": 0}
    escalation = []
    for draw in range(DRAWS):
        chosen = rng.choice(len(population), n_calibration, replace=False)
        calibration = population.subset(chosen)
        test = np.ones(len(population), dtype=bool)
        test[chosen] = False
        for kind, delta in (("certified", DELTA), ("fitted", None)):
            detector = MisspeculationDetector(quality=quality, target=target, delta=delta, random_state=draw).fit(
                calibration.speculative_logits, calibration.master_predictions, calibration.labels
            )
            ratio, agreement = _test_quality(detector.threshold_, population, scored_population, test)
            misses[kind] += (ratio if quality == "accuracy" else agreement) < target
            if kind == "certified":
                escalation.append(detector.escalation_rate_)
    assert misses["certified"] / DRAWS <= DELTA + TOLERANCE
    # The test can fail: meeting the target on the calibration data alone misses it about half the time ...
    assert misses["fitted"] / DRAWS > 0.25
    # ... and the certified detector is not trivially escalating everything.
    assert np.mean(escalation) < 0.6


def test_too_small_a_calibration_set_says_how_many_inputs_it_needs():
    calibration = draw_outputs(150, np.random.default_rng(3))
    detector = MisspeculationDetector(quality="agreement", target=0.99, delta=0.05)
    with pytest.raises(
        ConfigError, match=r"150 calibration inputs\): even with no disagreement among kept answers it needs 299"
    ):
        detector.fit(calibration.speculative_logits, calibration.master_predictions)


def test_an_uncertifiable_target_estimates_the_inputs_it_would_take():
    calibration = draw_outputs(400, np.random.default_rng(4))
    detector = MisspeculationDetector(quality="accuracy", target=0.995, delta=0.05)
    with pytest.raises(
        ConfigError, match=r"cannot certify accuracy >= 0\.995 x master .*take about [\d,]+ calibration inputs"
    ):
        detector.fit(calibration.speculative_logits, calibration.master_predictions, calibration.labels)
