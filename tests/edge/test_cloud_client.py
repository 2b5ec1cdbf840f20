"""CloudClient against a real KServe v2 server on localhost, and its failures as CloudError kinds."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, RequestLog, create_server
from specedge.edge.cloud_client import CloudClient, CloudResponse
from specedge.errors import (
    CloudError,
    CloudOverloaded,
    CloudProtocolError,
    CloudRejected,
    CloudTimeout,
    CloudUnavailable,
    ConfigError,
)
from specedge.models import ImageClassifier, build_classifier
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import (
    GRPCInferenceServiceServicer,
    add_GRPCInferenceServiceServicer_to_server,
)


@pytest.fixture(scope="module")
def classifier() -> ImageClassifier:
    torch.manual_seed(0)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)


@pytest.fixture
def request_log() -> RequestLog:
    return RequestLog()


@pytest.fixture
def target(classifier: ImageClassifier, request_log: RequestLog) -> Iterator[str]:
    engine = InferenceEngine(classifier, model_name="master", max_batch=32)
    server, port = create_server({"master": engine}, request_log=request_log)
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def client(target: str) -> Iterator[CloudClient]:
    with CloudClient(target, model_name="master", timeout_s=10.0) as client:
        yield client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_infer_returns_the_classifier_logits_and_accounting(
    client: CloudClient, classifier: ImageClassifier, request_log: RequestLog, rng: np.random.Generator
) -> None:
    images = rng.integers(0, 256, size=(4, 1, 8, 8), dtype=np.uint8)
    response = client.infer(images, request_id="esc-7")
    assert isinstance(response, CloudResponse)
    with torch.inference_mode():
        np.testing.assert_array_equal(response.logits, classifier(torch.from_numpy(images)).numpy())
    assert response.logits.dtype == np.float32
    assert response.request_id == "esc-7"
    assert response.compute_time_us > 0 and response.queue_time_us >= 0
    assert response.round_trip_us >= response.compute_time_us
    assert response.request_bytes > images.nbytes
    assert response.response_bytes > 4 * 10 * 4
    (entry,) = request_log.entries()
    assert (entry.request_id, entry.batch_size, entry.status) == ("esc-7", 4, "OK")
    assert (entry.queue_time_us, entry.compute_time_us) == (response.queue_time_us, response.compute_time_us)
    with pytest.raises(AttributeError):
        response.request_id = "x"  # type: ignore[misc]


def test_probes_and_metadata(client: CloudClient) -> None:
    client.wait_until_ready(5)
    assert client.server_live() and client.server_ready() and client.model_ready()
    assert client.model_metadata() == {
        "name": "master",
        "versions": ["1"],
        "platform": "pytorch",
        "inputs": [{"name": "images", "datatype": "UINT8", "shape": [-1, 1, 8, 8]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
    }


def test_server_side_invalid_argument_is_rejected(client: CloudClient, target: str) -> None:
    with pytest.raises(
        CloudRejected, match=f"cloud request bad-1 to {target} failed: INVALID_ARGUMENT: .*shape"
    ) as info:
        client.infer(np.zeros((1, 1, 4, 4), dtype=np.uint8), request_id="bad-1")
    assert (info.value.kind, info.value.status) == ("rejected", "INVALID_ARGUMENT")
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_unknown_model_fails_fast(target: str) -> None:
    with CloudClient(target, model_name="nope") as client:
        with pytest.raises(CloudRejected, match="NOT_FOUND: unknown model 'nope'") as info:
            client.wait_until_ready(30)
        assert info.value.status == "NOT_FOUND"
        with pytest.raises(CloudRejected, match="NOT_FOUND"):
            client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="r")


def test_unreachable_target_is_unavailable() -> None:
    target = f"127.0.0.1:{_free_port()}"
    with CloudClient(target, model_name="master", timeout_s=5.0) as client:
        with pytest.raises(CloudUnavailable, match=f"cloud request r-1 to {target} failed: UNAVAILABLE") as info:
            client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="r-1")
        assert (info.value.kind, info.value.status) == ("unavailable", "UNAVAILABLE")
        with pytest.raises(CloudUnavailable, match=f"cloud ServerReady to {target} failed: UNAVAILABLE"):
            client.probe(timeout_s=5.0)
        with pytest.raises(CloudUnavailable, match=r"not ready within 0\.2 s"):
            client.wait_until_ready(0.2)


def test_probe_returns_the_round_trip(client: CloudClient) -> None:
    assert client.probe(timeout_s=5.0) > 0


def test_round_trips_are_measured_on_the_given_clock(target: str) -> None:
    ticks = iter(np.arange(100.0, 200.0, 0.25))  # each reading 0.25 s after the previous one
    with CloudClient(target, model_name="master", clock=lambda: float(next(ticks))) as client:
        assert client.probe(timeout_s=5.0) == 0.25
        response = client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="c-1")
    assert response.round_trip_us == 250_000


@pytest.mark.parametrize("timeout_s", [0, -1, float("nan"), float("inf")])
def test_timeouts_are_validated(timeout_s: float, target: str) -> None:
    with pytest.raises(ConfigError, match="timeout_s must be a finite number of seconds > 0; got"):
        CloudClient("127.0.0.1:1", model_name="m", timeout_s=timeout_s)
    with CloudClient(target, model_name="master") as client:
        with pytest.raises(ConfigError, match="timeout_s must be"):
            client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="r", timeout_s=timeout_s)
        with pytest.raises(ConfigError, match="timeout_s must be"):
            client.probe(timeout_s=timeout_s)


# --- a misbehaving server ------------------------------------------------------------------------


class _FakeServicer(GRPCInferenceServiceServicer):
    """Answers ModelInfer with whatever ``make`` builds from the request (it may abort or block)."""

    def __init__(self, make: Callable[[pb.ModelInferRequest, grpc.ServicerContext], pb.ModelInferResponse]) -> None:
        self.make = make

    def ModelInfer(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        return self.make(request, context)


@pytest.fixture
def fake_server() -> Iterator[Callable[[Callable[..., pb.ModelInferResponse]], str]]:
    """Start a server answering with a given function; yields a starter returning its target."""
    servers: list[grpc.Server] = []

    def start(make: Callable[..., pb.ModelInferResponse]) -> str:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        add_GRPCInferenceServiceServicer_to_server(_FakeServicer(make), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.stop(None)


_S = grpc.StatusCode
_KINDS = {
    **dict.fromkeys(["UNAVAILABLE", "ABORTED", "CANCELLED", "INTERNAL", "UNKNOWN", "DATA_LOSS"], CloudUnavailable),
    "DEADLINE_EXCEEDED": CloudTimeout,
    "RESOURCE_EXHAUSTED": CloudOverloaded,
    **dict.fromkeys(
        [
            "INVALID_ARGUMENT",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "FAILED_PRECONDITION",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "PERMISSION_DENIED",
            "UNAUTHENTICATED",
        ],
        CloudRejected,
    ),
}


def test_every_failing_status_code_has_a_kind() -> None:
    assert set(_KINDS) == {code.name for code in _S if code is not _S.OK}


@pytest.mark.parametrize(("status", "error"), sorted(_KINDS.items()))
def test_status_codes_map_to_kinds(status: str, error: type[CloudError], fake_server: Callable[..., str]) -> None:
    def abort(request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        context.abort(_S[status], f"chosen failure {status}")
        raise AssertionError("abort returns by raising")

    target = fake_server(abort)
    with CloudClient(target, model_name="master") as client, pytest.raises(CloudError) as info:
        client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="k-1")
    assert type(info.value) is error
    assert info.value.status == status
    assert (
        info.value.kind
        == {
            CloudUnavailable: "unavailable",
            CloudTimeout: "timeout",
            CloudOverloaded: "overloaded",
            CloudRejected: "rejected",
        }[error]
    )
    assert str(info.value) == f"cloud request k-1 to {target} failed: {status}: chosen failure {status}"


def test_long_server_details_are_cut_to_one_short_line(fake_server: Callable[..., str]) -> None:
    def abort(request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        context.abort(_S.INTERNAL, "line one\nline two " + "x" * 5000)
        raise AssertionError("abort returns by raising")

    with CloudClient(fake_server(abort), model_name="master") as client, pytest.raises(CloudUnavailable) as info:
        client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="long")
    message = str(info.value)
    assert "\n" not in message and "line one line two" in message
    assert len(message) < 450 and message.endswith("... (5018 chars)")


def test_a_per_call_timeout_overrides_the_default(fake_server: Callable[..., str]) -> None:
    release = threading.Event()

    def stall(request: pb.ModelInferRequest, context: grpc.ServicerContext) -> pb.ModelInferResponse:
        release.wait(10)
        return _logits_response(request, np.zeros((1, 10), np.float32))

    target = fake_server(stall)
    try:
        with (
            CloudClient(target, model_name="master", timeout_s=30.0) as client,
            pytest.raises(CloudTimeout, match="failed: DEADLINE_EXCEEDED") as info,
        ):
            client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="slow-1", timeout_s=0.05)
    finally:
        release.set()
    assert (info.value.kind, info.value.status) == ("timeout", "DEADLINE_EXCEEDED")


def _logits_response(request: pb.ModelInferRequest, logits: np.ndarray, **overrides: object) -> pb.ModelInferResponse:
    response = pb.ModelInferResponse(model_name="master", model_version="1", id=request.id)
    datatype, shape, raw = tensors.encode_raw(logits)
    output = response.outputs.add(name="logits", datatype=datatype, shape=shape)
    response.raw_output_contents.append(raw)
    for key, value in overrides.items():
        if key == "id":
            response.id = str(value)
        elif key == "extra_output":
            response.outputs.add(name="extra", datatype="FP32", shape=[0])
            response.raw_output_contents.append(b"")
        elif key == "truncate":
            response.raw_output_contents[0] = raw[:-4]
        elif key == "datatype":
            output.datatype = str(value)
    return response


@pytest.mark.parametrize(
    ("logits", "overrides", "message"),
    [
        (np.zeros((2, 10), np.float32), {"id": "other"}, "carries id 'other'"),
        (np.zeros((2, 10), np.float32), {"id": "y" * 1000}, r"carries id 'yyyy.*\.\.\. \(1013 chars\)$"),
        (np.zeros((2, 10), np.float32), {"extra_output": True}, "has 2 outputs; expected one"),
        (np.zeros((2, 10), np.float64), {}, "has output 'logits' of type FP64; expected FP32"),
        (np.zeros((2, 10), np.float32), {"truncate": True}, "is malformed: .*needs 80 bytes"),
        (np.zeros((3, 10), np.float32), {}, r"of shape \[3, 10\]; expected \(2, K\)"),
        (np.zeros((20,), np.float32), {}, r"of shape \[20\]; expected \(2, K\)"),
    ],
)
def test_malformed_responses_are_protocol_errors(
    logits: np.ndarray, overrides: dict, message: str, fake_server: Callable[..., str]
) -> None:
    target = fake_server(lambda request, context: _logits_response(request, logits, **overrides))
    with (
        CloudClient(target, model_name="master") as client,
        pytest.raises(CloudProtocolError, match=message) as info,
    ):
        client.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8), request_id="r-9")
    assert (info.value.kind, info.value.status) == ("protocol", None)
    assert str(info.value).startswith(f"cloud response to request r-9 from {target} ")
