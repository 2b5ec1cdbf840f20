"""Hostile input against a real in-process server: thousands of malformed requests over real gRPC.

Every reply must carry the status the request deserves (INVALID_ARGUMENT, NOT_FOUND, or OK for
a request that happens to be valid), never INTERNAL or UNKNOWN, with details of at most 1,000
characters. Afterwards the server is healthy, answers a valid request with the model's own
logits, and its memory (this process's RSS) grew by less than 200 MB.

The tests share one module-scoped server and run in file order; the last one checks health and
memory over all of them. Examples are derandomised, so a run is reproducible.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import grpc
import numpy as np
import psutil
import pytest
import torch
import zstandard
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specedge.cloud import InferenceEngine, RequestLog, create_server
from specedge.cloud.status import MAX_DETAILS_CHARS
from specedge.models import ImageClassifier, build_classifier
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub

IMAGE = (1, 8, 8)
MAX_BATCH = 16
BIG = 64 * 2**20
INFER = "/inference.GRPCInferenceService/ModelInfer"
OK, INVALID, NOT_FOUND = grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}
MB = 2**20


def fuzz(n: int) -> Callable[[Callable[..., None]], Callable[..., None]]:
    return settings(
        max_examples=n,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )


@dataclass
class Served:
    """The shared server, a channel to it, and what the run has seen."""

    stub: GRPCInferenceServiceStub
    channel: grpc.Channel
    classifier: ImageClassifier
    rss_before: int
    sent: int = 0
    codes: dict[str, int] = field(default_factory=dict)

    def infer(self, request: pb.ModelInferRequest | bytes, method: str = INFER) -> grpc.StatusCode:
        """Send one request (a message, or raw bytes as they are) and check the reply's status."""
        call = self.channel.unary_unary(method)  # no serializers: bytes travel as they are
        payload = request if isinstance(request, bytes) else request.SerializeToString()
        self.sent += 1
        try:
            call(payload, timeout=30)
            code, details = OK, ""
        except grpc.RpcError as exc:
            code, details = exc.code(), exc.details() or ""
        self.codes[code.name] = self.codes.get(code.name, 0) + 1
        assert code not in FORBIDDEN, f"{code.name}: {details[:300]}"
        assert len(details) <= MAX_DETAILS_CHARS
        return code


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=IMAGE, width=0.25)
    engine = InferenceEngine(classifier, model_name="master", max_batch=MAX_BATCH)
    with RequestLog(tmp_path_factory.mktemp("fuzz") / "requests.jsonl") as log:
        server, port = create_server({"master": engine}, request_log=log)
        options = [("grpc.max_send_message_length", BIG), ("grpc.max_receive_message_length", BIG)]
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            stub = GRPCInferenceServiceStub(channel)
            stub.ModelInfer(_request(np.zeros((1, *IMAGE), np.uint8)), timeout=30)  # warm up before measuring
            yield Served(stub, channel, classifier, psutil.Process().memory_info().rss)
        server.stop(None)


def _request(images: np.ndarray, *, model: str = "master") -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name=model, id="fuzz")
    datatype, shape, raw = tensors.encode_raw(images)
    request.inputs.add(name="images", datatype=datatype, shape=shape)
    request.raw_input_contents.append(raw)
    return request


def _valid_shape(shape: list[int]) -> bool:
    return len(shape) == 4 and 1 <= shape[0] <= MAX_BATCH and tuple(shape[1:]) == IMAGE


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


batches = st.integers(1, MAX_BATCH)
dims = st.one_of(st.integers(-3, 20), st.integers(-(2**63), 2**63 - 1), st.sampled_from([2**31, 2**32, 2**62]))


# --- tensors --------------------------------------------------------------------------------------


@fuzz(1000)
@given(shape=st.lists(dims, max_size=70), extra=st.integers(-3, 3))
def test_shapes_and_dims(served: Served, shape: list[int], extra: int) -> None:
    request = pb.ModelInferRequest(model_name="master")
    request.inputs.add(name="images", datatype="UINT8", shape=shape)
    size = shape[0] * 64 + extra if _valid_shape(shape) else (extra + 3) * 64
    request.raw_input_contents.append(b"\x01" * max(size, 0))
    expected = OK if _valid_shape(shape) and extra == 0 else INVALID
    assert served.infer(request) == expected


@fuzz(300)
@given(datatype=st.one_of(st.sampled_from(sorted(tensors.DATATYPES)), st.text(max_size=12)), n=batches)
def test_datatypes(served: Served, datatype: str, n: int) -> None:
    request = _request(np.zeros((n, *IMAGE), np.uint8))
    request.inputs[0].datatype = datatype
    assert served.infer(request) == (OK if datatype == "UINT8" else INVALID)


