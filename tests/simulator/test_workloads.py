"""Workloads from real edge records (a real server on localhost) and from stored outputs."""

from __future__ import annotations

import numpy as np
import pytest

from specedge.backends import TorchRunner
from specedge.cloud import InferenceEngine, create_server
from specedge.detector import MisspeculationDetector
from specedge.detector.audit import AgreementAudit
from specedge.edge.cloud_client import CloudClient
from specedge.edge.records import Route
from specedge.edge.runtime import EdgeRuntime, LocalModel
from specedge.errors import ConfigError
from specedge.simulator import get_link_profile
from specedge.simulator.system import CLOUD_ONLY, SPECEDGE, evaluate_system
from specedge.simulator.workloads import HOST_MEASURED, local_cost, workload_from_outputs, workload_from_records
from specedge.training import predict_logits


@pytest.fixture(scope="module")
def runs(digits_models):
    splits, master, speculative = digits_models
    detector = MisspeculationDetector(quality="agreement", target=0.9, delta=None).fit(
        predict_logits(speculative, splits.val.images), predict_logits(master, splits.val.images).argmax(1)
    )
    server, port = create_server({"master": InferenceEngine(master, model_name="master")})
    images = splits.test.images[:120]
    try:
        with CloudClient(f"127.0.0.1:{port}", model_name="master") as client:
            audit = AgreementAudit(target=0.5, share=0.1)
            plans = {
                "SpecEdge": EdgeRuntime(
                    speculative=[LocalModel("speculative", TorchRunner(speculative), detector)],
                    cloud=client,
                    audit=audit,
                ),
                "cloud-only": EdgeRuntime(cloud=client, mode="mission-critical"),
                "mobile-only": EdgeRuntime(master=LocalModel("master", TorchRunner(master)), mode="private"),
            }
            records = {
                name: runtime.run(images, ids=[f"{name}/{i}" for i in range(len(images))])
                for name, runtime in plans.items()
            }
    finally:
        server.stop(0).wait()
    return splits, master, speculative, detector, images, records


def test_the_simulator_is_fed_the_real_records(runs):
    splits, master, speculative, detector, images, records = runs
    workload = workload_from_records(
        "digits",
        speculative=records["SpecEdge"],
        cloud_only=records["cloud-only"],
        mobile_only=records["mobile-only"],
        labels=splits.test.labels[: len(images)],
        images=images,
        device="rpi4",
        speculative_model=speculative,
        master_model=master,
        escalation_probability=detector.escalation_rate_,
        audit_share=0.1,
    )
    spec = records["SpecEdge"]
    np.testing.assert_array_equal(workload.escalate, [r.route is Route.ESCALATED for r in spec])
    np.testing.assert_array_equal(workload.audit, [r.audited for r in spec])
    assert workload.request_bytes.tolist() == [r.request_bytes for r in records["cloud-only"]]
    assert workload.server_s.tolist() == pytest.approx(
        [(r.cloud_queue_us + r.cloud_compute_us) / 1e6 for r in records["cloud-only"]]
    )
    assert workload.recorded_arrival_s is not None and workload.recorded_arrival_s[0] == 0.0
    assert np.all(np.diff(workload.recorded_arrival_s) > 0)
    result = evaluate_system(
        workload, get_link_profile("lte"), arrival_s=workload.recorded_arrival_s, selector="always"
    )
    np.testing.assert_array_equal(result[SPECEDGE].to_cloud, [r.reached_cloud for r in spec])
    assert result[SPECEDGE].accuracy(workload.labels) == pytest.approx(
        np.mean([r.prediction == y for r, y in zip(spec, workload.labels, strict=True)])
    )
    assert result[CLOUD_ONLY].cloud_fraction == 1.0


def test_measured_host_costs_come_from_the_records(runs):
    _, master, speculative, detector, images, records = runs
    workload = workload_from_records(
        "digits",
        speculative=records["SpecEdge"],
        cloud_only=records["cloud-only"],
        mobile_only=records["mobile-only"],
        labels=None,
        images=images,
        device=HOST_MEASURED,
        speculative_model=speculative,
        master_model=master,
        escalation_probability=detector.escalation_rate_,
        audit_share=0.1,
    )
    measured = np.median([r.local_us for r in records["mobile-only"]]) / 1e6
    assert workload.master.latency_s == pytest.approx(measured)
    assert workload.master.device == "host-x86" and workload.master.method == "measured on this host"


def test_outputs_workload_uses_the_detectors_decisions(runs):
    splits, master, speculative, detector, images, _ = runs
    from specedge.detector import ModelOutputs

    outputs = ModelOutputs(
        predict_logits(speculative, images), predict_logits(master, images).argmax(1), splits.test.labels[: len(images)]
    )
    workload = workload_from_outputs(
        "digits",
        outputs=outputs,
        detector=detector,
        images=images,
        device="tegra-k1",
        speculative_model=speculative,
        master_model=master,
        server_s=0.001,
        audit_share=0.2,
    )
    np.testing.assert_array_equal(workload.escalate, detector.escalate(outputs.speculative_logits))
    assert not (workload.escalate & workload.audit).any() and workload.audit.any()
    assert workload.request_bytes[0] == records_request_bytes(images)
    assert (
        workload.compressed_request_bytes is not None
        and (workload.compressed_request_bytes <= workload.request_bytes).all()
    )


def records_request_bytes(images: np.ndarray) -> int:
    """What CloudClient measures for one image: the serialised request (the id is 'input-000000')."""
    from specedge.simulator import infer_message_sizes

    return infer_message_sizes(images.shape[1:], 10).request_bytes


def test_local_costs_name_the_device_and_refuse_unknown_ones(digits_models):
    _, master, _ = digits_models
    cost = local_cost(master, "pixel-class")
    assert cost.device == "pixel-class" and cost.latency_s > 0 and cost.energy_mj > 0
    with pytest.raises(ConfigError, match="unknown device 'toaster'; expected one of: tegra-k1"):
        local_cost(master, "toaster")


def test_stored_widths_price_a_compressed_variant_below_fp32(digits_models):
    """SIEVE's narrower storage moves fewer bytes; int8 also computes cheaper (thesis 4.4.2)."""
    from specedge.compression.tradeoff import layer_bits
    from specedge.simulator.workloads import StoredWidths

    _, master, _ = digits_models
    fp32 = local_cost(master, "tegra-k1")
    rows = layer_bits(master)
    narrow = StoredWidths(tuple(6 for _ in rows), tuple(6 for _ in rows))
    int8 = StoredWidths.from_tradeoff(
        {"encoding": "int8", "weight_bits": [8] * len(rows), "activation_bits": [8] * len(rows)}
    )
    sieve_cost, int8_cost = local_cost(master, "tegra-k1", widths=narrow), local_cost(master, "tegra-k1", widths=int8)
    assert sieve_cost.energy_mj < fp32.energy_mj and int8_cost.energy_mj < fp32.energy_mj
    assert sieve_cost.latency_s <= fp32.latency_s and int8_cost.latency_s <= fp32.latency_s
    with pytest.raises(ConfigError, match="malformed trade-off record"):
        StoredWidths.from_tradeoff({"encoding": "sieve"})
    with pytest.raises(ConfigError, match="layer rows"):
        local_cost(master, "tegra-k1", widths=StoredWidths((8,), (8,)))
