"""The Prometheus endpoint: RPC counts from the interceptor, model statistics from each model's statistics()."""

from __future__ import annotations

import time
import urllib.request

import numpy as np
import pytest
import torch
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from specedge.cloud import InferenceEngine, create_server
from specedge.cloud.metrics import ModelStatsCollector, RpcMetricsInterceptor, build_registry
from specedge.cloud.statistics import BatchStats, Duration, ModelStats
from specedge.edge.cloud_client import CloudClient
from specedge.errors import CloudRejected
from specedge.models import build_classifier

INFER = "/inference.GRPCInferenceService/ModelInfer"


class _StubModel:
    """A served model reduced to what the collector reads."""

    model_name = "stub"
    model_version = "3"

    def statistics(self) -> ModelStats:
        return ModelStats(
            name="stub",
            version="3",
            last_inference_ms=1_700_000_000_000,
            inference_count=12,
            execution_count=3,
            success=Duration(5, 9_000_000),
            fail=Duration(2, 4_000),
            queue=Duration(5, 2_500_000),
            compute_input=Duration(5, 100_000),
            compute_infer=Duration(5, 6_000_000),
            compute_output=Duration(5, 50_000),
            batch_stats={1: BatchStats(1, 1_000_000), 8: BatchStats(2, 5_000_000)},
        )


class _BrokenModel:
    model_name = "broken"
    model_version = "1"

    def statistics(self) -> ModelStats:
        raise RuntimeError("boom")


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``(sample name, sorted labels) -> value`` of a Prometheus text exposition."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        return _samples(reply.read().decode("utf-8"))


def test_collector_reads_model_stats(caplog: pytest.LogCaptureFixture) -> None:
    registry = build_registry({"stub": _StubModel(), "broken": _BrokenModel()}, RpcMetricsInterceptor())
    samples = _samples(generate_latest(registry).decode("utf-8"))
    model = (("model", "stub"), ("version", "3"))
    assert samples[("specedge_inference_request_success_total", model)] == 5
    assert samples[("specedge_inference_request_success_duration_us_total", model)] == 9000
    assert samples[("specedge_inference_request_failure_total", model)] == 2
    assert samples[("specedge_inference_queue_duration_us_total", model)] == 2500
    assert samples[("specedge_inference_compute_infer_duration_us_total", model)] == 6000
    assert samples[("specedge_inference_count_total", model)] == 12
    assert samples[("specedge_inference_exec_count_total", model)] == 3
    assert samples[("specedge_inference_batch_exec_total", (("batch_size", "8"), *model))] == 2
    assert samples[("specedge_inference_batch_compute_duration_us_total", (("batch_size", "1"), *model))] == 1000
    assert samples[("specedge_inference_last_timestamp_ms", model)] == 1_700_000_000_000
    # a model whose statistics fail is left out of the scrape, and logged; the others still report
    assert not [key for key in samples if ("model", "broken") in key[1]]
    assert "statistics() of model 'broken' failed" in caplog.text


def test_endpoint_serves_request_counts_and_stops_with_the_server() -> None:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    engine = InferenceEngine(classifier, model_name="master")
    server, port = create_server({"master": engine}, metrics_port=0)
    metrics_port = server.metrics_port
    assert metrics_port is not None and metrics_port > 0
    try:
        images = np.zeros((2, 1, 8, 8), dtype=np.uint8)
        with CloudClient(f"127.0.0.1:{port}", model_name="master") as client:
            for i in range(3):
                client.infer(images, request_id=f"m-{i}")
            with pytest.raises(CloudRejected):
                client.infer(np.zeros((1, 1, 4, 4), dtype=np.uint8), request_id="bad")
            client.server_ready()
        samples = _scrape(metrics_port)
        assert samples[("specedge_rpc_requests_total", (("code", "OK"), ("method", INFER)))] == 3
        assert samples[("specedge_rpc_requests_total", (("code", "INVALID_ARGUMENT"), ("method", INFER)))] == 1
        assert samples[("specedge_rpc_failures_total", (("method", INFER),))] == 1
        ready = "/inference.GRPCInferenceService/ServerReady"
        assert samples[("specedge_rpc_requests_total", (("code", "OK"), ("method", ready)))] == 1
        if hasattr(engine, "statistics"):  # the batching engine reports ModelStats
            model = (("model", "master"), ("version", "1"))
            assert samples[("specedge_inference_request_success_total", model)] == 3
            assert samples[("specedge_inference_count_total", model)] == 6
    finally:
        server.stop(None).wait(5)
    with pytest.raises(OSError):  # the endpoint closed with the server (refused or reset)
        for _ in range(50):
            _scrape(metrics_port)
            time.sleep(0.1)


def test_collector_is_per_server() -> None:
    """Two servers in one process keep separate registries (no duplicate-metric errors)."""
    first = ModelStatsCollector({"stub": _StubModel()})
    second = ModelStatsCollector({"stub": _StubModel()})
    assert [f.name for f in first.collect()] == [f.name for f in second.collect()]
