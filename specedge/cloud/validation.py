"""Strict validation of ModelInfer requests, checked against the model before any payload is decoded.

A request reaches the model only after :func:`parse_infer_request` has checked, in this order and
using nothing but the message's small fields: the number of inputs, the input's name and datatype,
the number of dimensions and each dimension (positive, batch within :attr:`Limits.max_batch`, the
rest equal to the model's), the declared size (element count x item size, in Python integers, so a
shape of 2**62 neither overflows nor allocates) against :attr:`Limits.max_request_bytes`, that
exactly one of raw or typed contents carries the data and in the declared amount, the requested
outputs and the parameters (protos/PARAMETERS.md lists them). Only then is the payload decoded.

zstd inputs (``specedge_content_encoding = "zstd"`` on the input tensor) are decompressed into a
buffer of exactly the declared size: a frame whose header claims any other size, or that omits its
size, is refused before decompression, so a decompression bomb costs no more memory than the tensor
the request declares.

Errors (status codes in :mod:`specedge.cloud.status`; all INVALID_ARGUMENT)::

    TensorError                    a tensor's datatype, shape, bytes or encoding is wrong
    └── RequestTooLargeError       the declared tensor is larger than the server's limits
    ConfigError                    a parameter has the wrong type or value
    └── UnsupportedParameterError  a parameter SpecEdge does not support (``priority`` != 0,
                                   an unknown ``specedge_*`` name)

Messages quote user-supplied names shortened to :data:`MAX_NAME_CHARS`, so they stay small.

Requests that are not even valid protobuf never get here: the server's
:class:`~specedge.cloud.security.DecodeGuardInterceptor` answers them INVALID_ARGUMENT.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import zstandard

from specedge.cloud.engine import TensorSignature
from specedge.errors import ConfigError, TensorError
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb

__all__ = [
    "CLASS_COUNT_PARAMS",
    "CONTENT_ENCODING_PARAM",
    "MAX_DIMS",
    "MAX_NAME_CHARS",
    "SPECEDGE_PREFIX",
    "Limits",
    "ParsedInfer",
    "RequestTooLargeError",
    "UnsupportedParameterError",
    "parse_infer_request",
    "short",
]

MAX_DIMS = 8  # no SpecEdge model takes more; numpy's own limit (64) would answer INTERNAL
MAX_NAME_CHARS = 64  # user-supplied names are quoted at most this long in error messages
SPECEDGE_PREFIX = "specedge_"

# Request-level parameters.
BINARY_OUTPUT_PARAM = "binary_data_output"  # bool: logits as raw bytes (default) or typed fp32_contents
TIMEOUT_PARAM = "timeout"  # int, microseconds (Triton's name and unit)
PRIORITY_PARAM = "priority"  # only 0 (or absent) is accepted
RECOVERY_PARAM = "specedge_recovery"  # bool: the edge escalates an input it answered itself
PREDICTION_PARAM = "specedge_speculative_prediction"  # int: the edge's class index, logged for agreement
# Input-tensor parameter.
CONTENT_ENCODING_PARAM = "specedge_content_encoding"  # "zstd", or "identity"/absent for plain raw bytes
# Requested-output parameters: the standard name is class_count; tritonclient.grpc sends "classification".
CLASS_COUNT_PARAMS = ("class_count", "classification")

_REQUEST_SPECEDGE_PARAMS = frozenset({RECOVERY_PARAM, PREDICTION_PARAM})
_INPUT_SPECEDGE_PARAMS = frozenset({CONTENT_ENCODING_PARAM})
_ENCODINGS = ("identity", "zstd")
_TYPED_CHUNK = 1 << 20  # typed contents are converted this many values at a time (bounded temporaries)


class RequestTooLargeError(TensorError):
    """The declared tensor exceeds the server's batch or byte limits (answered INVALID_ARGUMENT)."""


class UnsupportedParameterError(ConfigError):
    """A request parameter SpecEdge does not support, or a value of it SpecEdge cannot honour."""


@dataclass(frozen=True)
class Limits:
    """What one ModelInfer request may ask of the server.

    Args:
        max_batch: largest batch (first dimension) one request may carry.
        max_request_bytes: largest declared input tensor, in bytes (element count x item size).
        max_decompressed_bytes: largest tensor a zstd-compressed input may expand to, in bytes.
    """

    max_batch: int = 256
    max_request_bytes: int = 64 * 2**20
    max_decompressed_bytes: int = 64 * 2**20

    def __post_init__(self) -> None:
        for field in ("max_batch", "max_request_bytes", "max_decompressed_bytes"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"Limits.{field} must be an int >= 1; got {value!r}")


