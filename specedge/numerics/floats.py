"""Custom floating-point formats T(w, t): the number formats SIEVE stores weights and activations in.

SIEVE (thesis 4.4.1) gives every layer its own small float format: 1 sign bit, ``w`` exponent
bits, ``t`` mantissa bits and an adjustable exponent bias, so that a layer whose values span a
narrow range spends its bits on precision instead. Compute stays fp32; values are rounded to the
format ("fake quantisation") and weights are stored as bit-packed codes (thesis 4.4.2, see
:mod:`specedge.numerics.bitpack`).

Semantics are IEEE 754 binary interchange formats with a free bias:

* the all-ones exponent field is reserved for Inf (mantissa 0) and NaN (mantissa != 0);
* exponent field 0 holds the subnormals (gradual underflow, no flush-to-zero);
* rounding is to nearest, ties to even, from the float32 input value;
* ``-0.0`` and negative values that underflow keep their sign;
* NaN encodes to a quiet NaN code (all-ones exponent, top mantissa bit, the input's sign). A
  format with ``mantissa_bits == 0`` has no NaN code: there NaN encodes to the **+Inf** code;
* overflow: ``"inf"`` (IEEE) rounds values beyond the largest finite value to ±Inf (a value
  exactly half an ulp above ``max_finite`` ties to even, which is overflow); ``"saturate"``
  clamps them, and ±Inf inputs too, to ±``max_finite`` (like ONNX ``Cast(saturate=1)``), because
  one Inf activation destroys a CNN's output. A saturating format never produces Inf from a
  non-NaN input.

The bias is restricted so that every value of the format is exactly a float32 (normal or
subnormal): ``2**w - 129 <= bias <= 150 - t``, i.e. ``max_finite < 2**128`` and
``min_subnormal >= 2**-149``. Decoding is then exact and :func:`quantize` maps float32 to float32.

Two implementations agree bit for bit: :func:`encode`/:func:`decode`/:func:`quantize` in numpy
by integer manipulation of the float32 bit pattern, and :func:`quantize_tensor` in torch with
only arithmetic ONNX operators, so a fake-quantised model exports to ONNX Runtime unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from specedge.errors import ConfigError, TensorError

__all__ = ["FloatFormat", "decode", "encode", "quantize", "quantize_tensor"]

_OVERFLOW_MODES = ("inf", "saturate")
_DICT_KEYS = ("exponent_bits", "mantissa_bits", "bias", "overflow")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True)
class FloatFormat:
    """The format T(w, t) with an exponent bias and an overflow mode.

    Args:
        exponent_bits: ``w``, 2..8.
        mantissa_bits: ``t``, 0..23 (stored bits, without the implicit leading one).
        bias: Exponent bias; ``None`` means the IEEE default ``2**(w-1) - 1``. After construction
            it always holds the resolved int (use :attr:`exponent_bias` for an ``int``-typed read).
            Must satisfy ``2**w - 129 <= bias <= 150 - t`` so every value is a float32.
        overflow: ``"inf"`` (IEEE) or ``"saturate"`` (clamp to ±``max_finite``, Inf inputs too).

    Raises:
        ConfigError: A parameter is out of range or of the wrong type.
    """

    exponent_bits: int
    mantissa_bits: int
    bias: int | None = None
    overflow: str = "inf"

    def __post_init__(self) -> None:
        w, t = self.exponent_bits, self.mantissa_bits
        if not _is_int(w) or not 2 <= w <= 8:
            raise ConfigError(f"exponent_bits must be an int in 2..8, got {w!r}")
        if not _is_int(t) or not 0 <= t <= 23:
            raise ConfigError(f"mantissa_bits must be an int in 0..23, got {t!r}")
        w, t = int(w), int(t)
        bias = (1 << (w - 1)) - 1 if self.bias is None else self.bias
        lo, hi = (1 << w) - 129, 150 - t
        if not _is_int(bias) or not lo <= bias <= hi:
            raise ConfigError(
                f"bias must be an int in {lo}..{hi} for exponent_bits={w}, mantissa_bits={t} "
                f"(so every value is a float32), got {self.bias!r}"
            )
        if not isinstance(self.overflow, str) or self.overflow not in _OVERFLOW_MODES:
            raise ConfigError(f"overflow must be one of {', '.join(_OVERFLOW_MODES)}, got {self.overflow!r}")
        object.__setattr__(self, "exponent_bits", w)
        object.__setattr__(self, "mantissa_bits", t)
        object.__setattr__(self, "bias", int(bias))

    @property
    def exponent_bias(self) -> int:
        """The resolved bias (same as :attr:`bias`, typed ``int``)."""
        assert self.bias is not None  # resolved in __post_init__
        return self.bias

    @property
    def bits(self) -> int:
        """Bits per code: ``1 + w + t``."""
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def min_exponent(self) -> int:
        """Unbiased exponent of the smallest normal value, ``1 - bias``."""
        return 1 - self.exponent_bias

    @property
    def max_exponent(self) -> int:
        """Unbiased exponent of the largest finite value, ``2**w - 2 - bias``."""
        return (1 << self.exponent_bits) - 2 - self.exponent_bias

    @property
    def max_finite(self) -> float:
        """Largest finite value, ``(2 - 2**-t) * 2**max_exponent``."""
        return float((2.0 - 2.0**-self.mantissa_bits) * 2.0**self.max_exponent)

    @property
    def min_normal(self) -> float:
        """Smallest positive normal value, ``2**min_exponent``."""
        return float(2.0**self.min_exponent)

    @property
    def min_subnormal(self) -> float:
        """Smallest positive value, ``2**(min_exponent - t)`` (equals ``min_normal`` when t == 0)."""
        return float(2.0 ** (self.min_exponent - self.mantissa_bits))

    @property
    def name(self) -> str:
        """Short label, ``"T(5,10,b15)"``; saturating formats end in ``",sat)"``."""
        suffix = ",sat" if self.overflow == "saturate" else ""
        return f"T({self.exponent_bits},{self.mantissa_bits},b{self.bias}{suffix})"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the inverse of :meth:`from_dict`."""
        return {
            "exponent_bits": self.exponent_bits,
            "mantissa_bits": self.mantissa_bits,
            "bias": self.bias,
            "overflow": self.overflow,
        }

    @classmethod
    def from_dict(cls, data: Any) -> FloatFormat:
        """Rebuild a format from :meth:`to_dict` output.

        Raises:
            ConfigError: ``data`` is not a dict with exactly the four keys, or a value is invalid.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a float format must be a dict with keys {', '.join(_DICT_KEYS)}, got {data!r:.80}")
        missing = [key for key in _DICT_KEYS if key not in data]
        extra = sorted(str(key) for key in data if key not in _DICT_KEYS)
        if missing or extra:
            raise ConfigError(f"float format {data!r:.120}: missing keys {missing}, unknown keys {extra}")
        for key in ("exponent_bits", "mantissa_bits", "bias"):
            if not isinstance(data[key], int) or isinstance(data[key], bool):
                raise ConfigError(f"float format field {key} must be an int, got {data[key]!r:.40}")
        return cls(
            exponent_bits=data["exponent_bits"],
            mantissa_bits=data["mantissa_bits"],
            bias=data["bias"],
            overflow=data["overflow"],
        )


# --- numpy reference ---------------------------------------------------------------------


def _bit_length(v: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Elementwise ``int.bit_length`` of non-negative values below 2**32."""
    v = v.copy()
    n = np.zeros_like(v)
    for shift in (16, 8, 4, 2, 1):
        big = v >= (1 << shift)
        n += np.where(big, shift, 0)
        v = np.where(big, v >> shift, v)
    return n + (v > 0)


