import math
import warnings
from fractions import Fraction

import ml_dtypes
import numpy as np
import pytest
import torch

from specedge.errors import ConfigError, TensorError
from specedge.numerics.floats import FloatFormat, decode, encode, quantize, quantize_tensor

FP16 = FloatFormat(5, 10)
BF16 = FloatFormat(8, 7)
E5M2 = FloatFormat(5, 2)

# Formats the torch path and the ONNX export are checked on: IEEE ones, odd biases at both ends
# of the allowed range (normals below 2**-126, values near 2**128), t = 0, saturation.
TORCH_FORMATS = [
    FP16,
    BF16,
    E5M2,
    FloatFormat(4, 3, bias=3),
    FloatFormat(8, 7, bias=143),
    FloatFormat(2, 0, bias=150),
    FloatFormat(8, 23),
    FloatFormat(3, 0, overflow="saturate"),
    FloatFormat(4, 2, bias=-113, overflow="saturate"),
    FloatFormat(5, 10, overflow="saturate"),
]


def _bits(x):
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def _from_parts(sign, exp_field, mant):
    u = (sign.astype(np.uint64) << 31) | (exp_field.astype(np.uint64) << 23) | mant.astype(np.uint64)
    return u.astype(np.uint32).view(np.float32)


def _random_float32(rng, n, lo_exp=-149, hi_exp=128):
    """Random signs, exponents uniform in [lo_exp, hi_exp] (log-uniform magnitudes), any mantissa."""
    lo, hi = min(max(lo_exp + 127, 0), 255), min(max(hi_exp + 127, 0), 255)
    field = rng.integers(lo, max(hi, lo) + 1, n)
    return _from_parts(rng.integers(0, 2, n), field, rng.integers(0, 1 << 23, n))


def _edges(fmt, rng, limit=40_000):
    """float32 bit patterns at and next to every value of fmt and every midpoint between them."""
    inf_code = ((1 << fmt.exponent_bits) - 1) << fmt.mantissa_bits
    if inf_code <= limit:
        codes = np.arange(inf_code, dtype=np.uint32)
    else:
        ends = np.r_[0:200, inf_code - 200 : inf_code]
        codes = np.unique(np.concatenate([ends, rng.integers(0, inf_code, limit)])).astype(np.uint32)
    values = decode(codes, fmt).astype(np.float64)
    values = np.append(values, 2.0 ** (fmt.max_exponent + 1))  # the first value past max_finite
    mids = (values[:-1] + values[1:]) / 2
    with np.errstate(over="ignore"):
        centres = np.concatenate([values, mids]).astype(np.float32)
    centres = _bits(centres[np.isfinite(centres)]).astype(np.int64)
    near = (centres[:, None] + np.arange(-2, 3)).ravel()
    near = np.clip(near, 0, 0x7F800000).astype(np.uint32)
    specials = np.array([0, 1, 2, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x7F800000, 0x7FC00000, 0x7F800001], np.uint32)
    pos = np.concatenate([near, specials])
    return np.concatenate([pos, pos | np.uint32(0x80000000)]).view(np.float32)


def _sample(fmt, seed=0, n=100_000):
    rng = np.random.default_rng(seed)
    every = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    near = _random_float32(rng, n, fmt.min_exponent - fmt.mantissa_bits - 3, fmt.max_exponent + 2)
    return np.concatenate([every, near, _edges(fmt, rng)])


def _assert_same(got, ref):
    """Bitwise equality, NaN compared by NaN-ness."""
    got, ref = np.asarray(got, np.float32), np.asarray(ref, np.float32)
    assert got.shape == ref.shape
    nan = np.isnan(ref)
    np.testing.assert_array_equal(np.isnan(got), nan)
    bad = np.flatnonzero(_bits(got)[~nan] != _bits(ref)[~nan])
    assert bad.size == 0, f"{bad.size} mismatches, e.g. {got[~nan][bad[:5]]} vs {ref[~nan][bad[:5]]}"


def _check_oracle(fmt, x, ref, code_dtype):
    codes = encode(x, fmt)
    assert codes.dtype == np.uint32
    nan = np.isnan(x)
    np.testing.assert_array_equal(codes[~nan], ref.view(code_dtype)[~nan].astype(np.uint32))
    t = fmt.mantissa_bits
    field = (codes[nan] >> t) & ((1 << fmt.exponent_bits) - 1)
    assert (field == (1 << fmt.exponent_bits) - 1).all()
    assert ((codes[nan] & ((1 << t) - 1)) == 1 << (t - 1)).all()  # quiet NaN, no payload
    _assert_same(decode(codes, fmt), ref.astype(np.float32))
    _assert_same(quantize(x, fmt), ref.astype(np.float32))


