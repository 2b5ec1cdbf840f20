"""How an artifact stores its weights: one registry of encodings, each with a writer and a reader.

SIEVE's saving is real only if the bytes on disk (and later in memory) really shrink (thesis
4.4.2), so an artifact names its weights ``encoding`` and every loader goes through
:func:`read_weights`, which dispatches on that name:

``fp32``
    The full state dict as safetensors (what format-version-1 artifacts hold).
``sieve``
    Per-tensor custom float formats T(w, t, bias) (thesis 4.4.1): each compressed weight tensor
    is stored as bit-packed codes of ``1 + w + t`` bits; biases and normalisation buffers stay
    raw little-endian fp32 (they are few and add into the fp32 accumulator). One blob file, a
    table of (name, shape, dtype, format, offset, nbytes) in the manifest.
``int8``
    An ONNX Runtime static-quantised QDQ graph (int8 weights, uint8 activations). Such a model
    runs only on ONNX Runtime, so it decodes to the graph's bytes, not to a torch state dict.

Every problem with a stored encoding (unknown name, a table that does not fit its blob, a
format out of range, a corrupted blob) is one :class:`~specedge.errors.ArtifactError` line.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from specedge.errors import ArtifactError, ConfigError
from specedge.numerics.bitpack import pack_codes, unpack_codes
from specedge.numerics.floats import FloatFormat, decode, encode

__all__ = [
    "ENCODINGS",
    "DecodedWeights",
    "Fp32Encoding",
    "Int8Encoding",
    "SieveEncoding",
    "WeightsEncoding",
    "read_weights",
]

#: Tensors stored as they are (biases, normalisation buffers, counters), little-endian on disk.
_RAW_DTYPES: dict[str, tuple[torch.dtype, np.dtype[Any]]] = {
    "float32": (torch.float32, np.dtype("<f4")),
    "int64": (torch.int64, np.dtype("<i8")),
}


@dataclass(frozen=True)
class DecodedWeights:
    """What a reader returns: a torch state dict, or (int8) an ONNX graph that holds its own weights."""

    state: dict[str, torch.Tensor] | None = None
    onnx_model: bytes | None = None


class WeightsEncoding(Protocol):
    """A way of storing weights: ``encode`` gives the file to write and its manifest block."""

    @property
    def name(self) -> str:
        """The encoding's registry name (``fp32``, ``sieve``, ``int8``)."""
        ...

    def encode(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, bytes], dict[str, Any]]:
        """(file name -> bytes to write, the manifest's ``weights`` block without hashes)."""
        ...


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_name(block: Mapping[str, Any], where: str) -> str:
    name = block.get("file")
    if not isinstance(name, str) or Path(name).name != name or name in ("", ".", ".."):
        raise ArtifactError(f"{where}: weights file {name!r} must be a file name inside the artifact directory")
    return name


def _read_checked(directory: Path, block: Mapping[str, Any], where: str) -> bytes:
    """The weights file's bytes, after its SHA-256 matched the manifest's."""
    name = _file_name(block, where)
    path = directory / name
    if not path.is_file():
        raise ArtifactError(f"weights file {path} is missing; copy the whole artifact directory")
    data = path.read_bytes()
    expected = block.get("sha256")
    actual = _sha256(data)
    if actual != expected:
        raise ArtifactError(
            f"weights file {path} is corrupt or modified: sha256 {actual[:16]}... does not match "
            f"the manifest's {str(expected)[:16]}...; re-copy or re-save the artifact"
        )
    return data


# --- fp32 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fp32Encoding:
    """Plain float32 safetensors: the reference every compressed encoding is compared with."""

    name: str = "fp32"
    file: str = "model.safetensors"

    def encode(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, bytes], dict[str, Any]]:
        """One safetensors file with every tensor as it is."""
        return {self.file: save_safetensors(dict(state), metadata={"format": "specedge-model"})}, {
            "encoding": self.name,
            "file": self.file,
        }


def _decode_fp32(directory: Path, block: Mapping[str, Any], where: str) -> DecodedWeights:
    data = _read_checked(directory, block, where)
    try:
        state: dict[str, torch.Tensor] = load_safetensors(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ArtifactError(
            f"weights file {directory / block['file']} is not a readable safetensors file: {exc}"
        ) from exc
    return DecodedWeights(state=state)


# --- sieve -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SieveEncoding:
    """Weights bit-packed in per-tensor custom float formats (thesis 4.4.1); other tensors raw.

    ``formats`` maps a state-dict key (``"backbone.features.0.weight"``) to its format. The
    stored codes decode to exactly the values the compressed model computes with.
    """

    formats: Mapping[str, FloatFormat]
    name: str = "sieve"
    file: str = "weights.sieve"

    def encode(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, bytes], dict[str, Any]]:
        """One blob of packed tensors and the table that finds each of them in it."""
        unknown = sorted(set(self.formats) - set(state))
        if unknown:
            raise ConfigError(f"SIEVE formats name tensors the model does not have: {unknown[:5]}")
        chunks: list[bytes] = []
        table: list[dict[str, Any]] = []
        offset = 0
        for key, tensor in state.items():
            values = tensor.detach().cpu().contiguous()
            fmt = self.formats.get(key)
            if fmt is not None:
                codes = encode(values.to(torch.float32).numpy().ravel(), fmt)
                chunk = pack_codes(codes, fmt.bits)
                dtype = "float32"
            else:
                dtype = _raw_dtype_name(key, values)
                chunk = values.numpy().astype(_RAW_DTYPES[dtype][1]).tobytes()
            table.append(
                {
                    "name": key,
                    "shape": list(values.shape),
                    "dtype": dtype,
                    "format": fmt.to_dict() if fmt is not None else None,
                    "offset": offset,
                    "nbytes": len(chunk),
                }
            )
            chunks.append(chunk)
            offset += len(chunk)
        return {self.file: b"".join(chunks)}, {"encoding": self.name, "file": self.file, "tensors": table}