@fuzz(300)
@given(n=batches, delta=st.integers(-5000, 5000))
def test_byte_lengths(served: Served, n: int, delta: int) -> None:
    request = _request(np.zeros((n, *IMAGE), np.uint8))
    request.raw_input_contents[0] = b"\x00" * max(n * 64 + delta, 0)
    assert served.infer(request) == (OK if delta == 0 else INVALID)


@fuzz(300)
@given(batch=st.one_of(st.integers(MAX_BATCH + 1, 2**20), st.integers(2**20, 2**62)), raw=st.booleans())
def test_oversize_declared_shapes(served: Served, batch: int, raw: bool) -> None:
    request = pb.ModelInferRequest(model_name="master")
    request.inputs.add(name="images", datatype="UINT8", shape=[batch, *IMAGE])
    if raw:
        request.raw_input_contents.append(b"\x00" * 64)
    else:
        request.inputs[0].contents.uint_contents.extend([0] * 64)
    assert served.infer(request) == INVALID


@fuzz(300)
@given(
    n=batches,
    field=st.sampled_from(["uint_contents", "int_contents", "fp32_contents", "bool_contents", "uint64_contents"]),
    count_delta=st.integers(-3, 3),
    high=st.sampled_from([1, 255, 256, 2**31 - 1]),
    with_raw=st.booleans(),
)
def test_typed_contents(served: Served, *, n: int, field: str, count_delta: int, high: int, with_raw: bool) -> None:
    request = pb.ModelInferRequest(model_name="master")
    tensor = request.inputs.add(name="images", datatype="UINT8", shape=[n, *IMAGE])
    count = max(n * 64 + count_delta, 0)
    value: object = {"fp32_contents": float(high), "bool_contents": True}.get(field, high)
    getattr(tensor.contents, field).extend([value] * count)
    if with_raw:
        request.raw_input_contents.append(b"\x00" * n * 64)
    valid = field == "uint_contents" and count_delta == 0 and high <= 255 and not with_raw
    assert served.infer(request) == (OK if valid else INVALID)


def test_a_large_typed_request_is_refused_by_count(served: Served) -> None:
    request = pb.ModelInferRequest(model_name="master")
    request.inputs.add(name="images", datatype="UINT8", shape=[2, *IMAGE]).contents.uint_contents.extend(
        np.ones(8 * MB, np.uint32)
    )
    for _ in range(3):
        assert served.infer(request) == INVALID


# --- parameters -----------------------------------------------------------------------------------

_KEYS = [
    "binary_data_output", "timeout", "priority", "class_count", "classification", "sequence_id",
    "specedge_recovery", "specedge_speculative_prediction", "specedge_content_encoding", "specedge_nope", "x",
]  # fmt: skip
_VALUES = st.one_of(
    st.booleans(), st.integers(-(2**63), 2**63 - 1), st.integers(2**63, 2**64 - 1), st.floats(allow_nan=True),
    st.text(max_size=8), st.none(),
)  # fmt: skip


def _set_params(params: object, values: dict[str, object]) -> None:
    for key, value in values.items():
        param = params[key]  # type: ignore[index]
        if value is None:
            param.Clear()  # a parameter with no value set
        elif isinstance(value, bool):
            param.bool_param = value
        elif isinstance(value, int):
            if value >= 2**63:
                param.uint64_param = value
            else:
                param.int64_param = value
        elif isinstance(value, float):
            param.double_param = value
        else:
            param.string_param = value


@fuzz(600)
@given(
    request_params=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=4),
    input_params=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=2),
    output_params=st.dictionaries(st.sampled_from(_KEYS), _VALUES, max_size=2),
    output_name=st.sampled_from(["logits", "probs", ""]),
)
def test_parameters(
    served: Served,
    request_params: dict[str, object],
    input_params: dict[str, object],
    output_params: dict[str, object],
    output_name: str,
) -> None:
    request = _request(np.zeros((2, *IMAGE), np.uint8))
    _set_params(request.parameters, request_params)
    _set_params(request.inputs[0].parameters, input_params)
    _set_params(request.outputs.add(name=output_name).parameters, output_params)
    code = served.infer(request)
    assert code in {OK, INVALID}
    if output_name != "logits":
        assert code == INVALID


# --- zstd -----------------------------------------------------------------------------------------