# --- the format ------------------------------------------------------------------------


def test_ieee_properties():
    assert FP16.bias == 15 and FP16.bits == 16 and FP16.name == "T(5,10,b15)"
    assert FP16.max_finite == float(np.finfo(np.float16).max)
    assert FP16.min_normal == float(np.finfo(np.float16).smallest_normal)
    assert FP16.min_subnormal == float(np.finfo(np.float16).smallest_subnormal)
    assert BF16.max_finite == float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
    assert E5M2.max_finite == 57344.0 and E5M2.min_subnormal == 2.0**-16
    assert FloatFormat(8, 23).max_finite == float(np.finfo(np.float32).max)
    assert FloatFormat(3, 0).min_subnormal == FloatFormat(3, 0).min_normal == 0.25
    assert FloatFormat(5, 10, bias=15) == FP16 and hash(FloatFormat(5, 10, bias=15)) == hash(FP16)
    assert FloatFormat(4, 3, bias=3, overflow="saturate").name == "T(4,3,b3,sat)"


def test_bias_range_keeps_every_value_a_float32():
    for w in range(2, 9):
        for t in range(24):
            lo, hi = (1 << w) - 129, 150 - t
            assert lo <= (1 << (w - 1)) - 1 <= hi
            assert FloatFormat(w, t, bias=hi).min_subnormal == 2.0**-149
            assert FloatFormat(w, t, bias=lo).max_finite == (2 - 2.0**-t) * 2.0**127
            for bad in (lo - 1, hi + 1):
                with pytest.raises(ConfigError, match=rf"bias must be an int in {lo}\.\.{hi}"):
                    FloatFormat(w, t, bias=bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exponent_bits": 1, "mantissa_bits": 3}, r"exponent_bits must be an int in 2\.\.8"),
        ({"exponent_bits": 9, "mantissa_bits": 3}, "exponent_bits"),
        ({"exponent_bits": True, "mantissa_bits": 3}, "exponent_bits"),
        ({"exponent_bits": 5.0, "mantissa_bits": 3}, "exponent_bits"),
        ({"exponent_bits": 5, "mantissa_bits": -1}, r"mantissa_bits must be an int in 0\.\.23"),
        ({"exponent_bits": 5, "mantissa_bits": 24}, "mantissa_bits"),
        ({"exponent_bits": 5, "mantissa_bits": 2, "bias": 1.5}, "bias"),
        ({"exponent_bits": 5, "mantissa_bits": 2, "bias": False}, "bias"),
        ({"exponent_bits": 5, "mantissa_bits": 2, "overflow": "clip"}, "overflow must be one of inf, saturate"),
    ],
)
def test_bad_format(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        FloatFormat(**kwargs)


def test_dict_round_trip():
    for fmt in TORCH_FORMATS:
        assert FloatFormat.from_dict(fmt.to_dict()) == fmt
    assert FP16.to_dict() == {"exponent_bits": 5, "mantissa_bits": 10, "bias": 15, "overflow": "inf"}


@pytest.mark.parametrize(
    "data",
    [
        None,
        [5, 10, 15, "inf"],
        {"exponent_bits": 5, "mantissa_bits": 10, "bias": 15},
        {"exponent_bits": 5, "mantissa_bits": 10, "bias": 15, "overflow": "inf", "extra": 1},
        {"exponent_bits": 5, "mantissa_bits": 10, "bias": True, "overflow": "inf"},
        {"exponent_bits": 5.0, "mantissa_bits": 10, "bias": 15, "overflow": "inf"},
        {"exponent_bits": 5, "mantissa_bits": "10", "bias": 15, "overflow": "inf"},
        {"exponent_bits": 5, "mantissa_bits": 10, "bias": None, "overflow": "inf"},
        {"exponent_bits": 5, "mantissa_bits": 10, "bias": 200, "overflow": "inf"},
        {"exponent_bits": 5, "mantissa_bits": 10, "bias": 15, "overflow": 1},
    ],
)
def test_from_dict_rejects_junk(data):
    with pytest.raises(ConfigError):
        FloatFormat.from_dict(data)


# --- numpy encode/decode against independent implementations ---------------------------


def test_float16_oracle():
    x = _sample(FP16)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16)
    _check_oracle(FP16, x, ref, np.uint16)


def test_bfloat16_oracle():
    x = _sample(BF16)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(ml_dtypes.bfloat16)
    _check_oracle(BF16, x, ref, np.uint16)


