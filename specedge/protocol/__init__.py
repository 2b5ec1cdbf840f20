"""The KServe v2 (Open Inference Protocol) wire format shared by the cloud server and the edge client.

``specedge.protocol._generated`` holds the protobuf/gRPC stubs made from ``protos/`` by
``scripts/gen_protos.py`` (never edited by hand); :mod:`specedge.protocol.tensors` converts
between numpy arrays and protocol tensors and parameters.
"""

from __future__ import annotations

from specedge.protocol.tensors import (
    BYTES,
    DATATYPES,
    ParameterValue,
    contents_field,
    datatype_of,
    decode_bytes,
    decode_contents,
    decode_inputs,
    decode_outputs,
    decode_raw,
    decode_tensor,
    encode_bytes,
    encode_contents,
    encode_raw,
    read_parameters,
    write_parameters,
)

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
