"""Number formats below every other layer: SIEVE's custom floats and dense bit packing.

Models (artifact decoding), compression (the search) and backends all use them, so they sit at
the bottom of the import graph, beside numpy and torch.
"""

from specedge.numerics.bitpack import pack_codes, packed_size, unpack_codes
from specedge.numerics.floats import FloatFormat, decode, encode, quantize, quantize_tensor

__all__ = [
    "FloatFormat",
    "decode",
    "encode",
    "pack_codes",
    "packed_size",
    "quantize",
    "quantize_tensor",
    "unpack_codes",
]