def encode(x: npt.ArrayLike, fmt: FloatFormat) -> npt.NDArray[np.uint32]:
    """Round float32 values to ``fmt`` and return their codes.

    Args:
        x: float32 values (any shape). Other dtypes are refused rather than rounded twice.
        fmt: The target format.

    Returns:
        uint32 codes of the same shape: sign at bit ``bits - 1``, then the ``w`` exponent bits,
        then the ``t`` mantissa bits.

    Raises:
        TensorError: ``x`` is not float32.
    """
    arr = np.asarray(x)
    if arr.dtype != np.float32:
        raise TensorError(f"encode needs float32 values, got {arr.dtype}; cast with .astype(np.float32) first")
    w, t, bias = fmt.exponent_bits, fmt.mantissa_bits, fmt.exponent_bias
    u = arr.view(np.uint32).astype(np.int64)
    sign = u >> 31
    mag = u & 0x7FFFFFFF
    e32 = mag >> 23
    m32 = mag & 0x7FFFFF
    # Normalise to sig * 2**(e - 23) with sig in [2**23, 2**24) (sig = 0 for zero), float32
    # subnormals included, so formats whose normal range reaches below 2**-126 round correctly.
    sub32 = e32 == 0
    length = _bit_length(m32)
    e = np.where(sub32, length - 150, e32 - 127)
    sig = np.where(sub32, m32 << np.maximum(24 - length, 0), m32 | 0x800000)
    # The target binade (clamped to the subnormal binade) sets the quantum 2**(et - t).
    et = np.maximum(e, fmt.min_exponent)
    shift = np.minimum(23 - t + (et - e), 40)
    q = sig >> shift
    rem = sig & ((np.int64(1) << shift) - 1)
    half = (np.int64(1) << shift) >> 1
    q += (shift > 0) & ((rem > half) | ((rem == half) & ((q & 1) == 1)))
    # q counts quanta including the implicit one; adding it to the biased exponent field minus one
    # gives the code, and a mantissa carry (or a subnormal rounding up to min_normal) propagates.
    code = ((et + bias - 1) << t) + q
    inf_code = ((1 << w) - 1) << t
    overflow_code = inf_code if fmt.overflow == "inf" else inf_code - 1
    code = np.where(code >= inf_code, overflow_code, code)  # ±Inf inputs land here too
    nan = mag > 0x7F800000
    if t > 0:
        code = np.where(nan, inf_code | (1 << (t - 1)), code)
    else:
        code = np.where(nan, inf_code, code)
        sign = np.where(nan, 0, sign)
    return ((sign << (w + t)) | code).astype(np.uint32)


