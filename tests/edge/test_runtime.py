"""The edge runtime against a real gRPC server on localhost."""

import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, RequestLog, create_server
from specedge.edge.cloud_client import CloudClient
from specedge.edge.detector import ConfidenceThresholdDetector
from specedge.edge.runtime import EdgeRuntime, Mode, Route
from specedge.errors import ConfigError, TensorError
from specedge.models import build_classifier
from specedge.training import predict_logits, softmax

SHAPE = (1, 8, 8)


def _detector(threshold):
    return ConfidenceThresholdDetector.from_dict(
        {
            "detector": "confidence-threshold",
            "target_ratio": 1.0,
            "threshold": threshold,
            "target_accuracy": 0.9,
            "master_accuracy": 0.9,
            "speculative_accuracy": 0.8,
            "val_system_accuracy": 0.9,
            "val_escalation_rate": 0.1,
            "n_calibration": 10,
        }
    )


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    master = build_classifier("lenet5", num_classes=10, image_shape=SHAPE, width=0.5).eval()
    speculative = build_classifier("lenet5", num_classes=10, image_shape=SHAPE, width=0.25).eval()
    log = RequestLog()
    server, port = create_server({"master": InferenceEngine(master, model_name="master")}, request_log=log)
    client = CloudClient(f"127.0.0.1:{port}", model_name="master")
    images = np.random.default_rng(0).integers(0, 256, (40, *SHAPE), dtype=np.uint8)
    yield master, speculative, client, log, images
    client.close()
    server.stop(0).wait()


def test_speculate_escalates_exactly_the_low_confidence_inputs(setup):
    master, speculative, client, log, images = setup
    spec_probs = softmax(predict_logits(speculative, images))
    threshold = float(np.median(spec_probs.max(1)))  # about half the inputs escalate
    runtime = EdgeRuntime(mode=Mode.SPECULATE, local_model=speculative, detector=_detector(threshold), cloud=client)
    before = len(log)
    records = runtime.run(images, ids=[f"s/{i}" for i in range(len(images))])

    master_pred = predict_logits(master, images).argmax(1)
    expected_escalated = spec_probs.max(1) < threshold
    assert [r.route is Route.ESCALATED for r in records] == expected_escalated.tolist()
    for record, spec_p, m_pred in zip(records, spec_probs, master_pred, strict=True):
        assert record.local_prediction == spec_p.argmax()
        assert record.confidence == pytest.approx(spec_p.max(), rel=1e-5)
        if record.route is Route.ESCALATED:
            assert record.prediction == record.cloud_prediction == m_pred
            assert record.request_bytes > 64 and record.cloud_round_trip_us > 0
        else:
            assert record.prediction == record.local_prediction and record.cloud_prediction is None
        assert record.total_us >= record.local_us
    served = [e.request_id for e in log.entries()[before:]]
    assert served == [r.input_id for r in records if r.reached_cloud]


def test_cloud_mode_sends_everything_and_local_mode_nothing(setup):
    master, _, client, log, images = setup
    before = len(log)
    cloud = EdgeRuntime(mode=Mode.CLOUD, cloud=client).run(images[:5], ids=[f"c/{i}" for i in range(5)])
    local = EdgeRuntime(mode=Mode.LOCAL, local_model=master).run(images[:5], ids=[f"l/{i}" for i in range(5)])
    assert all(r.route is Route.CLOUD and r.local_us == 0 for r in cloud)
    assert all(r.route is Route.LOCAL for r in local)
    assert [r.prediction for r in cloud] == [r.prediction for r in local]
    assert [e.request_id for e in log.entries()[before:]] == [f"c/{i}" for i in range(5)]


def test_bad_configuration_and_inputs(setup):
    _, speculative, _, _, images = setup
    with pytest.raises(ConfigError, match="needs detector, cloud"):
        EdgeRuntime(mode=Mode.SPECULATE, local_model=speculative)
    runtime = EdgeRuntime(mode=Mode.LOCAL, local_model=speculative)
    with pytest.raises(TensorError, match="uint8"):
        runtime.classify(images[0].astype(np.float32), input_id="x")
    with pytest.raises(ConfigError, match="2 images but 1 ids"):
        runtime.run(images[:2], ids=["a"])