@dataclass(frozen=True)
class ParsedInfer:
    """A validated ModelInfer request as plain values."""

    images: np.ndarray  # the model's datatype, (N, *signature.shape[1:]); read-only when decoded from raw bytes
    binary_output: bool  # logits as raw bytes (True) or typed contents
    class_count: int  # 0: full logits; k > 0: top-k "score:index" strings, as Triton's classification
    timeout_us: int | None  # the request's own timeout in microseconds; None: none given
    recovery: bool  # a recovery request from the edge (duo mode sends it to the big model)
    speculative_prediction: int | None  # the edge's own answer (class index), logged for agreement
    compressed: bool  # the input arrived zstd-compressed


def short(name: str) -> str:
    """``repr`` of a user-supplied name, cut to :data:`MAX_NAME_CHARS` characters with ``...``."""
    if len(name) <= MAX_NAME_CHARS:
        return repr(name)
    return repr(name[:MAX_NAME_CHARS]) + f"... ({len(name)} characters)"


# --- the request -----------------------------------------------------------------------------------


def parse_infer_request(
    request: pb.ModelInferRequest,
    signature: TensorSignature,
    outputs: tuple[TensorSignature, ...],
    limits: Limits,
) -> ParsedInfer:
    """Validate ``request`` against the model's input ``signature``, ``outputs`` and ``limits``; decode it.

    Every check that needs only the message's small fields runs before the payload is touched.
    Raises TensorError (RequestTooLargeError) or ConfigError (UnsupportedParameterError), whose
    messages name the bad value and what was expected; the model is never called on a bad request.
    """
    if len(request.inputs) != 1:
        raise TensorError(
            f"the model takes exactly one input, {signature.name!r}; the request has {len(request.inputs)}"
        )
    tensor = request.inputs[0]
    if tensor.name != signature.name:
        raise TensorError(f"unknown input {short(tensor.name)}; the model's input is {signature.name!r}")
    if tensor.datatype != signature.datatype:
        raise TensorError(
            f"input {signature.name!r} has datatype {short(tensor.datatype)}; the model expects {signature.datatype}"
        )
    dims = _check_shape(tuple(tensor.shape), signature, limits)
    itemsize = tensors.DATATYPES[signature.datatype].itemsize
    declared_bytes = math.prod(dims) * itemsize
    if declared_bytes > limits.max_request_bytes:
        raise RequestTooLargeError(
            f"input {signature.name!r} of shape {list(dims)} declares {declared_bytes} bytes; "
            f"this server accepts at most {limits.max_request_bytes} bytes per request"
        )
    encoding = _content_encoding(tensor.parameters)
    class_count, binary_output = _check_outputs(request, outputs)
    params = _request_parameters(request.parameters, outputs)

    raw = request.raw_input_contents
    has_typed = bool(tensor.contents.ListFields())
    if len(raw) > 1:
        raise TensorError(f"the request has {len(raw)} raw_input_contents entries for its one input; send one")
    if raw and has_typed:
        raise TensorError(f"input {signature.name!r} has both raw contents and typed contents; send exactly one")
    if not raw and not has_typed:
        raise TensorError(f"input {signature.name!r} has no data: neither raw_input_contents nor typed contents")
    if raw:
        data = raw[0]
        if encoding == "zstd":
            data = _decompress(data, declared_bytes, signature.name, limits)
        elif len(data) != declared_bytes:
            raise TensorError(
                f"input {signature.name!r} ({signature.datatype}, shape {list(dims)}) needs {declared_bytes} bytes "
                f"of raw contents; got {len(data)}"
            )
        images = tensors.decode_raw(signature.datatype, dims, data, name=signature.name)
    else:
        if encoding != "identity":
            raise TensorError(
                f"input {signature.name!r} sets {CONTENT_ENCODING_PARAM}={encoding!r} but carries typed contents; "
                "a content encoding applies to raw_input_contents only"
            )
        images = _decode_typed(tensor, dims, signature)
    return ParsedInfer(
        images=images,
        binary_output=binary_output if binary_output is not None else params.binary_output,
        class_count=class_count,
        timeout_us=params.timeout_us,
        recovery=params.recovery,
        speculative_prediction=params.speculative_prediction,
        compressed=encoding == "zstd",
    )


