"""numpy arrays <-> KServe v2 tensors: the one place that converts between them.

The Open Inference Protocol sends a tensor as a name, a datatype string ("UINT8", "FP32", ...),
a shape and its data, either packed little-endian row-major into ``raw_input_contents`` /
``raw_output_contents`` (one ``bytes`` entry per tensor, in tensor order) or as a typed repeated
field of ``InferTensorContents`` (``uint_contents``, ``fp32_contents``, ...). Both directions are
validated here so the servicer and the client only deal in numpy arrays: a wrong byte count, an
unknown datatype, a negative dimension or a tensor sent both ways (or neither) raises
:class:`~specedge.errors.TensorError` naming the tensor, what was expected and what arrived.

BYTES tensors (strings, e.g. the top-k answers of Triton's classification extension) are
arrays of ``bytes`` objects; in raw form each element is a 4-byte little-endian length followed
by its bytes, as Triton serializes them.

Parameters (``map<string, InferParameter>``) map to plain Python values: ``bool``, ``int``
(int64, or uint64 above the int64 range), ``float`` and ``str``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from typing import Any, Protocol

import numpy as np

from specedge.errors import ConfigError, TensorError
from specedge.protocol._generated import grpc_service_pb2 as pb

__all__ = [
    "BYTES",
    "DATATYPES",
    "ParameterValue",
    "contents_field",
    "datatype_of",
    "decode_bytes",
    "decode_contents",
    "decode_inputs",
    "decode_outputs",
    "decode_raw",
    "decode_tensor",
    "encode_bytes",
    "encode_contents",
    "encode_raw",
    "read_parameters",
    "write_parameters",
]

ParameterValue = bool | int | float | str
BYTES = "BYTES"  # variable-length elements; not in DATATYPES, which maps fixed-size types to numpy

# datatype -> (little-endian numpy dtype, typed InferTensorContents field or None for raw-only).
# UINT8/16/32 share uint_contents and INT8/16/32 share int_contents, as the protocol specifies.
_TABLE: dict[str, tuple[np.dtype[Any], str | None]] = {
    "BOOL": (np.dtype("?"), "bool_contents"),
    "UINT8": (np.dtype("<u1"), "uint_contents"),
    "UINT16": (np.dtype("<u2"), "uint_contents"),
    "UINT32": (np.dtype("<u4"), "uint_contents"),
    "UINT64": (np.dtype("<u8"), "uint64_contents"),
    "INT8": (np.dtype("<i1"), "int_contents"),
    "INT16": (np.dtype("<i2"), "int_contents"),
    "INT32": (np.dtype("<i4"), "int_contents"),
    "INT64": (np.dtype("<i8"), "int64_contents"),
    "FP16": (np.dtype("<f2"), None),
    "FP32": (np.dtype("<f4"), "fp32_contents"),
    "FP64": (np.dtype("<f8"), "fp64_contents"),
}
DATATYPES: Mapping[str, np.dtype[Any]] = {name: dtype for name, (dtype, _) in _TABLE.items()}
_BY_KIND_SIZE = {(dtype.kind, dtype.itemsize): name for name, dtype in DATATYPES.items()}
_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(2**63), 2**63 - 1, 2**64 - 1


class _Tensor(Protocol):
    """What InferInputTensor and InferOutputTensor have in common."""

    name: str
    datatype: str

    @property
    def shape(self) -> Sequence[int]: ...

    @property
    def contents(self) -> pb.InferTensorContents: ...


# --- datatypes and shapes -----------------------------------------------------------------------


def _known() -> str:
    return ", ".join(DATATYPES)


def datatype_of(dtype: np.dtype[Any] | type) -> str:
    """The KServe datatype string of a numpy dtype (any byte order); TensorError if none fits."""
    dt = np.dtype(dtype)
    try:
        return _BY_KIND_SIZE[(dt.kind, dt.itemsize)]
    except KeyError:
        raise TensorError(f"numpy dtype {dt} has no KServe v2 datatype; supported: {_known()}") from None


def _dtype(datatype: str, name: str) -> np.dtype[Any]:
    try:
        return DATATYPES[datatype]
    except KeyError:
        raise TensorError(f"tensor {name!r} has unknown datatype {datatype!r}; expected one of: {_known()}") from None


def contents_field(datatype: str, *, name: str = "tensor") -> str:
    """The typed ``InferTensorContents`` field that carries ``datatype``; TensorError for raw-only types."""
    _dtype(datatype, name)
    field = _TABLE[datatype][1]
    if field is None:
        raise TensorError(
            f"tensor {name!r} has datatype {datatype}, which has no typed contents field; "
            "send it in raw_input_contents / raw_output_contents"
        )
    return field


def _shape(shape: Iterable[int], name: str) -> tuple[int, ...]:
    dims = tuple(int(d) for d in shape)
    if any(d < 0 for d in dims):
        raise TensorError(f"tensor {name!r} has a negative dimension in shape {list(dims)}")
    return dims


# --- raw bytes ----------------------------------------------------------------------------------


def encode_raw(array: np.ndarray) -> tuple[str, list[int], bytes]:
    """``array`` -> ``(datatype, shape, little-endian row-major bytes)``."""
    array = np.asarray(array)
    datatype = datatype_of(array.dtype)
    data = np.ascontiguousarray(array, dtype=DATATYPES[datatype])
    return datatype, list(array.shape), data.tobytes()


def decode_raw(datatype: str, shape: Iterable[int], raw: bytes, *, name: str = "tensor") -> np.ndarray:
    """Raw little-endian bytes -> a read-only array of ``shape``; validates datatype, shape and size.

    The result is a zero-copy view on ``raw``; copy it before writing to it.
    """
    dtype = _dtype(datatype, name)
    dims = _shape(shape, name)
    expected = math.prod(dims) * dtype.itemsize
    if len(raw) != expected:
        raise TensorError(
            f"tensor {name!r} ({datatype}, shape {list(dims)}) needs {expected} bytes of raw contents; got {len(raw)}"
        )
    array = np.frombuffer(raw, dtype=dtype).reshape(dims)
    if datatype == "BOOL" and array.size and array.view(np.uint8).max() > 1:
        raise TensorError(f"tensor {name!r} is BOOL but its raw contents hold bytes other than 0 and 1")
    return array


# --- typed contents -----------------------------------------------------------------------------


def encode_contents(array: np.ndarray) -> tuple[str, list[int], pb.InferTensorContents]:
    """``array`` -> ``(datatype, shape, InferTensorContents)`` using the datatype's typed field."""
    array = np.asarray(array)
    datatype = datatype_of(array.dtype)
    field = contents_field(datatype)
    contents = pb.InferTensorContents()
    getattr(contents, field).extend(array.ravel().tolist())
    return datatype, list(array.shape), contents


