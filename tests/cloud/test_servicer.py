"""The KServe v2 servicer over real gRPC on localhost: every RPC, every refusal, the request log."""

from __future__ import annotations

import dataclasses
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
from specedge.cloud import InferenceEngine, InferenceResult, ModelMetadata, RequestLog, create_server
from specedge.cloud.engine import ModelConfigInfo
from specedge.cloud.statistics import BatchStats, Duration, ModelStats
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
    assert (meta.name, meta.version) == ("specedge", specedge.__version__)
    assert list(meta.extensions) == ["classification", "model_configuration", "statistics"]


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
    (_mutate_datatype, INVALID, "input 'images' has datatype 'FP32'; the model expects UINT8"),
    (_mutate_shape, INVALID, r"has shape \[1, 1, 4, 16\]; the model expects \[N, 1, 8, 8\]"),
    (
        _mutate_bytes,
        INVALID,
        r"'images' \(UINT8, shape \[1, 1, 8, 8\]\) needs 64 bytes of raw contents; got 63",
    ),
    (_mutate_name, INVALID, "unknown input 'image'; the model's input is 'images'"),
    (_mutate_two_inputs, INVALID, "takes exactly one input, 'images'; the request has 2"),
    (_mutate_both_contents, INVALID, "both raw contents and typed contents"),
    (_mutate_model, grpc.StatusCode.NOT_FOUND, "unknown model 'nope'; this server serves: master"),
    (_mutate_version, grpc.StatusCode.NOT_FOUND, "model 'master' has no version '7'; available: 1"),
    (_mutate_output, INVALID, "unknown output 'probs'"),
    (_mutate_param, INVALID, "'binary_data_output' must be a bool .*; got 'no'"),
    (_mutate_batch, INVALID, "batch size 17; this server accepts at most 16 per request"),
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


# --- issue 10: Triton parameters, streaming, configuration, statistics -----------------------------


