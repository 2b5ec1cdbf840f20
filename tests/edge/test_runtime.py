"""The edge runtime against a real gRPC server on localhost: plans, routes, records, modes."""

import copy

import numpy as np
import pytest
import torch

from specedge.backends import PairRunner, TorchRunner
from specedge.cloud import InferenceEngine, RequestLog, create_server
from specedge.detector import MisspeculationDetector
from specedge.detector.audit import AgreementAudit
from specedge.edge.clock import ManualClock
from specedge.edge.cloud_client import CloudClient
from specedge.edge.records import Route
from specedge.edge.runtime import EdgeInput, EdgeRuntime, LocalModel
from specedge.errors import ConfigError
from specedge.models import build_classifier
from specedge.training import predict_logits, softmax

SHAPE = (1, 8, 8)


def _detector(speculative, master, images, target=0.8):
    """A detector fitted (no guarantee) to agree with the master on 80% of these inputs: about half escalate."""
    return MisspeculationDetector(quality="agreement", target=target, delta=None).fit(
        predict_logits(speculative, images), predict_logits(master, images).argmax(1)
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


def _served(log, before):
    return [e.request_id for e in log.entries()[before:] if e.request_id != "warm-up"]


def test_speculation_escalates_exactly_the_low_confidence_inputs(setup):
    master, speculative, client, log, images = setup
    spec_logits = predict_logits(speculative, images)
    spec_probs = softmax(spec_logits)
    detector = _detector(speculative, master, images)
    runtime = EdgeRuntime(speculative=[LocalModel("tiny", TorchRunner(speculative), detector)], cloud=client)
    before = len(log)
    records = runtime.run(images, ids=[f"s/{i}" for i in range(len(images))])

    master_pred = predict_logits(master, images).argmax(1)
    expected_escalated = detector.escalate(spec_logits)
    assert 0 < expected_escalated.mean() < 1
    assert [r.route is Route.ESCALATED for r in records] == expected_escalated.tolist()
    for record, spec_p, m_pred in zip(records, spec_probs, master_pred, strict=True):
        assert record.local_prediction == spec_p.argmax()
        assert record.confidence == pytest.approx(spec_p.max(), rel=1e-5)
        assert record.outcome == "ok" and record.flag is None and record.error is None
        if record.route is Route.ESCALATED:
            assert record.prediction == record.cloud_prediction == m_pred
            assert record.verified and record.answered_by == "cloud:master"
            assert record.request_bytes > 64 and record.cloud_round_trip_us > 0
            assert record.transfer_us is not None and record.transfer_us <= record.cloud_round_trip_us
        else:
            assert record.prediction == record.local_prediction and record.cloud_prediction is None
            assert not record.verified and record.answered_by == "tiny"
        assert record.local_us is not None and record.total_us >= record.local_us
        assert record.local_model == "tiny" and record.attempts == int(record.reached_cloud)
    assert _served(log, before) == [r.input_id for r in records if r.reached_cloud]


def test_audits_send_kept_answers_to_the_master_without_changing_them(setup):
    master, speculative, client, log, images = setup
    detector = _detector(speculative, master, images)
    audit = AgreementAudit(target=0.5, share=1.0)
    runtime = EdgeRuntime(
        speculative=[LocalModel("tiny", TorchRunner(speculative), detector)], cloud=client, audit=audit
    )
    before = len(log)
    records = runtime.run(images, ids=[f"a/{i}" for i in range(len(images))])
    kept = [r for r in records if r.route is Route.LOCAL]
    assert kept and all(r.audited and r.prediction == r.local_prediction for r in kept)
    assert all(r.cloud_prediction is not None and not r.verified for r in kept)
    assert _served(log, before) == [r.input_id for r in records]
    status = audit.status()
    assert status.seen == len(records) and status.kept == status.audited == len(kept)
    assert status.audited_agree == sum(r.local_prediction == r.cloud_prediction for r in kept)


def test_mission_critical_sends_everything_and_private_nothing(setup):
    master, _, client, log, images = setup
    before = len(log)
    cloud = EdgeRuntime(cloud=client, mode="mission-critical").run(images[:5], ids=[f"c/{i}" for i in range(5)])
    device = EdgeRuntime(master=LocalModel("master", TorchRunner(master)), cloud=client, mode="private")
    local = device.run(images[:5], ids=[f"l/{i}" for i in range(5)])
    assert all(r.route is Route.CLOUD and r.local_us is None and r.local_model is None for r in cloud)
    assert all(r.route is Route.DEVICE_MASTER and r.verified and r.request_bytes is None for r in local)
    assert [r.start_s for r in local] == sorted(r.start_s for r in local)
    assert [r.prediction for r in cloud] == [r.prediction for r in local]
    assert _served(log, before) == [f"c/{i}" for i in range(5)]  # private sent nothing, not even a warm-up


def test_private_without_a_master_flags_the_doubtful_answers(setup):
    master, speculative, client, log, images = setup
    detector = _detector(speculative, master, images)
    runtime = EdgeRuntime(
        speculative=[LocalModel("tiny", TorchRunner(speculative), detector)], cloud=client, mode="private"
    )
    before = len(log)
    records = runtime.run(images, ids=[f"p/{i}" for i in range(len(images))])
    doubtful = detector.escalate(predict_logits(speculative, images))
    assert [r.flag == "private" for r in records] == doubtful.tolist()
    assert all(r.route is Route.LOCAL and r.attempts == 0 for r in records)
    assert _served(log, before) == []


def test_the_mode_switches_at_run_time(setup):
    master, speculative, client, _, images = setup
    detector = _detector(speculative, master, images)
    runtime = EdgeRuntime(
        speculative=[LocalModel("tiny", TorchRunner(speculative), detector)],
        master=LocalModel("master", TorchRunner(master)),
        cloud=client,
    )
    first = runtime.classify(images[0], input_id="m/0")
    runtime.mode = "mission-critical"
    second = runtime.classify(images[1], input_id="m/1")
    runtime.mode = "private"  # doubtful answers are recovered on the master on the device
    doubtful = int(np.flatnonzero(detector.escalate(predict_logits(speculative, images)))[0])
    third = runtime.classify(images[doubtful], input_id="m/2")
    assert first.local_model == "tiny"
    assert second.route is Route.CLOUD and second.decision.startswith("mission-critical")
    assert third.route is Route.DEVICE_MASTER and third.attempts == 0 and third.verified
    assert third.local_model == "tiny" and third.decision.startswith("private")
    with pytest.raises(ConfigError, match="relaxed detector"):
        runtime.mode = "power-saving"
    with pytest.raises(ValueError, match="'sleepy' is not a valid Mode"):
        runtime.mode = "sleepy"


def test_power_saving_uses_the_relaxed_detector(setup):
    master, speculative, client, _, images = setup
    strict = _detector(speculative, master, images, target=0.9)
    relaxed = _detector(speculative, master, images, target=0.5)
    model = LocalModel("tiny", TorchRunner(speculative), strict, relaxed_detector=relaxed)
    runtime = EdgeRuntime(speculative=[model], cloud=client, mode="power-saving")
    records = runtime.run(images, ids=[f"ps/{i}" for i in range(len(images))])
    logits = predict_logits(speculative, images)
    assert [r.route is Route.ESCALATED for r in records] == relaxed.escalate(logits).tolist()
    assert relaxed.escalate(logits).sum() < strict.escalate(logits).sum()


def test_records_take_time_from_the_injected_clock(setup):
    _, speculative, _, _, images = setup
    clock = ManualClock(real=False)
    runtime = EdgeRuntime(master=LocalModel("m", TorchRunner(speculative)), mode="private", clock=clock)
    first = runtime.classify(images[0], input_id="0")
    clock.advance(2.5)
    second = runtime.classify(images[1], input_id="1")
    assert (first.start_s, second.start_s) == (0.0, 2.5)
    assert first.total_us == second.total_us == 0  # frozen time: the models took none of it


def test_bad_inputs_get_error_records_and_the_stream_goes_on(setup):
    _, speculative, _, _, images = setup
    runtime = EdgeRuntime(master=LocalModel("m", TorchRunner(speculative)), mode="private")
    inputs = [
        EdgeInput("good-0", images[0]),
        EdgeInput("float", images[1].astype(np.float32)),
        EdgeInput("wrong-shape", np.zeros((1, 9, 9), dtype=np.uint8)),
        EdgeInput("unreadable", None, error="cannot decode broken.png: not an image"),
        EdgeInput("good-1", images[1]),
    ]
    records = list(runtime.stream(inputs))
    assert [r.input_id for r in records] == [i.input_id for i in inputs]
    assert [r.outcome for r in records] == ["ok", "error", "error", "error", "ok"]
    assert "uint8" in records[1].error and "(N, 1, 8, 8)" in records[2].error
    assert records[3].error == "cannot decode broken.png: not an image" and records[3].prediction is None
    with pytest.raises(ConfigError, match="2 images but 1 ids"):
        runtime.run(images[:2], ids=["a"])


def test_bad_configuration(setup):
    master, speculative, client, _, images = setup
    detector = _detector(speculative, master, images)
    with pytest.raises(ConfigError, match="needs a detector"):
        EdgeRuntime(speculative=[LocalModel("tiny", TorchRunner(speculative))], cloud=client)
    with pytest.raises(ConfigError, match="give a local model or the master"):
        EdgeRuntime(cloud=client)
    with pytest.raises(ConfigError, match="give a cloud or a device master"):
        EdgeRuntime(speculative=[LocalModel("t", TorchRunner(speculative), detector)], mode="mission-critical")
    with pytest.raises(ConfigError, match="unique"):
        EdgeRuntime(speculative=[LocalModel("t", TorchRunner(speculative), detector)] * 2, cloud=client)
    with pytest.raises(ConfigError, match="deadline must be > 0"):
        EdgeRuntime(master=LocalModel("m", TorchRunner(master)), mode="private").classify(
            images[0], input_id="x", deadline_s=0
        )


def test_a_minion_pair_is_a_local_model_like_any_other(setup):
    """Both minions run; the pair rule escalates where either is unsure or they disagree (thesis 5.2.3)."""
    master, speculative, client, _, images = setup
    torch.manual_seed(1)
    second = copy.deepcopy(speculative)  # a sibling that mostly agrees, so some answers are kept
    with torch.no_grad():
        for p in second.parameters():
            p.add_(0.05 * torch.randn_like(p))
    pair = PairRunner(TorchRunner(speculative), TorchRunner(second))
    stacked = pair.logits(images)
    assert stacked.shape == (len(images), 2, 10)
    master_pred = predict_logits(master, images).argmax(1)
    detector = MisspeculationDetector(policy="pair", quality="agreement", target=0.8, delta=None).fit(
        stacked, master_pred
    )
    runtime = EdgeRuntime(speculative=[LocalModel("minion pair", pair, detector)], cloud=client)
    records = runtime.run(images, ids=[f"p/{i}" for i in range(len(images))])
    escalated = detector.escalate(stacked)
    assert [r.route is Route.ESCALATED for r in records] == escalated.tolist()
    kept = [r.prediction for r in records if r.route is not Route.ESCALATED]
    assert kept and kept == detector.predict_speculative(stacked)[~escalated].tolist()
    assert all(r.local_model == "minion pair" for r in records)
    single = _detector(speculative, master, images)
    with pytest.raises(ConfigError, match="pair detector"):
        EdgeRuntime(speculative=[LocalModel("pair", pair, single)], cloud=client)