def decode_contents(
    datatype: str, shape: Iterable[int], contents: pb.InferTensorContents, *, name: str = "tensor"
) -> np.ndarray:
    """Typed ``InferTensorContents`` -> an array of ``shape``; validates count and value range."""
    dtype = _dtype(datatype, name)
    dims = _shape(shape, name)
    field = contents_field(datatype, name=name)
    values = getattr(contents, field)
    expected = math.prod(dims)
    if len(values) != expected:
        raise TensorError(
            f"tensor {name!r} ({datatype}, shape {list(dims)}) needs {expected} values in contents.{field}; "
            f"got {len(values)}"
        )
    if dtype.kind in "iu" and dtype.itemsize < 4 and expected:
        wide = np.asarray(values, dtype=np.int64)
        info = np.iinfo(dtype)
        low, high = int(wide.min()), int(wide.max())
        if low < info.min or high > info.max:
            raise TensorError(
                f"tensor {name!r} is {datatype} but contents.{field} holds values in [{low}, {high}]; "
                f"allowed range is [{info.min}, {info.max}]"
            )
        return wide.astype(dtype).reshape(dims)
    return np.asarray(values, dtype=dtype).reshape(dims)


# --- BYTES -------------------------------------------------------------------------------------


def encode_bytes(values: np.ndarray) -> bytes:
    """An array of ``bytes`` (or ``str``, UTF-8 encoded) -> Triton's raw BYTES serialization."""
    parts = []
    for value in np.asarray(values, dtype=object).ravel():
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        parts += [len(data).to_bytes(4, "little"), data]
    return b"".join(parts)


def decode_bytes(shape: Iterable[int], raw: bytes, *, name: str = "tensor") -> np.ndarray:
    """Raw BYTES serialization -> an object array of ``bytes`` of ``shape``; validates every length."""
    dims = _shape(shape, name)
    count = math.prod(dims)
    values: list[bytes] = []
    offset = 0
    while offset < len(raw) and len(values) < count:
        if offset + 4 > len(raw):
            break
        size = int.from_bytes(raw[offset : offset + 4], "little")
        offset += 4
        if offset + size > len(raw):
            raise TensorError(
                f"tensor {name!r} (BYTES) element {len(values)} declares {size} bytes; only {len(raw) - offset} remain"
            )
        values.append(raw[offset : offset + size])
        offset += size
    if len(values) != count or offset != len(raw):
        raise TensorError(
            f"tensor {name!r} (BYTES, shape {list(dims)}) needs {count} length-prefixed elements "
            f"filling its {len(raw)} raw bytes; got {len(values)} elements using {offset} bytes"
        )
    array = np.empty(count, dtype=object)
    array[:] = values
    return array.reshape(dims)