def _top_k_strings(logits: np.ndarray, k: int) -> list[list[bytes]]:
    """What Triton's classification extension answers: "%f:%d", best first."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :k]
    return [[b"%f:%d" % (float(row[i]), int(i)) for i in idx] for row, idx in zip(logits, order, strict=True)]


@pytest.mark.parametrize("binary", [True, False])
def test_classification_gives_top_k_strings_like_triton(
    stub: GRPCInferenceServiceStub, classifier: ImageClassifier, rng: np.random.Generator, binary: bool
) -> None:
    images = _images(rng, 4)
    request = _request(images)
    tensors.write_parameters(request.outputs.add(name="logits").parameters, {"classification": 3})
    tensors.write_parameters(request.parameters, {"binary_data_output": binary})
    response = stub.ModelInfer(request)
    (output,) = response.outputs
    assert (output.name, output.datatype, list(output.shape)) == ("logits", "BYTES", [4, 3])
    assert len(response.raw_output_contents) == int(binary)
    assert _logits(response).tolist() == _top_k_strings(_oracle(classifier, images), 3)


PARAMETER_CASES = [
    ({"priority": 1}, {}, INVALID, "priority is not supported"),
    ({"timeout": 1}, {}, grpc.StatusCode.DEADLINE_EXCEEDED, "deadline"),
    ({}, {"classification": 11}, INVALID, "classification"),
    ({}, {"classification": -1}, INVALID, "classification"),
    ({"specedge_recovery": 1}, {}, INVALID, "specedge_recovery"),
]


@pytest.mark.parametrize(
    "case",
    PARAMETER_CASES,
    ids=["priority", "timeout-expired", "class-count-too-large", "class-count-negative", "recovery-not-bool"],
)
def test_standard_and_specedge_parameters_are_checked(
    stub: GRPCInferenceServiceStub,
    request_log: RequestLog,
    rng: np.random.Generator,
    case: tuple[dict[str, object], dict[str, object], grpc.StatusCode, str],
) -> None:
    params, output_params, code, message = case
    request = _request(_images(rng), request_id="p")
    tensors.write_parameters(request.parameters, params)
    if output_params:
        tensors.write_parameters(request.outputs.add(name="logits").parameters, output_params)
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelInfer(request)
    assert info.value.code() == code
    assert message in info.value.details(), info.value.details()
    assert [(e.request_id, e.status) for e in request_log.entries()] == [("p", code.name)]


def test_generous_timeout_and_grpc_deadline_are_answered(
    stub: GRPCInferenceServiceStub, classifier: ImageClassifier, rng: np.random.Generator
) -> None:
    images = _images(rng, 2)
    request = _request(images)
    tensors.write_parameters(request.parameters, {"timeout": 30_000_000, "priority": 0})
    response = stub.ModelInfer(request, timeout=30)
    np.testing.assert_array_equal(_logits(response), _oracle(classifier, images))


def test_recovery_with_speculative_prediction_is_logged_with_agreement(
    stub: GRPCInferenceServiceStub, classifier: ImageClassifier, request_log: RequestLog, rng: np.random.Generator
) -> None:
    images = _images(rng, 1)
    top = int(_oracle(classifier, images).argmax())
    for request_id, guess in (("agree", top), ("disagree", (top + 1) % 10)):
        request = _request(images, request_id=request_id)
        tensors.write_parameters(
            request.parameters, {"specedge_recovery": True, "specedge_speculative_prediction": guess}
        )
        stub.ModelInfer(request)
    entries = request_log.entries()
    assert [(e.request_id, e.recovery, e.speculative_prediction, e.agreed) for e in entries] == [
        ("agree", True, top, True),
        ("disagree", True, (top + 1) % 10, False),
    ]


def test_stream_answers_each_request_in_order_and_survives_bad_ones(
    stub: GRPCInferenceServiceStub, classifier: ImageClassifier, request_log: RequestLog, rng: np.random.Generator
) -> None:
    batches = [_images(rng, n) for n in (1, 2, 3, 1)]
    requests = [_request(images, request_id=f"s-{i}") for i, images in enumerate(batches)]
    requests[1].model_name = "nope"
    requests[2].inputs[0].datatype = "FP32"
    replies = list(stub.ModelStreamInfer(iter(requests), timeout=30))
    assert [r.infer_response.id for r in replies] == ["s-0", "s-1", "s-2", "s-3"]
    assert [r.error_message.split(":")[0] for r in replies] == ["", "NOT_FOUND", "INVALID_ARGUMENT", ""]
    assert "unknown model 'nope'" in replies[1].error_message
    for i in (0, 3):
        np.testing.assert_array_equal(_logits(replies[i].infer_response), _oracle(classifier, batches[i]))
        assert replies[i].infer_response.parameters["compute_time_us"].int64_param > 0
    statuses = [(e.request_id, e.status) for e in request_log.entries()]
    assert statuses == [("s-0", "OK"), ("s-1", "NOT_FOUND"), ("s-2", "INVALID_ARGUMENT"), ("s-3", "OK")]


def test_model_config_states_tensors_and_batch_size(stub: GRPCInferenceServiceStub) -> None:
    config = stub.ModelConfig(pb.ModelConfigRequest(name="master")).config
    assert (config.name, config.platform, config.max_batch_size) == ("master", "pytorch", 16)
    (image,) = config.input
    assert (image.name, image.data_type, image.format, list(image.dims)) == (
        "images",
        pb.TYPE_UINT8,
        pb.ModelInput.FORMAT_NCHW,
        [1, 8, 8],
    )
    (logits,) = config.output
    assert (logits.name, logits.data_type, list(logits.dims)) == ("logits", pb.TYPE_FP32, [10])
    with pytest.raises(grpc.RpcError) as info:
        stub.ModelConfig(pb.ModelConfigRequest(name="nope"))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


class _Recording:
    """A served model with batching config and statistics that records how ``infer`` was called."""

    def __init__(self, engine: InferenceEngine, name: str, stats: ModelStats) -> None:
        self.engine, self.model_name, self.model_version, self.ready = engine, name, "1", True
        self.stats = stats
        self.calls: list[dict[str, object]] = []

    def metadata(self) -> ModelMetadata:
        return dataclasses.replace(self.engine.metadata(), name=self.model_name)

    def config(self) -> ModelConfigInfo:
        return ModelConfigInfo(
            name=self.model_name,
            platform="pytorch",
            max_batch_size=8,
            max_queue_delay_us=500,
            max_queue_size=32,
            preferred_batch_sizes=(4, 8),
            instance_count=2,
        )

    def statistics(self) -> ModelStats:
        return self.stats

    def infer(
        self, images: np.ndarray, *, arrival_ns: int, deadline_ns: int | None = None, recovery: bool = False
    ) -> InferenceResult:
        self.calls.append({"arrival_ns": arrival_ns, "deadline_ns": deadline_ns, "recovery": recovery})
        return self.engine.infer(images)


STATS = ModelStats(
    name="a",
    version="1",
    last_inference_ms=1_700_000_000_123,
    inference_count=12,
    execution_count=3,
    success=Duration(5, 5_000),
    fail=Duration(2, 300),
    queue=Duration(5, 1_000),
    compute_input=Duration(5, 50),
    compute_infer=Duration(5, 3_000),
    compute_output=Duration(5, 70),
    batch_stats={8: BatchStats(1, 2_000), 2: BatchStats(2, 1_000)},
)


@pytest.fixture
def recording_stub(engine: InferenceEngine) -> Iterator[tuple[GRPCInferenceServiceStub, dict[str, _Recording]]]:
    models = {name: _Recording(engine, name, dataclasses.replace(STATS, name=name)) for name in ("b", "a")}
    server, port = create_server(models)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield GRPCInferenceServiceStub(channel), models
    server.stop(None)


def test_infer_passes_arrival_deadline_and_recovery_to_the_model(
    recording_stub: tuple[GRPCInferenceServiceStub, dict[str, _Recording]], rng: np.random.Generator
) -> None:
    stub, models = recording_stub
    before_ns = time.perf_counter_ns()
    request = _request(_images(rng), model="a")
    tensors.write_parameters(request.parameters, {"timeout": 20_000_000, "specedge_recovery": True})
    stub.ModelInfer(request, timeout=60)
    stub.ModelInfer(_request(_images(rng), model="a"))
    (call, plain) = models["a"].calls
    arrival_ns = call["arrival_ns"]
    assert isinstance(arrival_ns, int) and before_ns < arrival_ns < time.perf_counter_ns()
    assert call["deadline_ns"] == arrival_ns + 20_000_000_000  # the timeout parameter beats the 60 s deadline
    assert call["recovery"] is True
    assert plain["deadline_ns"] is None and plain["recovery"] is False
    stub.ModelInfer(_request(_images(rng), model="a"), timeout=5)
    by_grpc = models["a"].calls[-1]
    assert isinstance(by_grpc["arrival_ns"], int) and isinstance(by_grpc["deadline_ns"], int)
    assert 4e9 < by_grpc["deadline_ns"] - by_grpc["arrival_ns"] < 5.1e9  # the gRPC deadline alone (~5 s)


def test_model_config_states_dynamic_batching(
    recording_stub: tuple[GRPCInferenceServiceStub, dict[str, _Recording]],
) -> None:
    stub, _ = recording_stub
    config = stub.ModelConfig(pb.ModelConfigRequest(name="a", version="1")).config
    assert config.max_batch_size == 8
    batching = config.dynamic_batching
    assert batching.max_queue_delay_microseconds == 500
    assert list(batching.preferred_batch_size) == [4, 8]
    assert batching.default_queue_policy.max_queue_size == 32
    assert [(g.name, g.count) for g in config.instance_group] == [("a", 2)]


def test_model_statistics_one_or_all_models(
    recording_stub: tuple[GRPCInferenceServiceStub, dict[str, _Recording]],
) -> None:
    stub, _ = recording_stub
    (one,) = stub.ModelStatistics(pb.ModelStatisticsRequest(name="a")).model_stats
    assert (one.name, one.version, one.last_inference) == ("a", "1", 1_700_000_000_123)
    assert (one.inference_count, one.execution_count) == (12, 3)
    infer = one.inference_stats
    durations = {f: (getattr(infer, f).count, getattr(infer, f).ns) for f in ("success", "fail", "queue")}
    assert durations == {"success": (5, 5_000), "fail": (2, 300), "queue": (5, 1_000)}
    assert (infer.compute_input.ns, infer.compute_infer.ns, infer.compute_output.ns) == (50, 3_000, 70)
    assert [(b.batch_size, b.compute_infer.count, b.compute_infer.ns) for b in one.batch_stats] == [
        (2, 2, 1_000),
        (8, 1, 2_000),
    ]
    every = stub.ModelStatistics(pb.ModelStatisticsRequest()).model_stats
    assert [s.name for s in every] == ["a", "b"]
    for bad, code in (
        (pb.ModelStatisticsRequest(name="nope"), grpc.StatusCode.NOT_FOUND),
        (pb.ModelStatisticsRequest(name="a", version="9"), grpc.StatusCode.NOT_FOUND),
        (pb.ModelStatisticsRequest(version="1"), INVALID),
    ):
        with pytest.raises(grpc.RpcError) as info:
            stub.ModelStatistics(bad)
        assert info.value.code() == code
