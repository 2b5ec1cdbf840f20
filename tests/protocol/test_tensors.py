"""numpy <-> KServe v2 tensor conversion: every datatype both ways, and every refusal."""

from __future__ import annotations

import numpy as np
import pytest

from specedge.errors import ConfigError, TensorError
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb

ALL = list(tensors.DATATYPES)
TYPED = [name for name in ALL if name != "FP16"]


def _sample(datatype: str, rng: np.random.Generator, shape: tuple[int, ...] = (2, 3, 4)) -> np.ndarray:
    dtype = tensors.DATATYPES[datatype]
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(bool)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return rng.standard_normal(shape).astype(dtype)


def test_datatype_table_is_complete() -> None:
    assert ALL == ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                   "FP16", "FP32", "FP64"]  # fmt: skip
    for name, dtype in tensors.DATATYPES.items():
        assert tensors.datatype_of(dtype) == name
        assert dtype.byteorder in ("<", "|", "=")


@pytest.mark.parametrize("datatype", ALL)
def test_raw_round_trip(datatype: str, rng: np.random.Generator) -> None:
    array = _sample(datatype, rng)
    name, shape, raw = tensors.encode_raw(array)
    assert (name, shape) == (datatype, [2, 3, 4])
    assert len(raw) == array.size * array.itemsize
    back = tensors.decode_raw(name, shape, raw)
    assert back.dtype == tensors.DATATYPES[datatype]
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize("datatype", TYPED)
def test_typed_round_trip(datatype: str, rng: np.random.Generator) -> None:
    array = _sample(datatype, rng)
    name, shape, contents = tensors.encode_contents(array)
    back = tensors.decode_contents(name, shape, contents)
    assert back.dtype == tensors.DATATYPES[datatype]
    np.testing.assert_array_equal(back, array)


@pytest.mark.parametrize(
    ("datatype", "field"),
    [("UINT8", "uint_contents"), ("UINT16", "uint_contents"), ("UINT32", "uint_contents"),
     ("UINT64", "uint64_contents"), ("INT8", "int_contents"), ("INT16", "int_contents"),
     ("INT32", "int_contents"), ("INT64", "int64_contents"), ("FP32", "fp32_contents"),
     ("FP64", "fp64_contents"), ("BOOL", "bool_contents")],
)  # fmt: skip
def test_typed_fields_follow_the_protocol(datatype: str, field: str) -> None:
    assert tensors.contents_field(datatype) == field


def test_raw_is_little_endian_whatever_the_input_byte_order() -> None:
    big = np.array([1, 256], dtype=">u2")
    datatype, _, raw = tensors.encode_raw(big)
    assert datatype == "UINT16"
    assert raw == b"\x01\x00\x00\x01"
    np.testing.assert_array_equal(tensors.decode_raw("UINT16", [2], raw), [1, 256])


def test_raw_handles_non_contiguous_and_empty_arrays(rng: np.random.Generator) -> None:
    array = _sample("FP32", rng, (4, 6))[:, ::2]
    _, shape, raw = tensors.encode_raw(array)
    np.testing.assert_array_equal(tensors.decode_raw("FP32", shape, raw), array)
    empty = tensors.decode_raw("UINT8", [0, 1, 8, 8], b"")
    assert empty.shape == (0, 1, 8, 8)


def test_byte_size_mismatch_names_tensor_and_sizes() -> None:
    with pytest.raises(TensorError, match=r"'images' \(UINT8, shape \[2, 1, 8, 8\]\) needs 128 bytes.*got 127"):
        tensors.decode_raw("UINT8", [2, 1, 8, 8], bytes(127), name="images")
    with pytest.raises(TensorError, match="needs 8 bytes of raw contents; got 9"):
        tensors.decode_raw("FP32", [2], bytes(9))


