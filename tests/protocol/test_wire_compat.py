"""SpecEdge's ``inference.*`` messages are wire-compatible with Triton's (what tritonclient ships).

Every message, field, enum value and RPC SpecEdge defines must exist in Triton's
``grpc_service.proto`` / ``model_config.proto`` with the same number, type and cardinality;
SpecEdge may leave fields out, never renumber them. tritonclient's descriptors are read in a child
process: its ``inference.*`` messages cannot share protobuf's default pool with SpecEdge's.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from typing import Any

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FileDescriptor

from specedge.protocol._generated import grpc_service_pb2 as pb

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None, reason="tritonclient[grpc] (a dev dependency) is not installed"
)

DUMP = r"""
import json
from tritonclient.grpc import model_config_pb2, service_pb2

messages, enums, methods = {}, {}, {}


def fields(d):
    return {
        f.name: [
            f.number,
            f.type,
            f.is_repeated,
            f.message_type.full_name if f.message_type else (f.enum_type.full_name if f.enum_type else ""),
        ]
        for f in d.fields
    }


def walk(d):
    messages[d.full_name] = fields(d)
    for e in d.enum_types:
        enums[e.full_name] = {v.name: v.number for v in e.values}
    for n in d.nested_types:
        walk(n)


for file in (service_pb2.DESCRIPTOR, model_config_pb2.DESCRIPTOR):
    for d in file.message_types_by_name.values():
        walk(d)
    for e in file.enum_types_by_name.values():
        enums[e.full_name] = {v.name: v.number for v in e.values}
    for s in file.services_by_name.values():
        for m in s.methods:
            methods[m.name] = [m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming]
print(json.dumps({"messages": messages, "enums": enums, "methods": methods}))
"""


def _fields(d: Descriptor) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for f in d.fields:
        kind = f.message_type.full_name if f.message_type else (f.enum_type.full_name if f.enum_type else "")
        out[f.name] = [f.number, f.type, f.is_repeated, kind]
    return out


def _ours(file: FileDescriptor) -> tuple[dict[str, Any], dict[str, Any]]:
    messages: dict[str, Any] = {}
    enums: dict[str, Any] = {}

    def walk(d: Descriptor) -> None:
        messages[d.full_name] = _fields(d)
        for e in d.enum_types:
            enums[e.full_name] = {v.name: v.number for v in e.values}
        for n in d.nested_types:
            walk(n)

    for d in file.message_types_by_name.values():
        walk(d)
    top: list[EnumDescriptor] = list(file.enum_types_by_name.values())
    for e in top:
        enums[e.full_name] = {v.name: v.number for v in e.values}
    return messages, enums


@pytest.fixture(scope="module")
def triton() -> dict[str, Any]:
    run = subprocess.run([sys.executable, "-c", DUMP], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def test_every_message_field_matches_triton(triton: dict[str, Any]) -> None:
    messages, _ = _ours(pb.DESCRIPTOR)
    assert len(messages) > 30
    for name, fields in messages.items():
        assert name in triton["messages"], f"{name} is not a Triton message"
        theirs = triton["messages"][name]
        for field, spec in fields.items():
            assert theirs.get(field) == spec, f"{name}.{field}: ours {spec}, Triton's {theirs.get(field)}"


def test_every_enum_value_matches_triton(triton: dict[str, Any]) -> None:
    _, enums = _ours(pb.DESCRIPTOR)
    assert "inference.DataType" in enums
    for name, values in enums.items():
        theirs = triton["enums"][name]
        assert {k: theirs.get(k) for k in values} == values, name


def test_every_rpc_matches_triton(triton: dict[str, Any]) -> None:
    (service,) = pb.DESCRIPTOR.services_by_name.values()
    assert service.full_name == "inference.GRPCInferenceService"
    ours = {
        m.name: [m.input_type.full_name, m.output_type.full_name, m.client_streaming, m.server_streaming]
        for m in service.methods
    }
    assert set(ours) == {
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
        "ModelStreamInfer",
        "ModelConfig",
        "ModelStatistics",
    }
    for name, spec in ours.items():
        assert triton["methods"][name] == spec, name
