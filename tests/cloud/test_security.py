"""TLS, mutual TLS and the bearer token, end to end with certificates made here; plus the serve CLI's checks."""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from grpc_health.v1 import health_pb2, health_pb2_grpc

from specedge.cli import main
from specedge.cli._args import TOKEN_ENV, bearer_token
from specedge.cloud import InferenceEngine, create_server
from specedge.cloud.security import TlsConfig, TokenAuthInterceptor, is_loopback, read_token_file
from specedge.edge.cloud_client import CloudClient
from specedge.errors import CloudRejected, CloudUnavailable, ConfigError
from specedge.models import build_classifier

TOKEN = "s3cret-token_42"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _ca(cn: str, cwd: Path) -> None:
    """``ca.key`` and ``ca.pem``: a self-signed one-day CA."""
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "1", "-subj", f"/CN={cn}", cwd=cwd)  # fmt: skip


def _signed(name: str, cn: str, extensions: str, cwd: Path) -> None:
    """``name.key`` and ``name.pem``: an EC key and a one-day certificate signed by ``ca``."""
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=cwd)  # fmt: skip
    (cwd / f"{name}.ext").write_text(extensions + "\n", encoding="utf-8")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "1", "-extfile", f"{name}.ext", cwd=cwd)  # fmt: skip


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, a server certificate for localhost/127.0.0.1 and a client certificate, made with openssl."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    folder = tmp_path_factory.mktemp("certs")
    _ca("specedge-test-ca", folder)
    _signed("server", "localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", folder)
    _signed("client", "edge-1", "extendedKeyUsage=clientAuth", folder)
    _signed("rogue", "rogue", "extendedKeyUsage=clientAuth", folder)
    # a second CA, so a client certificate from it is a stranger to the server
    other = folder / "other"
    other.mkdir()
    _ca("other-ca", other)
    _signed("stranger", "stranger", "extendedKeyUsage=clientAuth", other)
    return folder


@pytest.fixture(scope="module")
def engine() -> InferenceEngine:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)
    return InferenceEngine(classifier, model_name="master")


def _images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (2, 1, 8, 8), dtype=np.uint8)


@pytest.fixture
def tls_server(engine: InferenceEngine, certs: Path) -> Iterator[int]:
    server, port = create_server({"master": engine}, tls=TlsConfig(certs / "server.pem", certs / "server.key"))
    yield port
    server.stop(None)


@pytest.fixture
def mtls_server(engine: InferenceEngine, certs: Path) -> Iterator[int]:
    tls = TlsConfig(certs / "server.pem", certs / "server.key", client_ca=certs / "ca.pem")
    server, port = create_server({"master": engine}, tls=tls)
    yield port
    server.stop(None)


def test_tls_serves_a_client_that_trusts_the_ca(tls_server: int, certs: Path) -> None:
    with CloudClient(f"localhost:{tls_server}", model_name="master", root_ca=certs / "ca.pem") as client:
        assert client.server_ready()
        assert client.infer(_images(), request_id="tls-1").logits.shape == (2, 10)
    # by IP address too: the certificate names 127.0.0.1
    with CloudClient(f"127.0.0.1:{tls_server}", model_name="master", root_ca=certs / "ca.pem") as client:
        assert client.server_ready()


def test_tls_refuses_plaintext_and_untrusting_clients(tls_server: int, certs: Path) -> None:
    with (
        CloudClient(f"127.0.0.1:{tls_server}", model_name="master", timeout_s=2) as plain,
        pytest.raises(CloudUnavailable, match="UNAVAILABLE"),
    ):
        plain.server_ready()
    # TLS, but trusting another CA: the server's certificate does not verify
    with (
        CloudClient(
            f"localhost:{tls_server}", model_name="master", root_ca=certs / "other" / "ca.pem", timeout_s=2
        ) as wrong_ca,  # fmt: skip
        pytest.raises(CloudUnavailable, match="UNAVAILABLE"),
    ):
        wrong_ca.server_ready()


def test_mutual_tls_needs_a_client_certificate_from_the_ca(mtls_server: int, certs: Path) -> None:
    target = f"localhost:{mtls_server}"
    with CloudClient(
        target, model_name="master", root_ca=certs / "ca.pem",
        client_cert=certs / "client.pem", client_key=certs / "client.key",
    ) as client:  # fmt: skip
        assert client.infer(_images(), request_id="mtls-1").logits.shape == (2, 10)
    with (
        CloudClient(target, model_name="master", root_ca=certs / "ca.pem", timeout_s=2) as anonymous,
        pytest.raises(CloudUnavailable),
    ):
        anonymous.server_ready()
    with (
        CloudClient(
            target,
            model_name="master",
            root_ca=certs / "ca.pem",
            timeout_s=2,
            client_cert=certs / "other" / "stranger.pem",
            client_key=certs / "other" / "stranger.key",
        ) as stranger,  # fmt: skip
        pytest.raises(CloudUnavailable),
    ):
        stranger.server_ready()


