"""create_server / load_engines / run_server: binding, artifacts, the serve loop and its signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, create_server, load_engines, read_request_log, run_server
from specedge.edge.cloud_client import CloudClient
from specedge.errors import ArtifactError, ConfigError
from specedge.models import ImageClassifier, build_classifier, save_artifact


def _classifier(seed: int = 0) -> ImageClassifier:
    torch.manual_seed(seed)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)


def _artifact(path: Path, seed: int = 0) -> Path:
    return save_artifact(path, _classifier(seed), dataset={"name": "digits"}, metrics={})


def test_create_server_binds_a_free_port() -> None:
    engine = InferenceEngine(_classifier(), model_name="master")
    first, port_a = create_server({"master": engine})
    second, port_b = create_server({"master": engine})
    try:
        assert port_a > 0 and port_b > 0 and port_a != port_b
    finally:
        first.stop(None)
        second.stop(None)


def test_busy_port_is_a_config_error() -> None:
    engine = InferenceEngine(_classifier(), model_name="master")
    server, port = create_server({"master": engine})
    try:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            create_server({"master": engine}, address=f"127.0.0.1:{port}")
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engines": {}}, "needs at least one model"),
        ({"max_workers": 0}, "max_workers must be >= 1; got 0"),
        ({"max_message_bytes": 0}, "max_message_bytes must be >= 1; got 0"),
    ],
)
def test_create_server_validates(kwargs: dict, message: str) -> None:
    engines = kwargs.pop("engines", {"master": InferenceEngine(_classifier(), model_name="master")})
    with pytest.raises(ConfigError, match=message):
        create_server(engines, **kwargs)


def test_engine_key_must_match_its_model_name() -> None:
    with pytest.raises(ConfigError, match="engine registered as 'a' serves model 'b'"):
        create_server({"a": InferenceEngine(_classifier(), model_name="b")})


def test_load_engines_names_models_after_their_folders(tmp_path: Path) -> None:
    master = _artifact(tmp_path / "master", seed=0)
    other = _artifact(tmp_path / "other", seed=1)
    manifest = other / "manifest.json"
    data = json.loads(manifest.read_text(encoding="utf-8"))
    data["model_name"] = "renamed"
    manifest.write_text(json.dumps(data), encoding="utf-8")
    engines = load_engines([master, other])
    assert list(engines) == ["master", "renamed"]
    assert engines["master"].model_version == "1"
    images = np.zeros((1, 1, 8, 8), dtype=np.uint8)
    with torch.inference_mode():
        expected = _classifier(0)(torch.from_numpy(images)).numpy()
    np.testing.assert_array_equal(engines["master"].infer(images).logits, expected)


def test_load_engines_refuses_duplicate_names_and_nothing(tmp_path: Path) -> None:
    a = _artifact(tmp_path / "a" / "master")
    b = _artifact(tmp_path / "b" / "master")
    with pytest.raises(ConfigError, match="two artifacts serve model 'master'"):
        load_engines([a, b])
    with pytest.raises(ConfigError, match="no models to serve"):
        load_engines([])
    with pytest.raises(ArtifactError):
        load_engines([tmp_path / "missing"])


def test_run_server_serves_until_sigterm(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], rng: np.random.Generator
) -> None:
    artifact = _artifact(tmp_path / "master")
    port_file = tmp_path / "run" / "port"
    log_path = tmp_path / "run" / "requests.jsonl"
    results: dict[str, object] = {}

    def edge() -> None:  # runs beside run_server, which must own the main thread for signals
        try:
            deadline = time.monotonic() + 30
            while not port_file.exists() and time.monotonic() < deadline:
                time.sleep(0.02)
            port = int(port_file.read_text(encoding="utf-8"))
            with CloudClient(f"127.0.0.1:{port}", model_name="master") as client:
                client.wait_until_ready(10)
                results["logits"] = client.infer(rng.integers(0, 256, (2, 1, 8, 8), dtype=np.uint8),
                                                 request_id="e-1").logits  # fmt: skip
            results["port"] = port
        except Exception as exc:  # reported below, in the test thread
            results["error"] = exc
        finally:
            os.kill(os.getpid(), signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    helper = threading.Thread(target=edge)
    helper.start()
    code = run_server([artifact], port=0, port_file=port_file, request_log_path=log_path, grace_s=1.0)
    helper.join(timeout=30)
    assert "error" not in results, results.get("error")
    assert code == 0
    assert signal.getsignal(signal.SIGTERM) is before
    assert results["logits"].shape == (2, 10)  # type: ignore[union-attr]
    out = capsys.readouterr().out
    assert out == f"specedge cloud: serving master on 127.0.0.1:{results['port']} (KServe v2 gRPC)\n"
    assert sorted(p.name for p in port_file.parent.iterdir()) == ["port", "requests.jsonl"]  # no temp left
    assert [(e.request_id, e.status, e.batch_size) for e in read_request_log(log_path)] == [("e-1", "OK", 2)]


def test_run_server_refuses_a_busy_port(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path / "master")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ConfigError, match="cannot listen"):
            run_server([artifact], port=port)
    with pytest.raises(ConfigError, match=r"port must be in 0\.\.65535"):
        run_server([artifact], port=70000)