def _check_shape(dims: tuple[int, ...], signature: TensorSignature, limits: Limits) -> tuple[int, ...]:
    name, expected = signature.name, signature.shape
    wanted = "[" + ", ".join("N" if d == -1 else str(d) for d in expected) + "]"
    if len(dims) > MAX_DIMS or len(dims) != len(expected):
        shown = list(dims) if len(dims) <= MAX_DIMS else f"{len(dims)} dimensions"
        raise TensorError(
            f"input {name!r} has shape {shown}; the model expects {wanted} with 1 <= N <= {limits.max_batch}"
        )
    for i, (got, want) in enumerate(zip(dims, expected, strict=True)):
        if got < 1:
            raise TensorError(f"input {name!r} has shape {list(dims)}; dimension {i} must be >= 1, got {got}")
        if i == 0 and got > limits.max_batch:
            raise RequestTooLargeError(
                f"input {name!r} has batch size {got}; this server accepts at most {limits.max_batch} per request"
            )
        if want not in (-1, got):
            raise TensorError(
                f"input {name!r} has shape {list(dims)}; the model expects {wanted} (dimension {i} must be {want})"
            )
    return dims


def _decode_typed(
    tensor: pb.ModelInferRequest.InferInputTensor, dims: tuple[int, ...], sig: TensorSignature
) -> np.ndarray:
    field = tensors.contents_field(sig.datatype, name=sig.name)
    used = [descriptor.name for descriptor, _ in tensor.contents.ListFields()]
    if used != [field]:
        raise TensorError(
            f"input {sig.name!r} is {sig.datatype}, carried in contents.{field}; "
            f"the request sets contents.{', '.join(used)}"
        )
    values = getattr(tensor.contents, field)
    count = math.prod(dims)
    if len(values) != count:
        raise TensorError(
            f"input {sig.name!r} ({sig.datatype}, shape {list(dims)}) needs {count} values in contents.{field}; "
            f"got {len(values)}"
        )
    dtype = tensors.DATATYPES[sig.datatype]
    out = np.empty(count, dtype=dtype)
    info = np.iinfo(dtype) if dtype.kind in "iu" else None
    for start in range(0, count, _TYPED_CHUNK):  # bounded temporaries: no 8-byte copy of the whole tensor
        chunk = values[start : start + _TYPED_CHUNK]
        if info is not None and dtype.itemsize < 4:
            wide = np.asarray(chunk, dtype=np.int64)
            if wide.size and (int(wide.min()) < info.min or int(wide.max()) > info.max):
                raise TensorError(
                    f"input {sig.name!r} is {sig.datatype} but contents.{field} holds values outside "
                    f"[{info.min}, {info.max}]"
                )
            out[start : start + len(chunk)] = wide
        else:
            out[start : start + len(chunk)] = np.asarray(chunk, dtype=dtype)
    return out.reshape(dims)


# --- zstd ------------------------------------------------------------------------------------------


def _decompress(data: bytes, declared_bytes: int, name: str, limits: Limits) -> bytes:
    """One zstd frame -> exactly ``declared_bytes`` bytes; refuses anything else before allocating."""
    if declared_bytes > limits.max_decompressed_bytes:
        raise RequestTooLargeError(
            f"input {name!r} declares {declared_bytes} bytes; this server decompresses at most "
            f"{limits.max_decompressed_bytes} bytes per request"
        )
    try:
        content_bytes = zstandard.get_frame_parameters(data).content_size
    except zstandard.ZstdError as exc:
        raise TensorError(f"input {name!r} is marked zstd but its raw contents are not a zstd frame ({exc})") from exc
    if content_bytes == zstandard.CONTENTSIZE_UNKNOWN:
        raise TensorError(
            f"input {name!r}: the zstd frame does not record its content size; compress with the size "
            "written in the frame header (zstandard's default, write_content_size=True)"
        )
    if content_bytes != declared_bytes:
        raise TensorError(
            f"input {name!r}: the zstd frame holds {content_bytes} bytes; the declared shape needs {declared_bytes}"
        )
    decompressor = zstandard.ZstdDecompressor()
    try:
        # The output buffer is the verified header size, which equals the declared tensor size.
        out = decompressor.decompress(data, max_output_size=declared_bytes)
        # A second, streaming pass finds trailing bytes after the frame; its output is bounded by the
        # first pass, which decoded this same frame into exactly declared_bytes.
        tail = decompressor.decompressobj()
        tail.decompress(data)
        trailing = len(tail.unused_data)
    except zstandard.ZstdError as exc:
        raise TensorError(f"input {name!r}: the zstd frame cannot be decompressed ({exc})") from exc
    if len(out) != declared_bytes:
        raise TensorError(
            f"input {name!r}: the zstd frame holds {len(out)} bytes; the declared shape needs {declared_bytes}"
        )
    if trailing:
        raise TensorError(f"input {name!r}: {trailing} bytes follow the zstd frame; send exactly one frame")
    return out


# --- parameters ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RequestParams:
    binary_output: bool
    timeout_us: int | None
    recovery: bool
    speculative_prediction: int | None