def test_unknown_datatype_lists_the_known_ones() -> None:
    with pytest.raises(TensorError, match=r"'x' has unknown datatype 'FLOAT32'; expected one of: BOOL, UINT8"):
        tensors.decode_raw("FLOAT32", [1], bytes(4), name="x")
    with pytest.raises(TensorError, match="no KServe v2 datatype"):
        tensors.encode_raw(np.array(["a"]))
    with pytest.raises(TensorError, match="no KServe v2 datatype"):
        tensors.datatype_of(np.complex64)


def test_negative_dimension_is_refused() -> None:
    with pytest.raises(TensorError, match=r"'images' has a negative dimension in shape \[-1, 1, 8, 8\]"):
        tensors.decode_raw("UINT8", [-1, 1, 8, 8], b"", name="images")
    with pytest.raises(TensorError, match="negative dimension"):
        tensors.decode_contents("INT32", [-2], pb.InferTensorContents())


def test_bool_raw_bytes_must_be_zero_or_one() -> None:
    with pytest.raises(TensorError, match="bytes other than 0 and 1"):
        tensors.decode_raw("BOOL", [2], b"\x01\x02")


def test_typed_count_mismatch_names_the_field() -> None:
    contents = pb.InferTensorContents(uint_contents=[1, 2, 3])
    with pytest.raises(TensorError, match=r"needs 4 values in contents\.uint_contents; got 3"):
        tensors.decode_contents("UINT8", [2, 2], contents)


def test_typed_values_out_of_range_are_refused() -> None:
    contents = pb.InferTensorContents(uint_contents=[0, 300])
    with pytest.raises(TensorError, match=r"UINT8 but contents\.uint_contents holds values in \[0, 300\]"):
        tensors.decode_contents("UINT8", [2], contents)
    with pytest.raises(TensorError, match=r"allowed range is \[-128, 127\]"):
        tensors.decode_contents("INT8", [1], pb.InferTensorContents(int_contents=[-129]))


def test_fp16_has_no_typed_field() -> None:
    with pytest.raises(TensorError, match="FP16, which has no typed contents field"):
        tensors.encode_contents(np.zeros(2, dtype=np.float16))


def _input(array: np.ndarray, *, raw: bool, typed: bool) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest()
    datatype, shape, data = tensors.encode_raw(array)
    tensor = request.inputs.add(name="images", datatype=datatype, shape=shape)
    if typed:
        tensor.contents.CopyFrom(tensors.encode_contents(array)[2])
    if raw:
        request.raw_input_contents.append(data)
    return request


@pytest.mark.parametrize("raw", [True, False])
def test_decode_inputs_from_raw_or_typed(raw: bool, rng: np.random.Generator) -> None:
    array = _sample("UINT8", rng, (2, 1, 8, 8))
    decoded = tensors.decode_inputs(_input(array, raw=raw, typed=not raw))
    assert list(decoded) == ["images"]
    np.testing.assert_array_equal(decoded["images"], array)


def test_both_raw_and_typed_contents_are_refused(rng: np.random.Generator) -> None:
    request = _input(_sample("UINT8", rng, (1, 4)), raw=True, typed=True)
    with pytest.raises(TensorError, match="'images' has both raw contents and typed contents"):
        tensors.decode_inputs(request)


def test_neither_raw_nor_typed_contents_is_refused(rng: np.random.Generator) -> None:
    request = _input(_sample("UINT8", rng, (1, 4)), raw=False, typed=False)
    with pytest.raises(TensorError, match="'images' has no data"):
        tensors.decode_inputs(request)


def test_raw_contents_count_must_match_inputs(rng: np.random.Generator) -> None:
    request = _input(_sample("UINT8", rng, (1, 4)), raw=True, typed=False)
    request.raw_input_contents.append(b"extra")
    with pytest.raises(TensorError, match="1 tensor\\(s\\) but 2 raw contents entries"):
        tensors.decode_inputs(request)