# --- whole tensors and messages -----------------------------------------------------------------


def _has_typed(tensor: _Tensor) -> bool:
    return bool(tensor.contents.ListFields())


def decode_tensor(tensor: _Tensor, raw: bytes | None) -> np.ndarray:
    """One input or output tensor -> array, from ``raw`` if given, else from its typed contents.

    Exactly one of the two must carry the data: both or neither raise TensorError.
    """
    if tensor.datatype == BYTES:
        return _decode_bytes_tensor(tensor, raw)
    _dtype(tensor.datatype, tensor.name)
    if raw is not None:
        if _has_typed(tensor):
            raise TensorError(f"tensor {tensor.name!r} has both raw contents and typed contents; send exactly one")
        return decode_raw(tensor.datatype, tensor.shape, raw, name=tensor.name)
    if not _has_typed(tensor) and math.prod(_shape(tensor.shape, tensor.name)) > 0:
        raise TensorError(f"tensor {tensor.name!r} has no data: neither raw contents nor typed contents")
    return decode_contents(tensor.datatype, tensor.shape, tensor.contents, name=tensor.name)


def _decode_bytes_tensor(tensor: _Tensor, raw: bytes | None) -> np.ndarray:
    typed = tensor.contents.bytes_contents
    if raw is not None:
        if _has_typed(tensor):
            raise TensorError(f"tensor {tensor.name!r} has both raw contents and typed contents; send exactly one")
        return decode_bytes(tensor.shape, raw, name=tensor.name)
    dims = _shape(tensor.shape, tensor.name)
    if len(typed) != math.prod(dims):
        raise TensorError(
            f"tensor {tensor.name!r} (BYTES, shape {list(dims)}) needs {math.prod(dims)} values in "
            f"contents.bytes_contents; got {len(typed)}"
        )
    array = np.empty(len(typed), dtype=object)
    array[:] = list(typed)
    return array.reshape(dims)


def _decode_all(tensors: Sequence[_Tensor], raw: Sequence[bytes], what: str) -> dict[str, np.ndarray]:
    if raw and len(raw) != len(tensors):
        raise TensorError(
            f"{what} lists {len(tensors)} tensor(s) but {len(raw)} raw contents entries; "
            "when raw contents are used there must be one per tensor, in order"
        )
    arrays: dict[str, np.ndarray] = {}
    for i, tensor in enumerate(tensors):
        if tensor.name in arrays:
            raise TensorError(f"{what} lists tensor {tensor.name!r} more than once")
        arrays[tensor.name] = decode_tensor(tensor, raw[i] if raw else None)
    return arrays


def decode_inputs(request: pb.ModelInferRequest) -> dict[str, np.ndarray]:
    """All input tensors of a ModelInferRequest, by name, in request order."""
    return _decode_all(request.inputs, request.raw_input_contents, "request")


def decode_outputs(response: pb.ModelInferResponse) -> dict[str, np.ndarray]:
    """All output tensors of a ModelInferResponse, by name, in response order."""
    return _decode_all(response.outputs, response.raw_output_contents, "response")


# --- parameters ---------------------------------------------------------------------------------


def read_parameters(params: Mapping[str, pb.InferParameter]) -> dict[str, ParameterValue]:
    """``map<string, InferParameter>`` -> ``{key: bool | int | float | str}``."""
    values: dict[str, ParameterValue] = {}
    for key, param in params.items():
        choice = param.WhichOneof("parameter_choice")
        if choice is None:
            raise ConfigError(f"parameter {key!r} has no value; set one of bool/int64/uint64/double/string")
        values[key] = getattr(param, choice)
    return values


def write_parameters(params: MutableMapping[str, pb.InferParameter], values: Mapping[str, Any]) -> None:
    """Set ``params[key]`` from Python ``bool``, ``int``, ``float`` or ``str`` values (numpy scalars too)."""
    for key, value in values.items():
        param = pb.InferParameter()  # filled first, so a refused value leaves ``params`` untouched
        if isinstance(value, (bool, np.bool_)):
            param.bool_param = bool(value)
        elif isinstance(value, (int, np.integer)):
            number = int(value)
            if _INT64_MIN <= number <= _INT64_MAX:
                param.int64_param = number
            elif _INT64_MAX < number <= _UINT64_MAX:
                param.uint64_param = number
            else:
                raise ConfigError(f"parameter {key!r} = {number} does not fit in int64 or uint64")
        elif isinstance(value, (float, np.floating)):
            param.double_param = float(value)
        elif isinstance(value, str):
            param.string_param = value
        else:
            raise ConfigError(f"parameter {key!r} has type {type(value).__name__}; expected bool, int, float or str")
        params[key].CopyFrom(param)