def _value(params: Mapping[str, pb.InferParameter], key: str, where: str) -> tensors.ParameterValue | None:
    if key not in params:
        return None
    choice = params[key].WhichOneof("parameter_choice")
    if choice is None:
        raise ConfigError(f"{where} parameter {key!r} has no value; set one of bool/int64/uint64/double/string")
    value: tensors.ParameterValue = getattr(params[key], choice)
    return value


def _bool(params: Mapping[str, pb.InferParameter], key: str, where: str) -> bool | None:
    value = _value(params, key, where)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"{where} parameter {key!r} must be a bool (bool_param); got {value!r}")
    return value


def _int(params: Mapping[str, pb.InferParameter], key: str, where: str) -> int | None:
    value = _value(params, key, where)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where} parameter {key!r} must be an integer (int64_param or uint64_param); got {value!r}")
    return value


def _reject_unknown_specedge(params: Mapping[str, pb.InferParameter], known: frozenset[str], where: str) -> None:
    for key in params:
        if key.startswith(SPECEDGE_PREFIX) and key not in known:
            accepted = ", ".join(sorted(known)) or "none"
            raise UnsupportedParameterError(
                f"unknown SpecEdge {where} parameter {short(key)}; accepted here: {accepted}"
            )


def _request_parameters(
    params: Mapping[str, pb.InferParameter], outputs: tuple[TensorSignature, ...]
) -> _RequestParams:
    where = "request"
    _reject_unknown_specedge(params, _REQUEST_SPECEDGE_PARAMS, where)
    priority = _int(params, PRIORITY_PARAM, where)
    if priority:
        raise UnsupportedParameterError(f"priority is not supported; send priority 0 or leave it out (got {priority})")
    timeout_us = _int(params, TIMEOUT_PARAM, where)
    if timeout_us is not None and timeout_us < 0:
        raise ConfigError(f"request parameter {TIMEOUT_PARAM!r} is in microseconds and must be >= 0; got {timeout_us}")
    prediction = _int(params, PREDICTION_PARAM, where)
    num_classes = _num_classes(outputs)
    if prediction is not None and (prediction < 0 or (num_classes and prediction >= num_classes)):
        raise ConfigError(
            f"request parameter {PREDICTION_PARAM!r} is a class index in [0, {num_classes or 'K'}); got {prediction}"
        )
    binary_output = _bool(params, BINARY_OUTPUT_PARAM, where)
    return _RequestParams(
        binary_output=True if binary_output is None else binary_output,
        timeout_us=timeout_us or None,  # 0 means no timeout, as in Triton
        recovery=bool(_bool(params, RECOVERY_PARAM, where)),
        speculative_prediction=prediction,
    )


def _content_encoding(params: Mapping[str, pb.InferParameter]) -> str:
    where = "input"
    _reject_unknown_specedge(params, _INPUT_SPECEDGE_PARAMS, where)
    value = _value(params, CONTENT_ENCODING_PARAM, where)
    if value is None or value == "":
        return "identity"
    if value not in _ENCODINGS:
        raise UnsupportedParameterError(
            f"input parameter {CONTENT_ENCODING_PARAM!r} = {short(str(value))} is not supported; "
            f"expected one of: {', '.join(_ENCODINGS)}"
        )
    return str(value)


def _num_classes(outputs: tuple[TensorSignature, ...]) -> int:
    """K of the model's (N, K) output; 0 when unknown (a variable last dimension)."""
    return max(outputs[0].shape[-1], 0) if outputs and outputs[0].shape else 0


def _check_outputs(request: pb.ModelInferRequest, outputs: tuple[TensorSignature, ...]) -> tuple[int, bool | None]:
    """``(class_count, binary_data_output)`` of the requested outputs; validates their names and parameters."""
    known = {sig.name: sig for sig in outputs}
    seen: set[str] = set()
    class_count, binary_output = 0, None
    for output in request.outputs:
        if output.name not in known:
            raise TensorError(f"unknown output {short(output.name)}; the model's outputs are: {', '.join(known)}")
        if output.name in seen:
            raise TensorError(f"output {output.name!r} is requested more than once")
        seen.add(output.name)
        where = "output"
        _reject_unknown_specedge(output.parameters, frozenset(), where)
        for key in CLASS_COUNT_PARAMS:
            count = _int(output.parameters, key, where)
            if count is None:
                continue
            k = max(known[output.name].shape[-1], 0) if known[output.name].shape else 0
            if count < 0 or (k and count > k):
                raise ConfigError(f"output parameter {key!r} must be in [0, {k or 'K'}]; got {count}")
            class_count = count
        binary = _bool(output.parameters, BINARY_OUTPUT_PARAM, where)
        if binary is not None:
            binary_output = binary
    return class_count, binary_output