def test_duplicate_input_names_are_refused(rng: np.random.Generator) -> None:
    request = _input(_sample("UINT8", rng, (1, 4)), raw=False, typed=True)
    request.inputs.append(request.inputs[0])
    with pytest.raises(TensorError, match="'images' more than once"):
        tensors.decode_inputs(request)


def test_decode_outputs(rng: np.random.Generator) -> None:
    logits = _sample("FP32", rng, (3, 10))
    response = pb.ModelInferResponse()
    datatype, shape, raw = tensors.encode_raw(logits)
    response.outputs.add(name="logits", datatype=datatype, shape=shape)
    response.raw_output_contents.append(raw)
    np.testing.assert_array_equal(tensors.decode_outputs(response)["logits"], logits)


def test_parameters_round_trip() -> None:
    params = pb.ModelInferRequest().parameters
    values = {"flag": True, "n": -5, "big": 2**63 + 1, "ratio": 0.25, "name": "x", "np": np.int64(7)}
    tensors.write_parameters(params, values)
    assert params["flag"].WhichOneof("parameter_choice") == "bool_param"
    assert params["n"].WhichOneof("parameter_choice") == "int64_param"
    assert params["big"].WhichOneof("parameter_choice") == "uint64_param"
    assert params["ratio"].WhichOneof("parameter_choice") == "double_param"
    back = tensors.read_parameters(params)
    assert back == {"flag": True, "n": -5, "big": 2**63 + 1, "ratio": 0.25, "name": "x", "np": 7}
    assert type(back["flag"]) is bool


def test_bad_parameters_are_refused() -> None:
    params = pb.ModelInferRequest().parameters
    with pytest.raises(ConfigError, match=r"'huge' = \d+ does not fit"):
        tensors.write_parameters(params, {"huge": 2**64})
    with pytest.raises(ConfigError, match="'l' has type list"):
        tensors.write_parameters(params, {"l": [1]})
    assert len(params) == 0  # a refused value adds no entry
    params["empty"].SetInParent()
    with pytest.raises(ConfigError, match="'empty' has no value"):
        tensors.read_parameters(params)


# --- BYTES ---------------------------------------------------------------------------------------


def test_bytes_round_trip_raw_and_typed() -> None:
    values = np.array([[b"0.5:3", b""], ["é:1", b"x" * 300]], dtype=object)
    raw = tensors.encode_bytes(values)
    assert raw[:9] == b"\x05\x00\x00\x000.5:3"  # Triton's layout: 4-byte little-endian length, then the bytes
    decoded = tensors.decode_bytes([2, 2], raw, name="top")
    assert decoded.dtype == object and decoded.shape == (2, 2)
    assert decoded.tolist() == [[b"0.5:3", b""], ["é:1".encode(), b"x" * 300]]

    response = pb.ModelInferResponse()
    response.outputs.add(name="top", datatype="BYTES", shape=[2, 2])
    response.raw_output_contents.append(raw)
    assert tensors.decode_outputs(response)["top"].tolist() == decoded.tolist()
    typed = pb.ModelInferResponse()
    typed.outputs.add(name="top", datatype="BYTES", shape=[1, 2]).contents.bytes_contents.extend([b"a", b"bc"])
    assert tensors.decode_outputs(typed)["top"].tolist() == [[b"a", b"bc"]]


@pytest.mark.parametrize(
    ("shape", "raw", "message"),
    [
        ([2], b"\x01\x00\x00\x00a", "needs 2 length-prefixed elements"),
        ([1], b"\x05\x00\x00\x00ab", "declares 5 bytes; only 2 remain"),
        ([1], b"\x01\x00\x00\x00ab", "using 5 bytes"),
        ([1], b"\x01\x00", "needs 1 length-prefixed elements"),
        ([-1], b"", "negative dimension"),
    ],
)
def test_bytes_decode_rejects_malformed_payloads(shape: list[int], raw: bytes, message: str) -> None:
    with pytest.raises(TensorError, match=message):
        tensors.decode_bytes(shape, raw, name="top")
