"""Strict ModelInfer validation: every refusal with its message, zstd bombs, bounded status texts."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import grpc
import numpy as np
import psutil
import pytest
import zstandard

from specedge.cloud import status
from specedge.cloud.engine import ModelNotFoundError, TensorSignature
from specedge.cloud.validation import (
    MAX_DIMS,
    Limits,
    RequestTooLargeError,
    UnsupportedParameterError,
    parse_infer_request,
    short,
)
from specedge.errors import ConfigError, SpecEdgeError, TensorError
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb

SIG = TensorSignature("images", "UINT8", (-1, 1, 8, 8))
OUTPUTS = (TensorSignature("logits", "FP32", (-1, 10)),)
LIMITS = Limits(max_batch=16, max_request_bytes=16 * 64, max_decompressed_bytes=16 * 64)
Mutate = Callable[[pb.ModelInferRequest], None]


def _images(n: int = 2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8)


def _request(images: np.ndarray | None = None, *, typed: bool = False) -> pb.ModelInferRequest:
    images = _images() if images is None else images
    request = pb.ModelInferRequest(model_name="master", id="r")
    tensor = request.inputs.add(name="images", datatype="UINT8", shape=list(images.shape))
    if typed:
        tensor.contents.uint_contents.extend(images.ravel().tolist())
    else:
        request.raw_input_contents.append(images.tobytes())
    return request


def _parse(request: pb.ModelInferRequest, limits: Limits = LIMITS) -> object:
    return parse_infer_request(request, SIG, OUTPUTS, limits)


# --- accepted requests ---------------------------------------------------------------------------


def test_raw_and_typed_requests_decode_to_the_images() -> None:
    images = _images(3)
    for typed in (False, True):
        parsed = parse_infer_request(_request(images, typed=typed), SIG, OUTPUTS, LIMITS)
        np.testing.assert_array_equal(parsed.images, images)
        assert parsed.images.dtype == np.uint8
        assert parsed.binary_output is True
        assert parsed.class_count == 0
        assert parsed.timeout_us is None
        assert parsed.recovery is False
        assert parsed.speculative_prediction is None
        assert parsed.compressed is False


def test_parameters_are_read() -> None:
    request = _request()
    tensors.write_parameters(
        request.parameters,
        {
            "binary_data_output": False,
            "timeout": 2500,
            "priority": 0,
            "specedge_recovery": True,
            "specedge_speculative_prediction": 7,
            "sequence_id": 0,  # unknown standard parameters are ignored, as Triton does
            "some_other": "x",
        },
    )
    request.parameters["priority"].uint64_param = 0  # tritonclient sends priority as uint64
    output = request.outputs.add(name="logits")
    output.parameters["classification"].int64_param = 3  # tritonclient.grpc's name for class_count
    parsed = parse_infer_request(request, SIG, OUTPUTS, LIMITS)
    assert (parsed.binary_output, parsed.timeout_us, parsed.recovery) == (False, 2500, True)
    assert (parsed.speculative_prediction, parsed.class_count) == (7, 3)


def test_class_count_by_its_standard_name_and_zero_timeout_means_none() -> None:
    request = _request()
    request.outputs.add(name="logits").parameters["class_count"].int64_param = 10
    request.parameters["timeout"].int64_param = 0
    parsed = parse_infer_request(request, SIG, OUTPUTS, LIMITS)
    assert parsed.class_count == 10
    assert parsed.timeout_us is None


def test_zstd_input_is_decompressed() -> None:
    images = _images(4)
    request = _request(images)
    request.raw_input_contents[0] = zstandard.ZstdCompressor().compress(images.tobytes())
    request.inputs[0].parameters["specedge_content_encoding"].string_param = "zstd"
    parsed = parse_infer_request(request, SIG, OUTPUTS, LIMITS)
    np.testing.assert_array_equal(parsed.images, images)
    assert parsed.compressed is True


# --- refusals, each with its message -------------------------------------------------------------


def _set(path: str, value: object) -> Mutate:
    def mutate(request: pb.ModelInferRequest) -> None:
        where, key = path.split(":")
        params = {
            "request": request.parameters,
            "input": request.inputs[0].parameters,
            "output": request.outputs[0].parameters
            if request.outputs
            else request.outputs.add(name="logits").parameters,
        }[where]
        tensors.write_parameters(params, {key: value})

    return mutate


def _shape(*dims: int) -> Mutate:
    def mutate(request: pb.ModelInferRequest) -> None:
        del request.inputs[0].shape[:]
        request.inputs[0].shape.extend(dims)

    return mutate


def _raw(size: int) -> Mutate:
    def mutate(request: pb.ModelInferRequest) -> None:
        request.raw_input_contents[0] = b"\0" * size

    return mutate


def _typed_too(request: pb.ModelInferRequest) -> None:
    request.inputs[0].contents.uint_contents.extend([0] * 128)


def _no_data(request: pb.ModelInferRequest) -> None:
    del request.raw_input_contents[:]


def _typed(values: list[int], field: str = "uint_contents") -> Mutate:
    def mutate(request: pb.ModelInferRequest) -> None:
        del request.raw_input_contents[:]
        getattr(request.inputs[0].contents, field).extend(values)

    return mutate


CASES: list[tuple[str, Mutate, type[Exception], str]] = [
    ("no inputs", lambda r: r.ClearField("inputs"), TensorError, "exactly one input, 'images'; the request has 0"),
    ("two inputs", lambda r: r.inputs.add(name="images"), TensorError, "the request has 2"),
    ("wrong name", lambda r: setattr(r.inputs[0], "name", "x"), TensorError, "unknown input 'x'"),
    ("wrong datatype", lambda r: setattr(r.inputs[0], "datatype", "FP32"), TensorError, "expects UINT8"),
    ("bogus datatype", lambda r: setattr(r.inputs[0], "datatype", "FLOAT"), TensorError, "datatype 'FLOAT'"),
    ("too few dims", _shape(2, 64), TensorError, r"shape \[2, 64\]; the model expects \[N, 1, 8, 8\]"),
    ("too many dims", _shape(*[1] * 65), TensorError, "65 dimensions"),
    ("zero batch", _shape(0, 1, 8, 8), TensorError, "dimension 0 must be >= 1, got 0"),
    ("negative dim", _shape(2, 1, -8, 8), TensorError, "dimension 2 must be >= 1, got -8"),
    ("wrong dim", _shape(2, 1, 8, 9), TensorError, "dimension 3 must be 8"),
    ("batch over limit", _shape(17, 1, 8, 8), RequestTooLargeError, "batch size 17; this server accepts at most 16"),
    ("huge batch", _shape(2**62, 1, 8, 8), RequestTooLargeError, "accepts at most 16"),
    ("short raw", _raw(127), TensorError, "needs 128 bytes .* got 127"),
    ("long raw", _raw(129), TensorError, "got 129"),
    ("two raw", lambda r: r.raw_input_contents.append(b""), TensorError, "2 raw_input_contents entries"),
    ("raw and typed", _typed_too, TensorError, "both raw contents and typed contents"),
    ("no data", _no_data, TensorError, "has no data"),
    ("typed short", _typed([0] * 127), TensorError, "needs 128 values in contents.uint_contents; got 127"),
    ("typed wrong field", _typed([0.0] * 128, "fp32_contents"), TensorError, "request sets contents.fp32_contents"),
    ("typed out of range", _typed([256] * 128), TensorError, r"outside \[0, 255\]"),
    ("unknown output", lambda r: r.outputs.add(name="probs"), TensorError, "unknown output 'probs'"),
    ("output twice", lambda r: r.outputs.extend([pb.ModelInferRequest.InferRequestedOutputTensor(name="logits")] * 2),
     TensorError, "more than once"),
    ("priority", _set("request:priority", 3), UnsupportedParameterError, "priority is not supported"),
    ("unknown specedge param", _set("request:specedge_turbo", True), UnsupportedParameterError,
     "unknown SpecEdge request parameter 'specedge_turbo'"),
    ("unknown input param", _set("input:specedge_zip", "x"), UnsupportedParameterError, "'specedge_zip'"),
    ("unknown output param", _set("output:specedge_x", 1), UnsupportedParameterError, "'specedge_x'"),
    ("timeout type", _set("request:timeout", "1s"), ConfigError, "'timeout' must be an integer"),
    ("timeout negative", _set("request:timeout", -1), ConfigError, "microseconds and must be >= 0"),
    ("recovery type", _set("request:specedge_recovery", 1), ConfigError, "must be a bool"),
    ("prediction range", _set("request:specedge_speculative_prediction", 10), ConfigError, r"in \[0, 10\); got 10"),
    ("binary type", _set("request:binary_data_output", "yes"), ConfigError, "must be a bool"),
    ("class_count range", _set("output:class_count", 11), ConfigError, r"in \[0, 10\]; got 11"),
    ("class_count type", _set("output:classification", 1.5), ConfigError, "must be an integer"),
    ("encoding", _set("input:specedge_content_encoding", "gzip"), UnsupportedParameterError,
     "expected one of: identity, zstd"),
    ("empty param", lambda r: r.parameters["timeout"].Clear(), ConfigError, "has no value"),
]  # fmt: skip


@pytest.mark.parametrize(("mutate", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_each_refusal_names_the_problem(mutate: Mutate, error: type[Exception], message: str) -> None:
    request = _request()
    mutate(request)
    with pytest.raises(error, match=message) as info:
        _parse(request)
    code, details = status.to_status(info.value)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(details) <= status.MAX_DETAILS_CHARS


def test_declared_size_is_checked_before_the_payload() -> None:
    limits = Limits(max_batch=2**40, max_request_bytes=1024, max_decompressed_bytes=1024)
    request = _request()
    request.inputs[0].datatype = "UINT8"
    _shape(2**40, 1, 8, 8)(request)
    with pytest.raises(RequestTooLargeError, match=r"declares 70368744177664 bytes; .* at most 1024 bytes"):
        _parse(request, limits)


def test_typed_contents_are_checked_for_count_before_conversion() -> None:
    request = _request()
    _typed([1] * 10**6)(request)  # a million values for a 128-value tensor: refused by count, not converted
    with pytest.raises(TensorError, match="needs 128 values"):
        _parse(request)


def test_huge_names_are_quoted_short() -> None:
    request = _request()
    request.inputs[0].name = "x" * 2**20
    with pytest.raises(TensorError) as info:
        _parse(request)
    assert len(str(info.value)) < 300
    assert "... (1048576 characters)" in str(info.value)
    assert short("abc") == "'abc'"


def test_limits_are_validated() -> None:
    with pytest.raises(ConfigError, match="max_batch must be an int >= 1; got 0"):
        Limits(max_batch=0)


# --- zstd ------------------------------------------------------------------------------------------


def _zstd_request(frame: bytes, shape: tuple[int, ...] = (2, 1, 8, 8)) -> pb.ModelInferRequest:
    request = _request()
    _shape(*shape)(request)
    request.raw_input_contents[0] = frame
    request.inputs[0].parameters["specedge_content_encoding"].string_param = "zstd"
    return request


def _unsized_frame(size: int) -> bytes:
    """A frame without a content size in its header (what a streaming compressor writes)."""
    compressor = zstandard.ZstdCompressor().compressobj()
    chunk = b"\0" * 2**20
    parts = [compressor.compress(chunk) for _ in range(size // len(chunk))]
    return b"".join([*parts, compressor.flush()])


def test_zstd_bomb_claiming_more_than_declared_is_refused_before_decompressing() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * 2**28)  # 256 MiB of zeros in ~8 kB
    assert len(bomb) < 2**16
    rss_before = psutil.Process().memory_info().rss
    with pytest.raises(TensorError, match="the zstd frame holds 268435456 bytes; the declared shape needs 128"):
        _parse(_zstd_request(bomb))
    assert psutil.Process().memory_info().rss - rss_before < 2**25


def test_zstd_frame_without_content_size_is_refused() -> None:
    with pytest.raises(TensorError, match="does not record its content size"):
        _parse(_zstd_request(_unsized_frame(2**26)))


def test_zstd_declared_size_over_the_decompression_limit() -> None:
    limits = Limits(max_batch=16, max_request_bytes=2**20, max_decompressed_bytes=512)
    frame = zstandard.ZstdCompressor().compress(bytes(16 * 64))
    with pytest.raises(RequestTooLargeError, match="decompresses at most 512 bytes"):
        _parse(_zstd_request(frame, (16, 1, 8, 8)), limits)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (b"not zstd at all", "not a zstd frame"),
        (b"", "not a zstd frame"),
        (zstandard.ZstdCompressor().compress(bytes(128))[:-3], "cannot be decompressed"),
        (zstandard.ZstdCompressor().compress(bytes(128)) * 2, "bytes follow the zstd frame"),
        (zstandard.ZstdCompressor().compress(bytes(100)), "holds 100 bytes; the declared shape needs 128"),
    ],
    ids=["garbage", "empty", "truncated", "two frames", "wrong size"],
)
def test_zstd_malformed_frames(frame: bytes, message: str) -> None:
    with pytest.raises(TensorError, match=message):
        _parse(_zstd_request(frame))


def test_zstd_with_typed_contents_is_refused() -> None:
    request = _request(typed=True)
    request.inputs[0].parameters["specedge_content_encoding"].string_param = "zstd"
    with pytest.raises(TensorError, match="applies to raw_input_contents only"):
        _parse(request)


# --- status codes and bounded texts ---------------------------------------------------------------


def test_details_are_bounded_and_ascii() -> None:
    code, details = status.to_status(ModelNotFoundError("unknown model '" + "é" * 2**20 + "'"))
    assert code == grpc.StatusCode.NOT_FOUND
    assert len(details) == status.MAX_DETAILS_CHARS
    assert details.isascii()
    assert "..." in details and details.endswith("'")
    assert status.bounded("short") == "short"


def _batcher_error(name: str) -> type[SpecEdgeError]:
    try:
        batcher = importlib.import_module("specedge.cloud.batcher")
    except ModuleNotFoundError:  # not landed yet: a stand-in defined where the real one will live
        return type(name, (SpecEdgeError,), {"__module__": "specedge.cloud.batcher"})
    error: type[SpecEdgeError] = getattr(batcher, name)
    return error


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("QueueFullError", grpc.StatusCode.RESOURCE_EXHAUSTED),
        ("DeadlineExpiredError", grpc.StatusCode.DEADLINE_EXCEEDED),
    ],
)
def test_batcher_errors(name: str, code: grpc.StatusCode) -> None:
    assert status.to_status(_batcher_error(name)("queue full"))[0] == code


def test_a_same_named_class_elsewhere_is_not_a_batcher_error() -> None:
    impostor = type("QueueFullError", (SpecEdgeError,), {})
    assert status.to_status(impostor("x"))[0] == grpc.StatusCode.INTERNAL


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (RequestTooLargeError("big"), grpc.StatusCode.INVALID_ARGUMENT),
        (UnsupportedParameterError("priority"), grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_validation_errors_are_invalid_argument(exc: Exception, code: grpc.StatusCode) -> None:
    assert status.to_status(exc) == (code, str(exc))


# --- undecodable request bytes ---------------------------------------------------------------------


def test_max_dims_is_small() -> None:
    assert MAX_DIMS <= 32  # numpy refuses more than 64 dimensions; stay well inside
