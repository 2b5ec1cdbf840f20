"""The audit stays quiet on exchangeable traffic and raises the alarm when inputs drift."""

from __future__ import annotations

import numpy as np
import pytest

from specedge.detector import MisspeculationDetector
from specedge.detector.audit import AgreementAudit, RecalibrationBuffer, clopper_pearson
from specedge.errors import ConfigError
from specedge.training import predict_logits
from tests.detector.conftest import draw_outputs, shifted_outputs


def _run(audit: AgreementAudit, detector: MisspeculationDetector, logits: np.ndarray, master: np.ndarray):
    escalate = detector.escalate(logits)
    speculative = detector.predict_speculative(logits)
    for kept, s, m in zip(~escalate, speculative, master, strict=True):
        if kept and audit.should_audit():
            audit.observe(kept=True, speculative=int(s), master=int(m))
        else:
            audit.observe(kept=bool(kept))
    return audit.status()


@pytest.fixture(scope="module")
def synthetic_detector() -> MisspeculationDetector:
    calibration = draw_outputs(5000, np.random.default_rng(21))
    return MisspeculationDetector(quality="agreement", target=0.97, delta=0.05).fit(
        calibration.speculative_logits, calibration.master_predictions
    )


@pytest.mark.parametrize("seed", range(3))
def test_quiet_on_traffic_like_the_calibration(synthetic_detector, seed):
    traffic = draw_outputs(40_000, np.random.default_rng(100 + seed))
    audit = AgreementAudit.for_detector(synthetic_detector, share=0.05, seed=seed)
    status = _run(audit, synthetic_detector, traffic.speculative_logits, traffic.master_predictions)
    assert status.blocks_tested >= 5
    assert not status.alarm
    assert status.agreement_lower <= status.agreement


def test_alarm_under_drift(synthetic_detector):
    drifted = shifted_outputs(40_000, np.random.default_rng(5), harder_by=1.0)
    audit = AgreementAudit.for_detector(synthetic_detector, share=0.05)
    status = _run(audit, synthetic_detector, drifted.speculative_logits, drifted.master_predictions)
    assert status.alarm
    assert status.agreement < synthetic_detector.target


def test_recalibration_on_master_answered_traffic_restores_the_target(synthetic_detector):
    rng = np.random.default_rng(6)
    drifted = shifted_outputs(6000, rng, harder_by=1.0)
    buffer = RecalibrationBuffer(size=4000)
    for logits, master in zip(drifted.speculative_logits[:4000], drifted.master_predictions[:4000], strict=True):
        buffer.add(logits, master)
    assert buffer.full
    fresh = buffer.refit(synthetic_detector, target=0.97)
    assert fresh.escalation_rate_ > synthetic_detector.escalation_rate_  # harder inputs: more escalations
    later = shifted_outputs(40_000, rng, harder_by=1.0)
    final = np.where(
        fresh.escalate(later.speculative_logits),
        later.master_predictions,
        fresh.predict_speculative(later.speculative_logits),
    )
    assert (final == later.master_predictions).mean() >= 0.97


def test_real_models_alarm_on_noisy_images_and_not_on_clean_ones(digits_models):
    splits, master, speculative = digits_models
    val_logits = predict_logits(speculative, splits.val.images)
    detector = MisspeculationDetector(quality="agreement", target=0.95, delta=0.1).fit(
        val_logits, predict_logits(master, splits.val.images).argmax(axis=1)
    )
    rng = np.random.default_rng(0)
    clean = np.concatenate([splits.test.images] * 8)
    noisy = np.clip(clean.astype(np.int16) + rng.normal(0, 120, clean.shape), 0, 255).astype(np.uint8)
    outcome = {}
    for name, images in (("clean", clean), ("noisy", noisy)):
        audit = AgreementAudit.for_detector(detector, share=0.5, delta=0.05)
        audit.block_size = 50
        logits = predict_logits(speculative, images)
        outcome[name] = _run(audit, detector, logits, predict_logits(master, images).argmax(axis=1))
    assert not outcome["clean"].alarm
    assert outcome["noisy"].alarm


def test_clopper_pearson_bounds_cover_the_proportion():
    lower, upper = clopper_pearson(95, 100, 0.05)
    assert lower < 0.95 < upper
    assert clopper_pearson(0, 10, 0.05)[0] == 0.0 and clopper_pearson(10, 10, 0.05)[1] == 1.0


def test_bad_audit_settings_are_named():
    with pytest.raises(ConfigError, match="audit share"):
        AgreementAudit(target=0.9, share=0.0)
    with pytest.raises(ConfigError, match="only kept answers are audited"):
        AgreementAudit(target=0.9).observe(kept=False, speculative=1, master=1)
