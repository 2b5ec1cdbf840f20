"""A stock KServe v2 client (NVIDIA's tritonclient) drives every RPC of the SpecEdge server unchanged.

The client runs in a child process: tritonclient registers its own copy of the
``inference.*`` messages in protobuf's default descriptor pool, so it cannot share a process
with SpecEdge's stubs (the same holds for users; talk to SpecEdge over the wire, as here).
"""

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, create_server
from specedge.models import build_classifier
from specedge.training import predict_logits

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("tritonclient") is None, reason="tritonclient[grpc] (a dev dependency) is not installed"
)

CLIENT = r"""
import json, queue, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.grpc import model_config_pb2
from tritonclient.utils import InferenceServerException

client = grpcclient.InferenceServerClient(sys.argv[1])
images = np.array(json.loads(sys.argv[2]), dtype=np.uint8)
out = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("master"),
    "server_name": client.get_server_metadata().name,
    "extensions": list(client.get_server_metadata().extensions),
}
meta = client.get_model_metadata("master")
out["inputs"] = [[t.name, t.datatype, list(t.shape)] for t in meta.inputs]
out["outputs"] = [[t.name, t.datatype, list(t.shape)] for t in meta.outputs]

config = client.get_model_config("master").config
name = model_config_pb2.DataType.Name
out["config"] = {
    "name": config.name,
    "max_batch_size": config.max_batch_size,
    "input": [[t.name, name(t.data_type), list(t.dims)] for t in config.input],
    "output": [[t.name, name(t.data_type), list(t.dims)] for t in config.output],
}


def images_input():
    tensor = grpcclient.InferInput("images", list(images.shape), "UINT8")
    tensor.set_data_from_numpy(images)
    return [tensor]


logits = [grpcclient.InferRequestedOutput("logits")]
result = client.infer("master", images_input(), outputs=logits, request_id="t-1", timeout=30_000_000, client_timeout=60)
out["logits"] = result.as_numpy("logits").tolist()
out["id"] = result.get_response().id
out["compute_time_us"] = result.get_response().parameters["compute_time_us"].int64_param

top = client.infer("master", images_input(), outputs=[grpcclient.InferRequestedOutput("logits", class_count=3)])
out["top3"] = [[entry.decode() for entry in row] for row in top.as_numpy("logits")]

done = queue.Queue()
client.async_infer("master", images_input(), callback=lambda result, error: done.put((result, error)), request_id="a-1")
result, error = done.get(timeout=60)
assert error is None, error
out["async"] = [result.get_response().id, result.as_numpy("logits").tolist()]

replies = queue.Queue()
client.start_stream(callback=lambda result, error: replies.put((result, error)), stream_timeout=60)
for i, model in enumerate(["master", "nope", "master"]):
    client.async_stream_infer(model, images_input(), request_id=f"s-{i}", outputs=logits)
out["stream"] = []
for _ in range(3):
    result, error = replies.get(timeout=60)
    if error is None:
        out["stream"].append([result.get_response().id, result.as_numpy("logits").tolist()])
    else:
        out["stream"].append(["error", error.message()])
client.stop_stream()

(stats,) = client.get_inference_statistics("master").model_stats
out["stats"] = {
    "name": stats.name,
    "success": stats.inference_stats.success.count,
    "fail": stats.inference_stats.fail.count,
    "inference_count": stats.inference_count,
}
out["all_stats"] = [s.name for s in client.get_inference_statistics().model_stats]

errors = {}
wrong = grpcclient.InferInput("images", [1, 1, 4, 4], "UINT8")
wrong.set_data_from_numpy(np.zeros((1, 1, 4, 4), dtype=np.uint8))
calls = {
    "shape": lambda: client.infer("master", [wrong]),
    "priority": lambda: client.infer("master", images_input(), priority=2),
    "class_count": lambda: client.infer(
        "master", images_input(), outputs=[grpcclient.InferRequestedOutput("logits", class_count=11)]
    ),
    "timeout": lambda: client.infer("master", images_input(), timeout=1),
    "config": lambda: client.get_model_config("nope"),
}
for key, call in calls.items():
    try:
        call()
    except InferenceServerException as exc:
        errors[key] = [exc.status(), exc.message()]
out["errors"] = errors
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def served():
    torch.manual_seed(0)
    model = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25).eval()
    engine = InferenceEngine(model, model_name="master", max_batch=16)
    server, port = create_server({"master": engine})
    yield model, f"127.0.0.1:{port}"
    server.stop(0).wait()


def _top3(logits: np.ndarray) -> list[list[str]]:
    order = np.argsort(-logits, axis=1, kind="stable")[:, :3]
    return [[f"{float(row[i]):f}:{i}" for i in idx] for row, idx in zip(logits, order, strict=True)]


def test_stock_client_drives_every_rpc(served):
    model, target = served
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 8, 8), dtype=np.uint8)
    run = subprocess.run(
        [sys.executable, "-c", CLIENT, target, json.dumps(images.tolist())],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    expected = predict_logits(model, images)

    assert out["live"] and out["ready"] and out["model_ready"] and out["server_name"] == "specedge"
    assert out["extensions"] == ["classification", "model_configuration", "statistics"]
    assert out["inputs"] == [["images", "UINT8", [-1, 1, 8, 8]]]
    assert out["outputs"] == [["logits", "FP32", [-1, 10]]]
    assert out["config"] == {
        "name": "master",
        "max_batch_size": 16,
        "input": [["images", "TYPE_UINT8", [1, 8, 8]]],
        "output": [["logits", "TYPE_FP32", [10]]],
    }

    np.testing.assert_allclose(np.array(out["logits"]), expected, rtol=1e-5, atol=1e-5)
    assert out["id"] == "t-1" and out["compute_time_us"] >= 0
    assert out["top3"] == _top3(predict_logits(model, images))
    assert out["async"][0] == "a-1"
    np.testing.assert_allclose(np.array(out["async"][1]), expected, rtol=1e-5, atol=1e-5)

    (first, second, third) = out["stream"]
    assert (first[0], second[0], third[0]) == ("s-0", "error", "s-2")
    assert second[1].startswith("NOT_FOUND: unknown model 'nope'")
    for reply in (first, third):
        np.testing.assert_allclose(np.array(reply[1]), expected, rtol=1e-5, atol=1e-5)

    # answered: infer, class_count, async, two streamed; each of 5 images
    assert out["stats"] == {"name": "master", "success": 5, "fail": 0, "inference_count": 25}
    assert out["all_stats"] == ["master"]

    errors = out["errors"]
    assert set(errors) == {"shape", "priority", "class_count", "timeout", "config"}
    assert errors["shape"][0] == "StatusCode.INVALID_ARGUMENT" and "8, 8" in errors["shape"][1]
    assert errors["priority"] == ["StatusCode.INVALID_ARGUMENT", errors["priority"][1]]
    assert "priority is not supported" in errors["priority"][1]
    assert errors["class_count"][0] == "StatusCode.INVALID_ARGUMENT"
    assert errors["timeout"][0] == "StatusCode.DEADLINE_EXCEEDED"
    assert errors["config"][0] == "StatusCode.NOT_FOUND"