def test_token_right_wrong_and_missing(engine: InferenceEngine) -> None:
    server, port = create_server({"master": engine}, token=TOKEN)
    target = f"127.0.0.1:{port}"
    try:
        with CloudClient(target, model_name="master", token=TOKEN) as client:
            assert client.infer(_images(), request_id="auth-1").logits.shape == (2, 10)
            assert client.model_metadata()["name"] == "master"
        for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
            with CloudClient(target, model_name="master", token=token) as client:
                with pytest.raises(CloudRejected, match="UNAUTHENTICATED: missing or wrong bearer token") as info:
                    client.infer(_images(), request_id="auth-2")
                assert info.value.status == "UNAUTHENTICATED"
                with pytest.raises(CloudRejected, match="UNAUTHENTICATED"):
                    client.server_live()
        # health checks stay open (they reveal only SERVING / NOT_SERVING)
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        # refused calls count as UNAUTHENTICATED in the metrics
        counts = server.rpc_metrics.counts()
        assert counts[("/inference.GRPCInferenceService/ModelInfer", "UNAUTHENTICATED")] == 4
        assert counts[("/inference.GRPCInferenceService/ModelInfer", "OK")] == 1
    finally:
        server.stop(None)


def test_token_and_tls_together(engine: InferenceEngine, certs: Path) -> None:
    server, port = create_server(
        {"master": engine}, tls=TlsConfig(certs / "server.pem", certs / "server.key"), token=TOKEN
    )
    try:
        with CloudClient(f"localhost:{port}", model_name="master", root_ca=certs / "ca.pem", token=TOKEN) as client:
            assert client.server_ready()
        with (
            CloudClient(f"localhost:{port}", model_name="master", root_ca=certs / "ca.pem") as client,
            pytest.raises(CloudRejected, match="UNAUTHENTICATED"),
        ):
            client.server_ready()
    finally:
        server.stop(None)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True), ("localhost", True),
     ("0.0.0.0", False), ("::", False), ("[::]", False), ("10.0.0.5", False), ("cloud.example", False)],
)  # fmt: skip
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_warns_when_plaintext_reaches_the_network(engine: InferenceEngine, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="specedge.cloud.server"):
        server, _ = create_server({"master": engine}, address="0.0.0.0:0", token=TOKEN)
        server.stop(None)
        local, _ = create_server({"master": engine})
        local.stop(None)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "serving plaintext gRPC on 0.0.0.0:0" in warnings[0]
    assert "the bearer token travels unencrypted" in warnings[0]
    assert "--tls-cert/--tls-key" in warnings[0]


def test_no_warning_with_tls_on_the_network(
    engine: InferenceEngine, certs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="specedge.cloud.server"):
        server, _ = create_server(
            {"master": engine}, address="0.0.0.0:0", tls=TlsConfig(certs / "server.pem", certs / "server.key")
        )
        server.stop(None)
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_bad_tls_files_and_tokens_are_config_errors(tmp_path: Path, certs: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read TLS certificate .*missing\.pem"):
        TlsConfig(tmp_path / "missing.pem", certs / "server.key").server_credentials()
    (tmp_path / "junk.pem").write_text("not a certificate", encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a PEM file"):
        TlsConfig(tmp_path / "junk.pem", certs / "server.key").server_credentials()
    with pytest.raises(ConfigError, match="empty"):
        TokenAuthInterceptor("")
    with pytest.raises(ConfigError, match="printable ASCII without spaces"):
        TokenAuthInterceptor("two words")
    (tmp_path / "token").write_text(f"  {TOKEN}\n", encoding="utf-8")
    assert read_token_file(tmp_path / "token") == TOKEN
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"token file .*empty is empty"):
        read_token_file(tmp_path / "empty")
    with pytest.raises(ConfigError, match="cannot read token file"):
        read_token_file(tmp_path / "nope")
    with pytest.raises(ConfigError, match="client_cert and client_key"):
        CloudClient("127.0.0.1:1", model_name="m", client_cert=certs / "client.pem")


def test_serve_reads_the_token_from_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert bearer_token(None) is None
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert bearer_token(None) == "from-env"
    (tmp_path / "token").write_text("from-file\n", encoding="utf-8")
    assert bearer_token(tmp_path / "token") == "from-file"


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--tls-cert", "c.pem"], "TLS needs both --tls-cert FILE and --tls-key FILE"),
        (["--tls-client-ca", "ca.pem"], "--tls-client-ca needs --tls-cert and --tls-key"),
        (["--little", "little"], "--little and --big name the duo's artifacts; pass --duo FILE"),
    ],
)
def test_serve_flag_errors_are_one_line(
    flags: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--model", str(tmp_path), "--port", "0", *flags]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_serve_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["serve", "--model", "m", "--max-batch", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--max-batch: expected a positive integer, got '0'" in err
    assert main(["serve", "--port", "0"]) == 1
    assert "nothing to serve; pass --model DIR" in capsys.readouterr().err
