"""CloudClient against a real KServe v2 server on localhost, and its failures as CloudError."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from concurrent import futures

import grpc
import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, RequestLog, create_server
from specedge.edge.cloud_client import CloudClient, CloudResponse, CloudRpcError
from specedge.errors import CloudError, ConfigError
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


def test_server_side_invalid_argument_is_a_cloud_error(client: CloudClient, target: str) -> None:
    with pytest.raises(
        CloudError, match=f"cloud request bad-1 to {target} failed: INVALID_ARGUMENT: .*got shape"
    ) as info:
        client.infer(np.zeros((1, 1, 4, 4), dtype=np.uint8), request_id="bad-1")
    assert isinstance(info.value, CloudRpcError)
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(info.value.__cause__, grpc.RpcError)


def test_unknown_model_fails_fast(target: str) -> None:
    with CloudClient(target, model_name="nope") as client:
        with pytest.raises(CloudRpcError, match="NOT_FOUND: unknown model 'nope'") as info:
            client.wait_until_ready(30)
        assert info.value.code == grpc.StatusCode.NOT_FOUND
        with pytest.raises(CloudError, match="NOT_FOUND"):
            client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="r")


def test_unreachable_target_is_a_cloud_error() -> None:
    target = f"127.0.0.1:{_free_port()}"
    with CloudClient(target, model_name="master", timeout_s=0.5) as client:
        with pytest.raises(CloudError, match=f"cloud request r-1 to {target} failed: (UNAVAILABLE|DEADLINE_EXCEEDED)"):
            client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="r-1")
        with pytest.raises(CloudError, match=r"not ready within 0\.2 s"):
            client.wait_until_ready(0.2)


def test_constructor_validates() -> None:
    with pytest.raises(ConfigError, match="timeout_s must be > 0 seconds; got 0"):
        CloudClient("127.0.0.1:1", model_name="m", timeout_s=0)


# --- malformed answers from a misbehaving server -------------------------------------------------


class _FakeServicer(GRPCInferenceServiceServicer):
    """Answers ModelInfer with whatever ``make`` builds from the request."""

    def __init__(self, make: Callable[[pb.ModelInferRequest], pb.ModelInferResponse]) -> None:
        self.make = make

    def ModelInfer(  # noqa: N802 (gRPC method name)
        self, request: pb.ModelInferRequest, context: grpc.ServicerContext
    ) -> pb.ModelInferResponse:
        return self.make(request)


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
        (np.zeros((2, 10), np.float32), {"extra_output": True}, "has 2 outputs; expected one"),
        (np.zeros((2, 10), np.float64), {}, "output 'logits' is FP64; expected FP32"),
        (np.zeros((2, 10), np.float32), {"truncate": True}, "is malformed: .*needs 80 bytes"),
        (np.zeros((3, 10), np.float32), {}, r"has shape \[3, 10\]; expected \(2, K\)"),
        (np.zeros((20,), np.float32), {}, r"has shape \[20\]; expected \(2, K\)"),
    ],
)
def test_malformed_responses_are_cloud_errors(logits: np.ndarray, overrides: dict, message: str) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    add_GRPCInferenceServiceServicer_to_server(
        _FakeServicer(lambda request: _logits_response(request, logits, **overrides)), server
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with (
            CloudClient(f"127.0.0.1:{port}", model_name="master") as client,
            pytest.raises(CloudError, match=message),
        ):
            client.infer(np.zeros((2, 1, 8, 8), dtype=np.uint8), request_id="r-9")
    finally:
        server.stop(None)
