"""create_server / load_engines / run_server: binding, artifacts, the serve loop and its signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from specedge.cloud import InferenceEngine, create_server, load_engines, read_request_log, run_server
from specedge.cloud.server import BatchingConfig
from specedge.edge.cloud_client import CloudClient
from specedge.errors import ArtifactError, CloudOverloaded, ConfigError
from specedge.models import ImageClassifier, build_classifier, save_artifact

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


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
        ({"rpc_workers": 0}, "rpc_workers must be >= 1; got 0"),
        ({"max_message_bytes": 0}, "max_message_bytes must be >= 1; got 0"),
        ({"max_concurrent_rpcs": 0}, "max_concurrent_rpcs must be >= 1"),
        ({"metrics_port": 70000}, r"metrics_port must be in 0\.\.65535"),
    ],
)
def test_create_server_validates(kwargs: dict, message: str) -> None:
    engines = kwargs.pop("engines", {"master": InferenceEngine(_classifier(), model_name="master")})
    with pytest.raises(ConfigError, match=message):
        create_server(engines, **kwargs)


def test_engine_key_must_match_its_model_name() -> None:
    with pytest.raises(ConfigError, match="registered as 'a' serves model 'b'"):
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


class _SlowEngine(InferenceEngine):
    """An engine whose every inference takes ``delay_s`` longer: a request that is surely in flight."""

    delay_s = 1.0

    def infer(self, images: np.ndarray, **keywords: object):  # type: ignore[no-untyped-def, override]
        time.sleep(self.delay_s)
        return super().infer(images, **keywords)


def test_graceful_stop_drains_in_flight_requests(rng: np.random.Generator) -> None:
    server, port = create_server({"master": _SlowEngine(_classifier(), model_name="master")})
    target = f"127.0.0.1:{port}"
    outcome: dict[str, object] = {}
    images = rng.integers(0, 256, (1, 1, 8, 8), dtype=np.uint8)

    def in_flight() -> None:
        with CloudClient(target, model_name="master", timeout_s=30) as client:
            try:
                outcome["logits"] = client.infer(images, request_id="slow-1").logits
            except Exception as exc:
                outcome["error"] = exc

    with grpc.insecure_channel(target) as channel:
        health_stub = health_pb2_grpc.HealthStub(channel)
        assert health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == SERVING
        worker = threading.Thread(target=in_flight)
        worker.start()
        time.sleep(0.3)  # the request is now inside the slow engine
        stopped = server.stop(10)
        assert not stopped.is_set()  # still draining
        # new RPCs are refused while the old one finishes
        with pytest.raises(grpc.RpcError) as info:
            health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert stopped.wait(10)
        worker.join(10)
    assert "error" not in outcome, outcome.get("error")
    assert outcome["logits"].shape == (1, 10)  # type: ignore[union-attr]


def test_graceful_stop_reports_not_serving_and_not_ready() -> None:
    server, port = create_server({"master": _classifier_engine()})
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        health_stub = health_pb2_grpc.HealthStub(channel)
        server._health.enter_graceful_shutdown()  # what stop() does first, observed before the port closes
        server._servicer.shutting_down = True
        assert health_stub.Check(health_pb2.HealthCheckRequest(), timeout=5).status == NOT_SERVING
        with CloudClient(f"127.0.0.1:{port}", model_name="master") as client:
            assert client.server_ready() is False
    server.stop(None)


def _classifier_engine() -> InferenceEngine:
    return InferenceEngine(_classifier(), model_name="master")


def test_max_concurrent_rpcs_answers_resource_exhausted(rng: np.random.Generator) -> None:
    server, port = create_server({"master": _SlowEngine(_classifier(), model_name="master")}, max_concurrent_rpcs=1)
    target = f"127.0.0.1:{port}"
    images = rng.integers(0, 256, (1, 1, 8, 8), dtype=np.uint8)
    first: dict[str, object] = {}

    def busy() -> None:
        with CloudClient(target, model_name="master", timeout_s=30) as client:
            first["logits"] = client.infer(images, request_id="busy").logits

    try:
        worker = threading.Thread(target=busy)
        worker.start()
        time.sleep(0.3)
        with CloudClient(target, model_name="master") as client, pytest.raises(CloudOverloaded):
            client.infer(images, request_id="one-too-many")
        worker.join(10)
        assert first["logits"].shape == (1, 10)  # type: ignore[union-attr]
    finally:
        server.stop(None)


def test_reflection_lists_the_services() -> None:
    server, port = create_server({"master": _classifier_engine()})
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
            names = {service.name for service in reply.list_services_response.service}
            assert {"inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
            # a client can fetch the protocol's descriptors without the .proto file
            request = reflection_pb2.ServerReflectionRequest(file_containing_symbol="inference.GRPCInferenceService")
            (reply,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
            assert reply.file_descriptor_response.file_descriptor_proto
    finally:
        server.stop(None)


def test_run_server_closes_models_after_draining(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path / "master")
    port_file = tmp_path / "port"
    closed: list[str] = []
    original = getattr(InferenceEngine, "close", None)

    def close(self: InferenceEngine) -> None:
        closed.append(self.model_name)
        if original is not None:
            original(self)

    def stopper() -> None:
        deadline = time.monotonic() + 30
        while not port_file.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    InferenceEngine.close = close  # type: ignore[attr-defined, method-assign]
    try:
        helper = threading.Thread(target=stopper)
        helper.start()
        assert run_server([artifact], port=0, port_file=port_file, grace_s=1.0, metrics_port=0) == 0
        helper.join(10)
    finally:
        if original is None:
            del InferenceEngine.close  # type: ignore[attr-defined]
        else:
            InferenceEngine.close = original  # type: ignore[method-assign]
    assert closed == ["master"]


def test_load_engines_applies_the_batching_flags(tmp_path: Path) -> None:
    artifact = _artifact(tmp_path / "master")
    engines = load_engines([artifact], batching=BatchingConfig(max_batch=4, max_delay_us=500, max_queue=8, workers=2))
    try:
        config = engines["master"].config()
        assert (config.max_batch_size, config.max_queue_delay_us, config.max_queue_size, config.instance_count) == (
            4,
            500,
            8,
            2,
        )
    finally:
        for engine in engines.values():
            engine.close()


def test_serve_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from specedge.cli import main

    with pytest.raises(SystemExit) as info:
        main(["serve", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--model", "--duo", "--little", "--big", "--host", "--port", "--port-file", "--metrics-port",
        "--max-message-mb", "--max-batch", "--max-delay-us", "--max-queue", "--workers", "--rpc-workers",
        "--max-concurrent-rpcs", "--threads", "--tls-cert", "--tls-key", "--tls-client-ca", "--token-file",
        "--request-log", "--grace-s", "SPECEDGE_TOKEN",
    ):  # fmt: skip
        assert flag in text, flag
    assert "--parent-pid" not in text  # internal to CloudServerProcess


def test_a_duo_is_served_under_the_big_name_with_the_batching_flags(digits_models, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """--duo FILE --big DIR (the little found next to duo.json), as `specedge serve` loads it."""
    from specedge.cloud.server import DuoSpec, _load_models
    from specedge.pairing import PoolMember, analyse_duo, write_duo

    splits, master, speculative = digits_models

    def logits(model: ImageClassifier, images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(images)).numpy()

    little_dir = save_artifact(tmp_path / "little-distilled", speculative, dataset={"name": "digits"}, metrics={})
    big_dir = save_artifact(tmp_path / "big", master, dataset={"name": "digits"}, metrics={})
    val, test = splits.val.images, splits.test.images
    members = [
        PoolMember(little_dir.name, logits(speculative, val), logits(speculative, test), 0.1, 1.0, 1, 1),
        PoolMember("master", logits(master, val), logits(master, test), 1.0, 10.0, 10, 10),
    ]
    analysis = analyse_duo(members, splits.val.labels, splits.test.labels, target=1.0)
    assert analysis.probe is not None
    duo_json = write_duo(tmp_path, analysis.probe)
    models = _load_models([], DuoSpec(duo_json, big=big_dir), BatchingConfig(max_batch=16, max_queue=32))
    try:
        assert list(models) == ["big"]
        assert models["big"].config().max_batch_size == 16
        server, port = create_server(models)
        try:
            with CloudClient(f"127.0.0.1:{port}", model_name="big") as client:
                answer = client.infer(test[:8], request_id="duo-1")
            assert answer.logits.shape == (8, 10)
        finally:
            server.stop(None)
    finally:
        for model in models.values():
            model.close()


def test_undecodable_requests_are_invalid_argument_also_behind_a_token() -> None:
    server, port = create_server({"master": _classifier_engine()}, token="t0ken")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            raw = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
            with pytest.raises(grpc.RpcError) as info:
                raw(b"\xff\xff\xff", timeout=5, metadata=(("authorization", "Bearer t0ken"),))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "not a valid protobuf message" in info.value.details()
            with pytest.raises(grpc.RpcError) as info:  # no token: refused before anything is parsed
                raw(b"\xff\xff\xff", timeout=5)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            stream = channel.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
            with pytest.raises(grpc.RpcError) as info:
                list(stream(iter([b"\xff\xff\xff"]), timeout=5, metadata=(("authorization", "Bearer t0ken"),)))
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(None)
