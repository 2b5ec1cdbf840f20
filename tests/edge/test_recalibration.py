"""Drift in operation: the audit's alarm starts a re-calibration on master-answered traffic (real server)."""

from __future__ import annotations

import numpy as np
import pytest

from specedge.backends import TorchRunner
from specedge.cloud import InferenceEngine, create_server
from specedge.detector import MisspeculationDetector
from specedge.detector.audit import AgreementAudit, RecalibrationBuffer
from specedge.edge.cloud_client import CloudClient
from specedge.edge.records import Route
from specedge.edge.runtime import EdgeRuntime, LocalModel
from specedge.errors import ConfigError
from specedge.training import predict_logits


@pytest.fixture(scope="module")
def served(digits_models):
    splits, master, speculative = digits_models
    server, port = create_server({"master": InferenceEngine(master, model_name="master")})
    with CloudClient(f"127.0.0.1:{port}", model_name="master") as client:
        yield splits, master, speculative, client
    server.stop(0).wait()


def test_alarm_on_noisy_frames_recalibrates_the_detector(served):
    splits, master, speculative, client = served
    detector = MisspeculationDetector(quality="agreement", target=0.95, delta=0.1).fit(
        predict_logits(speculative, splits.val.images), predict_logits(master, splits.val.images).argmax(1)
    )
    audit = AgreementAudit.for_detector(detector, share=0.5)
    audit.block_size = 50
    runtime = EdgeRuntime(
        speculative=[LocalModel("speculative", TorchRunner(speculative), detector)],
        cloud=client,
        audit=audit,
        recalibration=RecalibrationBuffer(size=300),
    )
    rng = np.random.default_rng(0)
    frames = np.concatenate([splits.test.images] * 3)
    noisy = np.clip(frames.astype(np.int16) + rng.normal(0, 120, frames.shape), 0, 255).astype(np.uint8)
    records = runtime.run(noisy, ids=[str(i) for i in range(len(noisy))])
    assert runtime.recalibrations >= 1
    refitted = runtime.models["speculative"].detector
    assert refitted is not detector and refitted.quality == "agreement"
    # Refitted on noisy traffic, it escalates more of it than the clean-data detector did.
    noisy_logits = predict_logits(speculative, noisy)
    assert refitted.escalate(noisy_logits).mean() > detector.escalate(noisy_logits).mean()
    # While it re-calibrated, every frame was answered by the master.
    assert sum(r.route is Route.ESCALATED for r in records) >= 300


def test_recalibration_needs_an_audit(digits_models):
    _, _, speculative = digits_models
    with pytest.raises(ConfigError, match="give an audit too"):
        EdgeRuntime(
            master=LocalModel("m", TorchRunner(speculative)), mode="private", recalibration=RecalibrationBuffer(size=10)
        )