def test_float8_e5m2_oracle():
    x = _sample(E5M2)
    with np.errstate(over="ignore", invalid="ignore"):
        ref = x.astype(ml_dtypes.float8_e5m2)
    _check_oracle(E5M2, x, ref, np.uint8)


def test_e5m2_rounds_from_float32_once():
    """One float32 ulp off an e5m2 midpoint must not land on the tie, as rounding via float16 would."""
    values = decode(np.arange(0x7C, dtype=np.uint32), E5M2).astype(np.float64)
    mids = ((values[:-1] + values[1:]) / 2).astype(np.float32)
    above = np.nextafter(mids, np.float32(np.inf))
    below = np.nextafter(mids, np.float32(0))
    upper, lower = values[1:].astype(np.float32), values[:-1].astype(np.float32)
    _assert_same(quantize(above, E5M2), upper)
    _assert_same(quantize(below, E5M2), lower)
    _assert_same(above.astype(ml_dtypes.float8_e5m2).astype(np.float32), upper)
    _assert_same(below.astype(ml_dtypes.float8_e5m2).astype(np.float32), lower)
    # Exactly on the midpoint: ties to the even code.
    even = np.where(np.arange(len(mids)) % 2 == 0, lower, upper)
    _assert_same(quantize(mids, E5M2), even)


def _slow_quantize(value: float, fmt: FloatFormat) -> float:
    """Textbook rounding with exact rationals: the reference for arbitrary biases."""
    big = math.inf if fmt.overflow == "inf" else fmt.max_finite
    if math.isnan(value):
        return math.nan if fmt.mantissa_bits else math.inf
    if math.isinf(value):
        return math.copysign(big, value)
    if value == 0:
        return value
    exponent = math.frexp(abs(value))[1] - 1
    step = Fraction(2) ** (max(exponent, fmt.min_exponent) - fmt.mantissa_bits)
    rounded = round(Fraction(abs(value)) / step) * step  # Fraction rounds half to even
    result = big if rounded > fmt.max_finite else float(rounded)
    return math.copysign(result, value)


@pytest.mark.parametrize(
    "fmt",
    [
        FloatFormat(4, 3, bias=3),
        FloatFormat(3, 2, bias=-5, overflow="saturate"),
        FloatFormat(8, 7, bias=143),
        FloatFormat(2, 0, bias=150),
        FloatFormat(6, 0, bias=-20),
        FloatFormat(4, 2, bias=-113, overflow="saturate"),
    ],
)
def test_non_default_bias_matches_exact_reference(fmt):
    rng = np.random.default_rng(1)
    x = np.concatenate([_random_float32(rng, 1500), _edges(fmt, rng, limit=300)[::3]])
    expected = np.array([_slow_quantize(float(v), fmt) for v in x], dtype=np.float32)
    _assert_same(quantize(x, fmt), expected)


@pytest.mark.parametrize("fmt", [FloatFormat(4, 3, bias=3), E5M2, FloatFormat(2, 0), FloatFormat(3, 1, bias=-2)])
def test_every_code_decodes_by_the_definition_and_round_trips(fmt):
    codes = np.arange(1 << fmt.bits, dtype=np.uint32)
    got = decode(codes, fmt)
    w, t = fmt.exponent_bits, fmt.mantissa_bits
    for code, value in zip(codes.tolist(), got.tolist(), strict=True):
        sign, field, mant = code >> (w + t), (code >> t) & ((1 << w) - 1), code & ((1 << t) - 1)
        if field == (1 << w) - 1:
            expected = math.inf if mant == 0 else math.nan
        elif field == 0:
            expected = mant * 2.0 ** (fmt.min_exponent - t)
        else:
            expected = (1 + mant / 2**t) * 2.0 ** (field - fmt.bias)
        expected = -expected if sign else expected
        assert (math.isnan(value) and math.isnan(expected)) or (
            value == expected and math.copysign(1, value) == (-1 if sign else 1)
        ), (code, value, expected)
    not_nan = ~np.isnan(got)
    np.testing.assert_array_equal(encode(got[not_nan], fmt), codes[not_nan])