def _raw_dtype_name(key: str, tensor: torch.Tensor) -> str:
    for name, (dtype, _) in _RAW_DTYPES.items():
        if tensor.dtype == dtype:
            return name
    raise ConfigError(f"tensor {key} has dtype {tensor.dtype}; the sieve encoding stores float32 and int64 only")


def _decode_sieve_entry(blob: bytes, entry: Any, where: str) -> tuple[str, torch.Tensor]:
    try:
        name = str(entry["name"])
        shape = [int(v) for v in entry["shape"]]
        offset, nbytes = int(entry["offset"]), int(entry["nbytes"])
        dtype = str(entry["dtype"])
        fmt_dict = entry["format"]
    except (KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{where}: malformed sieve tensor entry {str(entry)[:120]!r} ({exc!r})") from exc
    if any(v < 0 for v in shape) or offset < 0 or nbytes < 0 or offset + nbytes > len(blob):
        raise ArtifactError(
            f"{where}: sieve tensor {name} claims bytes {offset}..{offset + nbytes} of a {len(blob)}-byte blob "
            f"(shape {shape}); the blob is truncated or the table is corrupt"
        )
    count = math.prod(shape)
    chunk = blob[offset : offset + nbytes]
    if fmt_dict is None:
        if dtype not in _RAW_DTYPES:
            raise ArtifactError(f"{where}: sieve tensor {name} has unknown raw dtype {dtype!r}")
        np_dtype = _RAW_DTYPES[dtype][1]
        if nbytes != count * np_dtype.itemsize:
            raise ArtifactError(f"{where}: sieve tensor {name} needs {count * np_dtype.itemsize} bytes, has {nbytes}")
        array = np.frombuffer(chunk, dtype=np_dtype).astype(np_dtype.newbyteorder("="))
        return name, torch.from_numpy(array.reshape(shape).copy())
    try:
        fmt = FloatFormat.from_dict(fmt_dict)
    except ConfigError as exc:
        raise ArtifactError(f"{where}: sieve tensor {name} has an invalid format: {exc}") from exc
    try:
        codes = unpack_codes(chunk, fmt.bits, count)
    except ArtifactError as exc:
        raise ArtifactError(f"{where}: sieve tensor {name} does not unpack: {exc}") from exc
    values = decode(codes, fmt)
    return name, torch.from_numpy(values.reshape(shape).copy())


def _decode_sieve(directory: Path, block: Mapping[str, Any], where: str) -> DecodedWeights:
    blob = _read_checked(directory, block, where)
    table = block.get("tensors")
    if not isinstance(table, list):
        raise ArtifactError(f"{where}: the sieve encoding needs a 'tensors' list; re-save the artifact")
    state = dict(_decode_sieve_entry(blob, entry, where) for entry in table)
    if len(state) != len(table):
        raise ArtifactError(f"{where}: the sieve table names a tensor twice")
    return DecodedWeights(state=state)


# --- int8 ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int8Encoding:
    """An ONNX Runtime int8 QDQ graph (``specedge.compression.int8``), stored as it is."""

    onnx_model: bytes
    name: str = "int8"
    file: str = "model.int8.onnx"

    def encode(self, state: Mapping[str, torch.Tensor]) -> tuple[dict[str, bytes], dict[str, Any]]:
        """The graph holds its own int8 weights; ``state`` (the fp32 source) is not stored."""
        return {self.file: self.onnx_model}, {"encoding": self.name, "file": self.file}


def _decode_int8(directory: Path, block: Mapping[str, Any], where: str) -> DecodedWeights:
    data = _read_checked(directory, block, where)
    return DecodedWeights(onnx_model=data)


# --- the registry ----------------------------------------------------------------------

_Decoder = Callable[[Path, Mapping[str, Any], str], DecodedWeights]

#: Encoding name -> reader. Writers are the encoding classes above.
ENCODINGS: dict[str, _Decoder] = {"fp32": _decode_fp32, "sieve": _decode_sieve, "int8": _decode_int8}


def read_weights(directory: Path, block: Mapping[str, Any], *, where: str) -> DecodedWeights:
    """Decode the weights a manifest's ``weights`` block describes (``where`` names the manifest in errors)."""
    name = block.get("encoding")
    decoder = ENCODINGS.get(name) if isinstance(name, str) else None
    if decoder is None:
        raise ArtifactError(
            f"{where}: unknown weights encoding {str(name)[:40]!r}; this specedge reads {sorted(ENCODINGS)} "
            "(upgrade specedge)"
        )
    decoded: DecodedWeights = decoder(directory, block, where)
    return decoded
