"""The edge runtime against a real gRPC server on localhost."""

import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, RequestLog, create_server
from specedge.detector import MisspeculationDetector
from specedge.detector.audit import AgreementAudit
from specedge.edge.cloud_client import CloudClient
from specedge.edge.runtime import EdgeRuntime, Mode, Route
from specedge.errors import ConfigError, TensorError
from specedge.models import build_classifier
from specedge.training import predict_logits, softmax

SHAPE = (1, 8, 8)


def _detector(speculative, master, images):
    """A detector fitted (no guarantee) to agree with the master on 80% of these inputs: about half escalate."""
    return MisspeculationDetector(quality="agreement", target=0.8, delta=None).fit(
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


def test_speculate_escalates_exactly_the_low_confidence_inputs(setup):
    master, speculative, client, log, images = setup
    spec_logits = predict_logits(speculative, images)
    spec_probs = softmax(spec_logits)
    detector = _detector(speculative, master, images)
    runtime = EdgeRuntime(mode=Mode.SPECULATE, local_model=speculative, detector=detector, cloud=client)
    before = len(log)
    records = runtime.run(images, ids=[f"s/{i}" for i in range(len(images))])

    master_pred = predict_logits(master, images).argmax(1)
    expected_escalated = detector.escalate(spec_logits)
    assert 0 < expected_escalated.mean() < 1
    assert [r.route is Route.ESCALATED for r in records] == expected_escalated.tolist()
    for record, spec_p, m_pred in zip(records, spec_probs, master_pred, strict=True):
        assert record.local_prediction == spec_p.argmax()
        assert record.confidence == pytest.approx(spec_p.max(), rel=1e-5)
        if record.route is Route.ESCALATED:
            assert record.prediction == record.cloud_prediction == m_pred
            assert record.request_bytes > 64 and record.cloud_round_trip_us > 0
        else:
            assert record.prediction == record.local_prediction and record.cloud_prediction is None
        assert record.local_us is not None and record.total_us >= record.local_us
        assert record.local_model == "lenet5(width=0.25)" and record.attempts == int(record.reached_cloud)
    served = [e.request_id for e in log.entries()[before:]]
    assert served == [r.input_id for r in records if r.reached_cloud]


def test_audits_send_kept_answers_to_the_master_without_changing_them(setup):
    master, speculative, client, log, images = setup
    detector = _detector(speculative, master, images)
    audit = AgreementAudit(target=0.5, share=1.0)
    runtime = EdgeRuntime(mode=Mode.SPECULATE, local_model=speculative, detector=detector, cloud=client, audit=audit)
    before = len(log)
    records = runtime.run(images, ids=[f"a/{i}" for i in range(len(images))])
    kept = [r for r in records if r.route is Route.LOCAL]
    assert kept and all(r.audited and r.prediction == r.local_prediction for r in kept)
    assert all(r.cloud_prediction is not None for r in kept)
    assert [e.request_id for e in log.entries()[before:]] == [r.input_id for r in records]
    status = audit.status()
    assert status.seen == len(records) and status.kept == status.audited == len(kept)
    assert status.audited_agree == sum(r.local_prediction == r.cloud_prediction for r in kept)
    with pytest.raises(ConfigError, match="only mode 'speculate'"):
        EdgeRuntime(mode=Mode.LOCAL, local_model=speculative, audit=audit)


def test_cloud_mode_sends_everything_and_local_mode_nothing(setup):
    master, _, client, log, images = setup
    before = len(log)
    cloud = EdgeRuntime(mode=Mode.CLOUD, cloud=client).run(images[:5], ids=[f"c/{i}" for i in range(5)])
    local = EdgeRuntime(mode=Mode.LOCAL, local_model=master).run(images[:5], ids=[f"l/{i}" for i in range(5)])
    assert all(r.route is Route.CLOUD and r.local_us is None and r.local_model is None for r in cloud)
    assert all(r.request_bytes is None and r.cloud_round_trip_us is None for r in local)
    assert [r.start_s for r in local] == sorted(r.start_s for r in local)
    assert all(r.route is Route.LOCAL for r in local)
    assert [r.prediction for r in cloud] == [r.prediction for r in local]
    assert [e.request_id for e in log.entries()[before:]] == [f"c/{i}" for i in range(5)]


def test_records_take_time_from_the_injected_clock(setup):
    _, speculative, _, _, images = setup
    ticks = iter(range(0, 10**12, 250_000))  # a clock that advances 0.25 ms per reading
    runtime = EdgeRuntime(mode=Mode.LOCAL, local_model=speculative, clock_ns=lambda: next(ticks))
    records = [runtime.classify(image, input_id=str(i)) for i, image in enumerate(images[:3])]
    assert [r.start_s for r in records] == [0.00025, 0.001, 0.00175]
    assert [(r.local_us, r.total_us) for r in records] == [(250, 500)] * 3


def test_bad_configuration_and_inputs(setup):
    _, speculative, _, _, images = setup
    with pytest.raises(ConfigError, match="needs detector, cloud"):
        EdgeRuntime(mode=Mode.SPECULATE, local_model=speculative)
    runtime = EdgeRuntime(mode=Mode.LOCAL, local_model=speculative)
    with pytest.raises(TensorError, match="uint8"):
        runtime.classify(images[0].astype(np.float32), input_id="x")
    with pytest.raises(ConfigError, match="2 images but 1 ids"):
        runtime.run(images[:2], ids=["a"])


def test_a_minion_pair_is_a_local_model_like_any_other(setup):
    """Both minions run; the pair rule escalates where either is unsure or they disagree (thesis 5.2.3)."""
    from specedge.backends import PairRunner, TorchRunner

    master, speculative, client, _, images = setup
    import copy

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
    runtime = EdgeRuntime(
        mode=Mode.SPECULATE, local_model=pair, local_model_id="minion pair", detector=detector, cloud=client
    )
    records = runtime.run(images, ids=[f"p/{i}" for i in range(len(images))])
    assert [r.route is Route.ESCALATED for r in records] == detector.escalate(stacked).tolist()
    kept = [r for r in records if r.route is not Route.ESCALATED]
    assert kept and all(
        r.prediction == p
        for r, p in zip(
            kept, detector.predict_speculative(stacked)[[r.route is not Route.ESCALATED for r in records]], strict=True
        )
    )
    assert all(r.local_model == "minion pair" for r in records)
    with pytest.raises(ConfigError, match="pair detector"):
        EdgeRuntime(mode=Mode.LOCAL, local_model=pair)