def test_float32_format_is_the_identity():
    fmt = FloatFormat(8, 23)
    x = np.random.default_rng(2).integers(0, 1 << 32, 200_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    nan = np.isnan(x)
    np.testing.assert_array_equal(encode(x, fmt)[~nan], _bits(x)[~nan])
    _assert_same(quantize(x, fmt), x)


def test_saturate_clamps_overflow_and_inf():
    fmt = FloatFormat(5, 10, overflow="saturate")
    x = _sample(fmt)
    with np.errstate(over="ignore"):
        ref = x.astype(np.float16).astype(np.float32)
    ref = np.where(np.isinf(ref), np.copysign(np.float32(65504), ref), ref)
    _assert_same(quantize(x, fmt), ref)
    edge = np.array([65519.996, 65520, -65520, np.inf, -np.inf, 1e30], np.float32)
    np.testing.assert_array_equal(quantize(edge, fmt), [65504, 65504, -65504, 65504, -65504, 65504])
    np.testing.assert_array_equal(quantize(edge, FP16), [65504, np.inf, -np.inf, np.inf, -np.inf, np.inf])


def test_nan_zero_and_sign():
    x = np.array([np.nan, -np.nan, 0.0, -0.0, -1e-30, 1e-30], np.float32)
    codes = encode(x, FP16)
    np.testing.assert_array_equal(codes, [0x7E00, 0xFE00, 0, 0x8000, 0x8000, 0])
    back = decode(codes, FP16)
    assert np.isnan(back[:2]).all() and np.signbit(back).tolist() == [False, True, False, True, True, False]
    # t = 0 has no NaN code: NaN becomes +Inf.
    t0 = FloatFormat(4, 0)
    np.testing.assert_array_equal(encode(x[:2], t0), [0xF, 0xF])
    np.testing.assert_array_equal(quantize(x[:2], t0), [np.inf, np.inf])


def test_shapes_and_bad_inputs():
    x = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    assert encode(x, FP16).shape == (3, 4) and quantize(x, FP16).shape == (3, 4)
    assert quantize(np.float32(1 / 3), FP16).shape == ()
    assert encode(np.zeros(0, np.float32), FP16).shape == (0,)
    with pytest.raises(TensorError, match="float32"):
        encode(np.ones(3), FP16)
    with pytest.raises(TensorError, match="integer"):
        decode(np.ones(3, np.float32), FP16)
    with pytest.raises(ConfigError, match=r"0\.\.255"):
        decode(np.array([256]), E5M2)
    with pytest.raises(ConfigError):
        decode(np.array([-1]), E5M2)


# --- torch and ONNX --------------------------------------------------------------------


@pytest.mark.parametrize("fmt", TORCH_FORMATS, ids=lambda f: f.name)
def test_torch_matches_numpy(fmt):
    x = _sample(fmt, seed=3)
    got = quantize_tensor(torch.from_numpy(x), fmt).numpy()
    _assert_same(got, quantize(x, fmt))


def test_torch_keeps_negative_zero_and_refuses_other_dtypes():
    x = torch.tensor([-0.0, 0.0, -1e-30, float("nan")])
    out = quantize_tensor(x, FP16)
    assert torch.signbit(out[:3]).tolist() == [True, False, True] and torch.isnan(out[3])
    with pytest.raises(TensorError, match="float32"):
        quantize_tensor(x.double(), FP16)


# What the export may contain: arithmetic only, no Cast/BitCast tricks.
_ARITHMETIC_OPS = {
    *("Abs", "Neg", "Log", "Floor", "Clip", "Pow", "Round", "Reciprocal", "IsNaN", "Where"),
    *("Add", "Sub", "Mul", "Div", "Less", "Greater", "GreaterOrEqual", "Equal", "And", "Or"),
}


# A subset keeps the export fast: an IEEE format, both bias extremes, t = 0, saturation.
ONNX_FORMATS = [
    FP16,
    FloatFormat(8, 7, bias=143),
    FloatFormat(2, 0, bias=150),
    FloatFormat(4, 2, bias=-113, overflow="saturate"),
]


class _Quantizer(torch.nn.Module):
    def forward(self, x):
        return tuple(quantize_tensor(x, fmt) for fmt in ONNX_FORMATS)


def test_onnx_export_runs_bit_exact_in_onnxruntime():
    pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # torch 2.13's export deep-copies a pytree LeafSpec, which warns from inside torch.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)", category=FutureWarning)
        program = torch.onnx.export(
            _Quantizer().eval(),
            (torch.zeros(8),),
            dynamo=True,
            opset_version=18,
            dynamic_shapes=({0: torch.export.Dim("n")},),
            verbose=False,
        )
    ops = {node.op_type for node in program.model_proto.graph.node}
    assert ops <= _ARITHMETIC_OPS, ops
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(program.model_proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(4)
    x = np.concatenate([_random_float32(rng, 50_000)] + [_edges(fmt, rng, limit=3000) for fmt in ONNX_FORMATS])
    outputs = session.run(None, {session.get_inputs()[0].name: x})
    for fmt, got in zip(ONNX_FORMATS, outputs, strict=True):
        _assert_same(got, quantize(x, fmt))