def _unsized(size: int) -> bytes:
    compressor = zstandard.ZstdCompressor().compressobj()
    return b"".join([*(compressor.compress(b"\0" * MB) for _ in range(size // MB)), compressor.flush()])


@pytest.fixture(scope="module")
def bombs() -> list[bytes]:
    sized = zstandard.ZstdCompressor().compress(b"\0" * (256 * MB))  # header: 256 MiB, body: ~8 kB
    return [sized, _unsized(128 * MB), sized + sized, b"\x28\xb5\x2f\xfd" + b"\xff" * 64, sized[:-10]]


@fuzz(200)
@given(n=batches, which=st.integers(0, 4))
def test_decompression_bombs(served: Served, bombs: list[bytes], n: int, which: int) -> None:
    request = _request(np.zeros((n, *IMAGE), np.uint8))
    request.raw_input_contents[0] = bombs[which]
    request.inputs[0].parameters["specedge_content_encoding"].string_param = "zstd"
    assert served.infer(request) == INVALID


# --- models, versions, names ----------------------------------------------------------------------


@fuzz(300)
@given(model=st.text(max_size=40), version=st.text(max_size=8))
def test_unknown_model_or_version(served: Served, model: str, version: str) -> None:
    request = _request(np.zeros((1, *IMAGE), np.uint8), model=model)
    request.model_version = version
    known = model == "master" and version in ("", "1")
    assert served.infer(request) == (OK if known else NOT_FOUND)


_HUGE = "n" * MB


def _huge(where: str) -> pb.ModelInferRequest:
    request = _request(np.zeros((1, *IMAGE), np.uint8))
    if where == "model":
        request.model_name = _HUGE
    elif where == "version":
        request.model_version = _HUGE
    elif where == "input":
        request.inputs[0].name = _HUGE
    elif where == "datatype":
        request.inputs[0].datatype = _HUGE
    elif where == "output":
        request.outputs.add(name=_HUGE)
    elif where == "parameter":
        request.parameters["specedge_" + _HUGE].bool_param = True
    elif where == "encoding":
        request.inputs[0].parameters["specedge_content_encoding"].string_param = _HUGE
    else:
        request.id = _HUGE
    return request


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        ("model", NOT_FOUND), ("version", NOT_FOUND), ("input", INVALID), ("datatype", INVALID),
        ("output", INVALID), ("parameter", INVALID), ("encoding", INVALID), ("id", OK),
    ],
)  # fmt: skip
def test_names_of_one_megabyte(served: Served, where: str, expected: grpc.StatusCode) -> None:
    for _ in range(3):
        assert served.infer(_huge(where)) == expected  # details bounded: checked in Served.infer


# --- bytes that are not a request ---------------------------------------------------------------------


_METHODS = [INFER, *(f"/inference.GRPCInferenceService/{m}" for m in ("ModelReady", "ModelMetadata", "ModelConfig"))]


@fuzz(800)
@given(
    body=st.binary(max_size=64),
    kind=st.sampled_from(["truncated", "bad utf-8", "bad wire type", "random"]),
    method=st.sampled_from(_METHODS),
)
def test_undecodable_bytes(served: Served, body: bytes, kind: str, method: str) -> None:
    payload = {
        "truncated": b"\x0a" + _varint(len(body) + 10) + body,  # a string field longer than the message
        "bad utf-8": b"\x0a\x02\xff\xfe" + body,  # proto3 strings must be UTF-8
        "bad wire type": b"\x0f" + body,  # wire type 7 does not exist
        "random": body,  # may parse: then the servicer judges it
    }[kind]
    code = served.infer(payload, method)
    assert code in {OK, INVALID, NOT_FOUND}
    if kind != "random":
        assert code == INVALID


# --- afterwards -------------------------------------------------------------------------------------


def test_zz_server_healthy_correct_and_memory_bounded(served: Served) -> None:
    assert served.sent >= 3000, served.codes
    health = health_pb2_grpc.HealthStub(served.channel)
    assert health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10).status == (
        health_pb2.HealthCheckResponse.SERVING
    )
    assert served.stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready
    images = np.random.default_rng(0).integers(0, 256, size=(3, *IMAGE), dtype=np.uint8)
    response = served.stub.ModelInfer(_request(images), timeout=30)
    logits = tensors.decode_outputs(response)["logits"]
    with torch.inference_mode():
        expected = served.classifier(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-6)
    grown_mb = (psutil.Process().memory_info().rss - served.rss_before) / MB
    assert grown_mb < 200, f"RSS grew {grown_mb:.0f} MB over {served.sent} requests"
