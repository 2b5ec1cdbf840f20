import time

import numpy as np
import pytest

from specedge.errors import ArtifactError, ConfigError, TensorError
from specedge.numerics.bitpack import pack_codes, packed_size, unpack_codes
from specedge.numerics.floats import FloatFormat, encode


def _reference_pack(codes, bits):
    """The documented layout: the blob as a little-endian integer is sum(code[i] << (i * bits))."""
    total = sum(int(code) << (i * bits) for i, code in enumerate(codes))
    return total.to_bytes(packed_size(len(codes), bits), "little")


@pytest.mark.parametrize("bits", range(1, 33))
def test_round_trip_every_width(bits, rng):
    for count in (0, 1, 2, 7, 9, 1001):
        codes = rng.integers(0, 1 << bits, count, dtype=np.uint64).astype(np.uint32)
        blob = pack_codes(codes, bits)
        assert isinstance(blob, bytes)
        assert len(blob) == (count * bits + 7) // 8
        assert blob == _reference_pack(codes, bits)
        back = unpack_codes(blob, bits, count)
        assert back.dtype == np.uint32 and back.shape == (count,)
        np.testing.assert_array_equal(back, codes)


def test_extreme_codes_and_known_layout():
    assert pack_codes(np.array([1, 0, 1, 1]), 1) == b"\x0d"
    assert pack_codes(np.array([0x3, 0x1, 0x2]), 3) == bytes([0b10_001_011, 0])
    assert pack_codes(np.array([0x0102, 0x0304], np.uint16), 16) == b"\x02\x01\x04\x03"
    top = np.array([0xFFFFFFFF, 0, 0xFFFFFFFF], np.uint32)
    np.testing.assert_array_equal(unpack_codes(pack_codes(top, 32), 32, 3), top)
    ones = np.full(13, (1 << 11) - 1, np.uint32)
    np.testing.assert_array_equal(unpack_codes(pack_codes(ones, 11), 11, 13), ones)


def test_packs_any_shape_and_integer_dtype(rng):
    codes = rng.integers(0, 1 << 10, (4, 5, 3))
    np.testing.assert_array_equal(unpack_codes(pack_codes(codes, 10), 10, 60), codes.ravel())
    assert pack_codes(codes.astype(np.uint16), 10) == pack_codes(codes, 10)


def test_float_codes_pack_to_their_width(rng):
    fmt = FloatFormat(4, 3, bias=3)
    codes = encode(rng.standard_normal(1001).astype(np.float32), fmt)
    blob = pack_codes(codes, fmt.bits)
    assert len(blob) == 1001
    np.testing.assert_array_equal(unpack_codes(blob, fmt.bits, codes.size), codes)


@pytest.mark.parametrize(
    ("codes", "bits", "error", "match"),
    [
        (np.array([8]), 3, ConfigError, r"0\.\.7 to pack in 3 bits"),
        (np.array([-1]), 3, ConfigError, r"0\.\.7"),
        (np.array([1]), 0, ConfigError, r"bits must be an int in 1\.\.32"),
        (np.array([1]), 33, ConfigError, "bits"),
        (np.array([1]), True, ConfigError, "bits"),
        (np.array([1.0]), 3, TensorError, "integer"),
    ],
)
def test_pack_rejects(codes, bits, error, match):
    with pytest.raises(error, match=match):
        pack_codes(codes, bits)


def test_unpack_rejects_wrong_lengths_and_corruption(rng):
    codes = rng.integers(0, 1 << 13, 101).astype(np.uint32)
    blob = pack_codes(codes, 13)
    assert len(blob) == 165
    with pytest.raises(ArtifactError, match="101 codes of 13 bits need 165 bytes, the blob has 164"):
        unpack_codes(blob[:-1], 13, 101)
    with pytest.raises(ArtifactError, match="has 166"):
        unpack_codes(blob + b"\x00", 13, 101)
    with pytest.raises(ArtifactError, match="need 0 bytes"):
        unpack_codes(b"\x00", 13, 0)
    with pytest.raises(ArtifactError, match="padding bits"):
        unpack_codes(blob[:-1] + bytes([blob[-1] | 0x80]), 13, 101)
    with pytest.raises(ArtifactError, match=r"1\.\.32"):
        unpack_codes(blob, 0, 101)
    with pytest.raises(ArtifactError, match=r"1\.\.32"):
        unpack_codes(blob, 33, 101)
    with pytest.raises(ArtifactError, match="count"):
        unpack_codes(blob, 13, -1)
    np.testing.assert_array_equal(unpack_codes(bytearray(blob), 13, 101), codes)
    np.testing.assert_array_equal(unpack_codes(memoryview(blob), 13, 101), codes)


def test_ten_million_codes_take_seconds_not_minutes(rng):
    """A generous bound: it only catches a per-element Python loop, which would take minutes."""
    codes = rng.integers(0, 1 << 13, 10_000_000).astype(np.uint32)
    start = time.perf_counter()
    back = unpack_codes(pack_codes(codes, 13), 13, codes.size)
    elapsed = time.perf_counter() - start
    np.testing.assert_array_equal(back, codes)
    assert elapsed < 15.0, f"pack + unpack of 10M 13-bit codes took {elapsed:.2f} s"
