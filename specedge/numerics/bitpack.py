"""Dense bit packing of fixed-width codes: how SIEVE's custom-float weights shrink on disk.

A weight in format T(w, t) needs ``1 + w + t`` bits (thesis 4.4.1); the saving is only real if
the stored bytes shrink by the same factor (thesis 4.4.2), so codes are packed back to back with
no per-value padding: ``count`` codes of ``bits`` bits take exactly ``ceil(count * bits / 8)``
bytes.

Bit order is little-endian throughout (LSB first): the blob, read as one little-endian unsigned
integer, equals ``sum(code[i] << (i * bits))``. Code ``i`` starts at bit ``(i * bits) % 8`` of byte
``(i * bits) // 8`` with its least significant bit; unused high bits of the last byte are zero.
For ``bits`` = 8, 16 or 32 this is simply the codes as little-endian uint8/uint16/uint32.

Both directions are vectorised: codes fall into at most 8 classes (``i % (8 / gcd(bits, 8))``)
that share a bit offset, and each class touches an arithmetic progression of bytes, handled
with strided slices.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from specedge.errors import ArtifactError, ConfigError, TensorError

__all__ = ["pack_codes", "packed_size", "unpack_codes"]


def _valid_bits(bits: Any) -> bool:
    return isinstance(bits, (int, np.integer)) and not isinstance(bits, bool) and 1 <= int(bits) <= 32


def packed_size(count: int, bits: int) -> int:
    """Bytes that ``count`` codes of ``bits`` bits take: ``ceil(count * bits / 8)``."""
    return (count * bits + 7) // 8


def _classes(bits: int) -> tuple[int, int]:
    """(number of offset classes, byte stride between members of one class)."""
    group = 8 // math.gcd(bits, 8)
    return group, group * bits // 8


def pack_codes(codes: npt.ArrayLike, bits: int) -> bytes:
    """Pack integer codes, each below ``2**bits``, into ``ceil(n * bits / 8)`` bytes.

    Args:
        codes: Non-negative integer codes of any shape (packed in C order), e.g. from
            :func:`specedge.numerics.floats.encode`.
        bits: Width of each code, 1..32.

    Returns:
        The packed little-endian bit stream (see the module docstring).

    Raises:
        ConfigError: ``bits`` is out of range or a code does not fit in ``bits`` bits.
        TensorError: ``codes`` is not an integer array.
    """
    if not _valid_bits(bits):
        raise ConfigError(f"bits must be an int in 1..32, got {bits!r}")
    bits = int(bits)
    arr = np.asarray(codes)
    if arr.dtype.kind not in "ui":
        raise TensorError(f"pack_codes needs integer codes, got {arr.dtype}")
    flat = arr.ravel()
    count = flat.size
    if count and (int(flat.min()) < 0 or int(flat.max()) >= (1 << bits)):
        raise ConfigError(
            f"codes must lie in 0..{(1 << bits) - 1} to pack in {bits} bits, "
            f"got values in {int(flat.min())}..{int(flat.max())}"
        )
    nbytes = packed_size(count, bits)
    out = np.zeros(nbytes + 8, dtype=np.uint8)  # slack for the zero high bytes of the last codes
    values = flat.astype(np.uint64)
    group, stride = _classes(bits)
    for r in range(min(group, count)):
        members = values[r::group]
        start, shift = divmod(r * bits, 8)
        shifted = members << np.uint64(shift)
        for k in range((bits + shift + 7) // 8):
            lane = slice(start + k, start + k + stride * len(members), stride)
            out[lane] |= ((shifted >> np.uint64(8 * k)) & np.uint64(0xFF)).astype(np.uint8)
    return out[:nbytes].tobytes()


def unpack_codes(blob: bytes | bytearray | memoryview, bits: int, count: int) -> npt.NDArray[np.uint32]:
    """Inverse of :func:`pack_codes`: ``count`` codes of ``bits`` bits as a 1-D uint32 array.

    Raises:
        ArtifactError: ``bits`` is not in 1..32, ``count`` is negative, the blob is not exactly
            ``ceil(count * bits / 8)`` bytes, or its padding bits are not zero.
    """
    if not _valid_bits(bits):
        raise ArtifactError(f"packed codes claim {bits!r} bits per code; expected an int in 1..32")
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 0:
        raise ArtifactError(f"packed codes claim a count of {count!r}; expected a non-negative int")
    bits, count = int(bits), int(count)
    data = np.frombuffer(memoryview(blob).cast("B"), dtype=np.uint8)
    nbytes = packed_size(count, bits)
    if data.size != nbytes:
        raise ArtifactError(
            f"packed codes: {count} codes of {bits} bits need {nbytes} bytes, the blob has {data.size}; "
            "it is truncated or corrupt"
        )
    pad = nbytes * 8 - count * bits
    if pad and int(data[-1]) >> (8 - pad):
        raise ArtifactError(f"packed codes: the {pad} padding bits of the last byte are not zero; the blob is corrupt")
    padded = np.zeros(nbytes + 8, dtype=np.uint8)
    padded[:nbytes] = data
    out = np.empty(count, dtype=np.uint64)
    mask = np.uint64((1 << bits) - 1)
    group, stride = _classes(bits)
    for r in range(min(group, count)):
        size = len(range(r, count, group))
        start, shift = divmod(r * bits, 8)
        acc = np.zeros(size, dtype=np.uint64)
        for k in range((bits + shift + 7) // 8):
            lane = padded[start + k : start + k + stride * size : stride]
            acc |= lane.astype(np.uint64) << np.uint64(8 * k)
        out[r::group] = (acc >> np.uint64(shift)) & mask
    return out.astype(np.uint32)
