"""The KServe v2 servicer over real gRPC on localhost: every RPC, every refusal, the request log."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from torch import nn

import specedge
from specedge.cloud import InferenceEngine, RequestLog, create_server
from specedge.models import ImageClassifier, build_classifier
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub

BIG = 64 * 2**20


@pytest.fixture(scope="module")
def classifier() -> ImageClassifier:
    torch.manual_seed(0)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)


@pytest.fixture
def engine(classifier: ImageClassifier) -> InferenceEngine:
    return InferenceEngine(classifier, model_name="master", max_batch=16)


@pytest.fixture
def request_log(tmp_path: Path) -> Iterator[RequestLog]:
    with RequestLog(tmp_path / "requests.jsonl") as log:
        yield log


@pytest.fixture
def server(engine: InferenceEngine, request_log: RequestLog) -> Iterator[tuple[grpc.Server, int]]:
    server, port = create_server({"master": engine}, request_log=request_log)
    yield server, port
    server.stop(None)


@pytest.fixture
def channel(server: tuple[grpc.Server, int]) -> Iterator[grpc.Channel]:
    options = [("grpc.max_send_message_length", BIG), ("grpc.max_receive_message_length", BIG)]
    with grpc.insecure_channel(f"127.0.0.1:{server[1]}", options=options) as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.Channel) -> GRPCInferenceServiceStub:
    return GRPCInferenceServiceStub(channel)


def _images(rng: np.random.Generator, n: int = 1, shape: tuple[int, ...] = (1, 8, 8)) -> np.ndarray:
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def _request(images: np.ndarray, *, request_id: str = "req-1", model: str = "master") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id=request_id)
    datatype, shape, raw = tensors.encode_raw(images)
    request.inputs.add(name="images", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def _oracle(classifier: ImageClassifier, images: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return classifier(torch.from_numpy(images)).numpy()


def _logits(response: pb.ModelInferResponse) -> np.ndarray:
    return tensors.decode_outputs(response)["logits"]


# --- probes and metadata -------------------------------------------------------------------------


def test_server_live_ready_and_metadata(stub: GRPCInferenceServiceStub) -> None:
    assert stub.ServerLive(pb.ServerLiveRequest()).live
    assert stub.ServerReady(pb.ServerReadyRequest()).ready
    meta = stub.ServerMetadata(pb.ServerMetadataRequest())
    assert (meta.name, meta.version, list(meta.extensions)) == ("specedge", specedge.__version__, [])


def test_model_ready(stub: GRPCInferenceServiceStub) -> None:
    assert stub.ModelReady(pb.ModelReadyRequest(name="master")).ready
    assert stub.ModelReady(pb.ModelReadyRequest(name="master", version="1")).ready
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelReady(pb.ModelReadyRequest(name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "unknown model 'nope'; this server serves: master" in info.value.details()


def test_model_metadata(stub: GRPCInferenceServiceStub) -> None:
    meta = stub.ModelMetadata(pb.ModelMetadataRequest(name="master"))
    assert (meta.name, list(meta.versions), meta.platform) == ("master", ["1"], "pytorch")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("images", "UINT8", [-1, 1, 8, 8])]
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.outputs] == [("logits", "FP32", [-1, 10])]
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelMetadata(pb.ModelMetadataRequest(name="master", version="2"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert "has no version '2'; available: 1" in info.value.details()


def test_health_service_answers_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "master"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    with pytest.raises(grpc.RpcError) as info:
        health.Check(health_pb2.HealthCheckRequest(service="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


# --- inference -----------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 5])
def test_infer_raw_matches_the_classifier(
    stub: GRPCInferenceServiceStub, classifier: ImageClassifier, rng: np.random.Generator, batch: int
) -> None:
    images = _images(rng, batch)
    response = stub.ModelInfer(_request(images, request_id="abc"))
    assert (response.model_name, response.model_version, response.id) == ("master", "1", "abc")
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("logits", "FP32", [batch, 10])
    assert len(response.raw_output_contents) == 1
    assert not output.contents.ListFields()
    np.testing.assert_array_equal(_logits(response), _oracle(classifier, images))
    params = response.parameters
    for key in ("queue_time_us", "compute_time_us"):
        assert params[key].WhichOneof("parameter_choice") == "int64_param"
        assert params[key].int64_param >= 0
    assert params["compute_time_us"].int64_param > 0


def test_infer_typed_input_matches_the_classifier(
    stub: GRPCInferenceServiceStub, classifier: ImageClassifier, rng: np.random.Generator
) -> None:
    images = _images(rng, 3)
    request = pb.ModelInferRequest(model_name="master", model_version="1", id="typed")
    datatype, shape, contents = tensors.encode_contents(images)
    request.inputs.add(name="images", datatype=datatype, shape=shape, contents=contents)
    assert list(request.inputs[0].contents.uint_contents[:3]) == images.ravel()[:3].tolist()
    response = stub.ModelInfer(request)
    np.testing.assert_array_equal(_logits(response), _oracle(classifier, images))


def test_binary_data_output_false_gives_typed_logits(
    stub: GRPCInferenceServiceStub, classifier: ImageClassifier, rng: np.random.Generator
) -> None:
    images = _images(rng, 2)
    request = _request(images)
    tensors.write_parameters(request.parameters, {"binary_data_output": False})
    response = stub.ModelInfer(request)
    assert len(response.raw_output_contents) == 0
    assert len(response.outputs[0].contents.fp32_contents) == 20
    np.testing.assert_array_equal(_logits(response), _oracle(classifier, images))


def _mutate_datatype(r: pb.ModelInferRequest) -> None:
    r.inputs[0].datatype = "FP32"


def _mutate_shape(r: pb.ModelInferRequest) -> None:
    r.inputs[0].shape[:] = [1, 1, 4, 16]


def _mutate_bytes(r: pb.ModelInferRequest) -> None:
    r.raw_input_contents[0] = r.raw_input_contents[0][:-1]


def _mutate_name(r: pb.ModelInferRequest) -> None:
    r.inputs[0].name = "image"


def _mutate_two_inputs(r: pb.ModelInferRequest) -> None:
    r.inputs.add(name="extra", datatype="UINT8", shape=[1])
    r.raw_input_contents.append(b"\x00")


def _mutate_both_contents(r: pb.ModelInferRequest) -> None:
    r.inputs[0].contents.uint_contents.extend([0] * 64)


def _mutate_model(r: pb.ModelInferRequest) -> None:
    r.model_name = "nope"


def _mutate_version(r: pb.ModelInferRequest) -> None:
    r.model_version = "7"


def _mutate_output(r: pb.ModelInferRequest) -> None:
    r.outputs.add(name="probs")


def _mutate_param(r: pb.ModelInferRequest) -> None:
    tensors.write_parameters(r.parameters, {"binary_data_output": "no"})


def _mutate_batch(r: pb.ModelInferRequest) -> None:
    r.inputs[0].shape[0] = 17
    r.raw_input_contents[0] = bytes(17 * 64)


INVALID = grpc.StatusCode.INVALID_ARGUMENT
BAD_REQUESTS = [
    (_mutate_datatype, INVALID, "input 'images' has datatype 'FP32'; model 'master' expects UINT8"),
    (_mutate_shape, INVALID, r"must be uint8 \(N, 1, 8, 8\).*got shape \[1, 1, 4, 16\]"),
    (
        _mutate_bytes,
        INVALID,
        r"'images' \(UINT8, shape \[1, 1, 8, 8\]\) needs 64 bytes of raw contents; got 63",
    ),
    (_mutate_name, INVALID, "unknown input 'image'; model 'master' expects 'images'"),
    (_mutate_two_inputs, INVALID, "takes exactly one input, 'images'; the request has 2"),
    (_mutate_both_contents, INVALID, "both raw contents and typed contents"),
    (_mutate_model, grpc.StatusCode.NOT_FOUND, "unknown model 'nope'; this server serves: master"),
    (_mutate_version, grpc.StatusCode.NOT_FOUND, "model 'master' has no version '7'; available: 1"),
    (_mutate_output, INVALID, "unknown output 'probs'"),
    (_mutate_param, INVALID, "'binary_data_output' must be a bool; got 'no'"),
    (_mutate_batch, INVALID, "1 <= N <= 16; got batch size 17"),
]


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=[m.__name__.removeprefix("_mutate_") for m, _, _ in BAD_REQUESTS])
def test_bad_requests_get_the_right_status_and_the_server_keeps_serving(
    stub: GRPCInferenceServiceStub,
    classifier: ImageClassifier,
    request_log: RequestLog,
    rng: np.random.Generator,
    case: tuple[Callable[[pb.ModelInferRequest], None], grpc.StatusCode, str],
) -> None:
    mutate, code, message = case
    images = _images(rng)
    request = _request(images, request_id="bad")
    mutate(request)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == code
    assert re.search(message, info.value.details()), info.value.details()
    good = stub.ModelInfer(_request(images, request_id="good"))
    np.testing.assert_array_equal(_logits(good), _oracle(classifier, images))
    assert [(e.request_id, e.status) for e in request_log.entries()] == [("bad", code.name), ("good", "OK")]
    assert request_log.entries()[0].details == info.value.details()


def test_unexpected_error_is_internal_and_logged(
    stub: GRPCInferenceServiceStub,
    engine: InferenceEngine,
    rng: np.random.Generator,
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("boom at /secret/path")

    healthy, engine.classifier = engine.classifier, Broken()
    with caplog.at_level(logging.ERROR, logger="specedge.cloud.status"), pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_request(_images(rng)))
    assert info.value.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in info.value.details()
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)
    engine.classifier = healthy
    assert stub.ModelInfer(_request(_images(rng))).outputs[0].name == "logits"


def test_not_ready_model_is_unavailable(
    stub: GRPCInferenceServiceStub, engine: InferenceEngine, rng: np.random.Generator
) -> None:
    engine.ready = False
    assert not stub.ServerReady(pb.ServerReadyRequest()).ready
    assert not stub.ModelReady(pb.ModelReadyRequest(name="master")).ready
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(_request(_images(rng)))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    engine.ready = True
    assert stub.ServerReady(pb.ServerReadyRequest()).ready


def test_request_log_records_exactly_the_requests_sent(
    stub: GRPCInferenceServiceStub, request_log: RequestLog, rng: np.random.Generator
) -> None:
    sent = []
    for i in range(6):
        n = 1 + i % 3
        request = _request(_images(rng, n), request_id=f"esc-{i}")
        if i == 3:
            request.model_name = "nope"
        try:
            stub.ModelInfer(request)
            status = "OK"
        except grpc.RpcError as exc:
            status = exc.code().name
        sent.append((f"esc-{i}", request.model_name, n, status))
    entries = request_log.entries()
    assert [(e.request_id, e.model_name, e.batch_size, e.status) for e in entries] == sent
    assert sent[3][3] == "NOT_FOUND"
    assert all(e.compute_time_us > 0 for e in entries if e.status == "OK")
    assert entries[3].compute_time_us == entries[3].queue_time_us == 0
    assert all(abs(e.received_unix_s - time.time()) < 60 for e in entries)
    assert request_log.path is not None
    lines = [json.loads(line) for line in request_log.path.read_text(encoding="utf-8").splitlines()]
    assert [(d["request_id"], d["model_name"], d["batch_size"], d["status"]) for d in lines] == sent


def test_probe_rpcs_are_not_logged(stub: GRPCInferenceServiceStub, request_log: RequestLog) -> None:
    stub.ServerReady(pb.ServerReadyRequest())
    stub.ModelMetadata(pb.ModelMetadataRequest(name="master"))
    assert request_log.entries() == []


# --- message limits and shutdown -----------------------------------------------------------------


@pytest.fixture(scope="module")
def wide_engine() -> InferenceEngine:
    torch.manual_seed(1)
    classifier = build_classifier("lenet5", num_classes=5000, image_shape=(3, 96, 96), input_size=16, width=0.25)
    return InferenceEngine(classifier, model_name="wide")


def test_messages_above_4_mib_both_ways(wide_engine: InferenceEngine, rng: np.random.Generator) -> None:
    server, port = create_server({"wide": wide_engine})
    try:
        images = _images(rng, 256, (3, 96, 96))
        request = _request(images, model="wide")
        assert request.ByteSize() > 4 * 2**20
        options = [("grpc.max_send_message_length", BIG), ("grpc.max_receive_message_length", BIG)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            response = GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=60)
        assert response.ByteSize() > 4 * 2**20
        logits = _logits(response)
        assert logits.shape == (256, 5000)
        # a sub-batch may take other kernels: equal up to float rounding
        np.testing.assert_allclose(logits[:2], _oracle(wide_engine.classifier, images[:2]), atol=1e-5)
    finally:
        server.stop(None)


def test_server_message_limit_is_enforced(engine: InferenceEngine, rng: np.random.Generator) -> None:
    server, port = create_server({"master": engine}, max_message_bytes=512)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = GRPCInferenceServiceStub(channel)
            assert stub.ModelInfer(_request(_images(rng, 1))).outputs  # 64 B of pixels fit
            with pytest.raises(grpc.RpcError) as info:
                stub.ModelInfer(_request(_images(rng, 16)))  # 1 KiB of pixels do not
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(None)


def test_graceful_stop_finishes_in_flight_requests(classifier: ImageClassifier, rng: np.random.Generator) -> None:
    started = threading.Event()

    class Slow(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            started.set()
            time.sleep(0.3)
            return classifier(x)

    engine = InferenceEngine(classifier, model_name="master")
    engine.classifier = Slow()
    server, port = create_server({"master": engine})
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = GRPCInferenceServiceStub(channel)
        images = _images(rng, 2)
        in_flight = stub.ModelInfer.future(_request(images), timeout=10)
        assert started.wait(timeout=10)
        stopped = server.stop(5.0)
        response = in_flight.result()
        np.testing.assert_array_equal(_logits(response), _oracle(classifier, images))
        assert stopped.wait(timeout=10)
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelInfer(_request(images), timeout=2)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