def decode(codes: npt.ArrayLike, fmt: FloatFormat) -> npt.NDArray[np.float32]:
    """The float32 values of ``codes`` (exact: every value of ``fmt`` is a float32).

    NaN codes decode to a quiet float32 NaN with the code's sign.

    Raises:
        TensorError: ``codes`` is not an integer array.
        ConfigError: A code does not fit in ``fmt.bits`` bits.
    """
    arr = np.asarray(codes)
    if arr.dtype.kind not in "ui":
        raise TensorError(f"decode needs integer codes, got {arr.dtype}")
    w, t = fmt.exponent_bits, fmt.mantissa_bits
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= (1 << fmt.bits)):
        raise ConfigError(f"codes must lie in 0..{(1 << fmt.bits) - 1} for {fmt.name}")
    c = arr.astype(np.int64)
    sign = (c >> (w + t)) & 1
    field = (c >> t) & ((1 << w) - 1)
    mant = c & ((1 << t) - 1)
    special = field == (1 << w) - 1  # Inf and NaN; kept out of ldexp, whose 2**128 would overflow
    sig = np.where(field == 0, mant, mant | (1 << t))
    sig = np.where(special, 0, sig)
    exp = np.where(field == 0, fmt.min_exponent, field - fmt.exponent_bias) - t
    value = np.ldexp(sig.astype(np.float64), exp.astype(np.int32)).astype(np.float32)
    value = np.where(special, np.where(mant == 0, np.float32(np.inf), np.float32(np.nan)), value)
    bits = value.view(np.uint32) & np.uint32(0x7FFFFFFF)
    bits |= sign.astype(np.uint32) << np.uint32(31)
    result: npt.NDArray[np.float32] = bits.view(np.float32)
    return result


def quantize(x: npt.ArrayLike, fmt: FloatFormat) -> npt.NDArray[np.float32]:
    """Round float32 values to ``fmt`` and back: ``decode(encode(x, fmt), fmt)``."""
    return decode(encode(x, fmt), fmt)


# --- torch, exportable to ONNX -------------------------------------------------------------


def quantize_tensor(x: torch.Tensor, fmt: FloatFormat) -> torch.Tensor:
    """Fake-quantise a float32 tensor to ``fmt``, bit-identical to :func:`quantize`.

    Built only from arithmetic operators that ``torch.onnx.export(dynamo=True)`` turns into
    standard ONNX ops (Abs, Log, Floor, Pow, Round, Div, Mul, Where, Clip, Reciprocal, IsNaN) and
    ONNX Runtime evaluates exactly: no bit casts, no frexp. ``-0.0`` keeps its sign (in ONNX
    Runtime too), NaN stays NaN (becomes +Inf when ``t == 0``, like :func:`encode`). Its
    gradient is zero almost everywhere (round); wrap it in a straight-through estimator to train.

    Raises:
        TensorError: ``x`` is not float32.
    """
    if x.dtype != torch.float32:
        raise TensorError(f"quantize_tensor needs a float32 tensor, got {x.dtype}")
    t, emin, emax = fmt.mantissa_bits, fmt.min_exponent, fmt.max_exponent
    a = torch.abs(x)
    # floor(log2(a)) can be off by one near powers of two; powers of two are exact in float32,
    # so two comparisons fix it. The clamp keeps e finite for 0 and Inf (2**(emin - 2) >= 2**-151
    # may underflow to 0, which only ever leaves e below emin, where it is clamped anyway).
    e = torch.clamp(torch.floor(torch.log2(a)), min=float(emin - 1), max=float(emax + 1))
    e = torch.where(a < torch.exp2(e), e - 1.0, e)
    e = torch.where(a >= torch.exp2(e + 1.0), e + 1.0, e)
    e = torch.clamp(e, min=float(emin))
    # step >= 2**-149 by the bias rule, so it is an exact float32; dividing by a power of two is
    # exact and round() is round-half-even, as ONNX Round is.
    step = torch.exp2(e - float(t))
    q = torch.round(a / step) * step
    limit = fmt.max_finite
    q = torch.where(q > limit, float("inf") if fmt.overflow == "inf" else limit, q)
    # The sign goes on by multiplying with ±1, not by selecting -q: ONNX Runtime's CPU Where
    # returns +0.0 for a -0.0 taken from its X input (microsoft/onnxruntime#32191).
    negative = (x < 0.0) | ((x == 0.0) & (torch.reciprocal(x) < 0.0))  # 1/-0.0 = -Inf finds -0.0
    out = q * torch.where(negative, -1.0, 1.0)
    # NaN propagates through a / step on its own; only t == 0 has no NaN code and maps it to +Inf.
    return out if t > 0 else torch.where(torch.isnan(x), float("inf"), out)
