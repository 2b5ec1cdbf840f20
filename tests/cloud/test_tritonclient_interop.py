"""A stock KServe v2 client (NVIDIA's tritonclient) talks to the SpecEdge server unchanged.

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
import json, sys
import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

client = grpcclient.InferenceServerClient(sys.argv[1])
out = {
    "live": client.is_server_live(),
    "ready": client.is_server_ready(),
    "model_ready": client.is_model_ready("master"),
    "server_name": client.get_server_metadata().name,
}
meta = client.get_model_metadata("master")
out["inputs"] = [[t.name, t.datatype, list(t.shape)] for t in meta.inputs]
out["outputs"] = [[t.name, t.datatype, list(t.shape)] for t in meta.outputs]

images = np.array(json.loads(sys.argv[2]), dtype=np.uint8)
tensor = grpcclient.InferInput("images", list(images.shape), "UINT8")
tensor.set_data_from_numpy(images)
result = client.infer("master", [tensor], outputs=[grpcclient.InferRequestedOutput("logits")], request_id="t-1")
out["logits"] = result.as_numpy("logits").tolist()
out["id"] = result.get_response().id
out["compute_time_us"] = result.get_response().parameters["compute_time_us"].int64_param

wrong = grpcclient.InferInput("images", [1, 1, 4, 4], "UINT8")
wrong.set_data_from_numpy(np.zeros((1, 1, 4, 4), dtype=np.uint8))
try:
    client.infer("master", [wrong])
except InferenceServerException as exc:
    out["error"] = [exc.status(), exc.message()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def served():
    torch.manual_seed(0)
    model = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25).eval()
    server, port = create_server({"master": InferenceEngine(model, model_name="master")})
    yield model, f"127.0.0.1:{port}"
    server.stop(0).wait()


def test_stock_client_health_metadata_inference_and_errors(served):
    model, target = served
    images = np.random.default_rng(0).integers(0, 256, (5, 1, 8, 8), dtype=np.uint8)
    run = subprocess.run(
        [sys.executable, "-c", CLIENT, target, json.dumps(images.tolist())],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["live"] and out["ready"] and out["model_ready"] and out["server_name"] == "specedge"
    assert out["inputs"] == [["images", "UINT8", [-1, 1, 8, 8]]]
    assert out["outputs"] == [["logits", "FP32", [-1, 10]]]
    np.testing.assert_allclose(np.array(out["logits"]), predict_logits(model, images), rtol=1e-5, atol=1e-5)
    assert out["id"] == "t-1" and out["compute_time_us"] >= 0
    status, message = out["error"]
    assert status == "StatusCode.INVALID_ARGUMENT" and "8, 8" in message
