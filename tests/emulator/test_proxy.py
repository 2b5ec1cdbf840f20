"""LinkEmulator on loopback: exact forwarding, imposed delay and bandwidth, gRPC through it, failures, stop.

Timings are only checked from below (the emulator must not be faster than the link); the CI machine
is noisy, so no upper bounds.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, create_server
from specedge.edge.cloud_client import CloudClient
from specedge.emulator import LinkEmulator
from specedge.errors import CloudError, ConfigError
from specedge.models import ImageClassifier, build_classifier
from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import LinkProfile, get_link_profile

FAST_MBPS = 1000.0


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The emulator's thread must not log errors (asyncio reports a failed or cancelled handler that way)."""
    yield
    errors = [r.getMessage() for r in caplog.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors


def _link(*, up_mbps: float = FAST_MBPS, down_mbps: float = FAST_MBPS, rtt_ms: float = 0.0) -> LinkProfile:
    return replace(
        get_link_profile("lte"), uplink=ConstantRate(up_mbps), downlink=ConstantRate(down_mbps), rtt_ms=rtt_ms
    )


class _Echo(socketserver.BaseRequestHandler):
    """Sends back every byte; on the client's EOF, half-closes its side too."""

    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)
        self.request.shutdown(socket.SHUT_WR)


class _EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def _start_echo(port: int = 0) -> tuple[_EchoServer, threading.Thread]:
    server = _EchoServer(("127.0.0.1", port), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return server, thread


@pytest.fixture
def echo() -> Iterator[str]:
    server, thread = _start_echo()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def _exchange(address: str, payload: bytes) -> bytes:
    """Send ``payload`` (from a thread, so neither side blocks the other), half-close, read to EOF."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:

        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        sender.join()
    return b"".join(chunks)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_bytes_are_forwarded_exactly_both_ways(echo: str, rng: np.random.Generator) -> None:
    sizes = [1, 1000, 65_536, 200_000]
    payloads = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in sizes]
    with LinkEmulator(echo, _link()) as emulator:
        results: dict[int, bytes] = {}
        threads = [
            threading.Thread(target=lambda i=i, p=p: results.__setitem__(i, _exchange(emulator.target, p)))
            for i, p in enumerate(payloads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    stats = emulator.stats()  # after stop(): every connection has been closed and counted
    assert [results[i] for i in range(len(payloads))] == payloads
    assert stats.bytes_up == stats.bytes_down == sum(sizes)
    assert stats.connections == 4 and stats.failed_connections == 0 and stats.open_connections == 0
    assert stats.chunks_up >= len(sizes) and stats.promotions == 0


def test_a_round_trip_takes_at_least_the_rtt(echo: str) -> None:
    with LinkEmulator(echo, _link(rtt_ms=100.0)) as emulator:
        host, port = emulator.target.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            started = time.monotonic()
            sock.sendall(b"x")
            assert sock.recv(1) == b"x"
            assert time.monotonic() - started >= 0.1


def test_uplink_bandwidth_is_imposed(echo: str, rng: np.random.Generator) -> None:
    payload = rng.integers(0, 256, 65_536, dtype=np.uint8).tobytes()
    with LinkEmulator(echo, _link(up_mbps=2.0), tcp_handshake=False) as emulator:
        started = time.monotonic()
        assert _exchange(emulator.target, payload) == payload
        assert time.monotonic() - started >= 0.25  # 65536 B * 8 / 2 Mbit/s = 0.262 s


@pytest.fixture(scope="module")
def classifier() -> ImageClassifier:
    torch.manual_seed(0)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 8, 8), width=0.25)


@pytest.fixture
def grpc_target(classifier: ImageClassifier) -> Iterator[str]:
    engine = InferenceEngine(classifier, model_name="master", max_batch=32)
    server, port = create_server({"master": engine})
    yield f"127.0.0.1:{port}"
    server.stop(None)


def test_grpc_through_the_emulator_matches_a_direct_call(grpc_target: str, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, size=(4, 1, 8, 8), dtype=np.uint8)
    with CloudClient(grpc_target, model_name="master") as client:
        direct = client.infer(images, request_id="direct").logits
    with LinkEmulator(grpc_target, get_link_profile("wifi")) as emulator:
        with CloudClient(emulator.target, model_name="master", timeout_s=10.0) as client:
            response = client.infer(images, request_id="emulated")
        stats = emulator.stats()
    np.testing.assert_array_equal(response.logits, direct)
    assert response.round_trip_us >= get_link_profile("wifi").rtt_ms * 1e3
    assert stats.connections >= 1 and stats.bytes_up >= response.request_bytes
    assert stats.bytes_down >= response.response_bytes


def test_unreachable_target_fails_the_call_and_the_emulator_keeps_serving(rng: np.random.Generator) -> None:
    port = _free_port()  # nothing listens here (yet)
    with LinkEmulator(f"127.0.0.1:{port}", _link()) as emulator:
        # The message names the gRPC status (CloudClient's failure mapping may refine the class).
        with (
            CloudClient(emulator.target, model_name="master", timeout_s=5.0) as client,
            pytest.raises(CloudError, match="UNAVAILABLE"),
        ):
            client.infer(np.zeros((1, 1, 8, 8), dtype=np.uint8), request_id="lost")
        assert emulator.running and emulator.stats().failed_connections >= 1
        server, thread = _start_echo(port)  # the target comes up: new connections get through
        try:
            payload = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
            assert _exchange(emulator.target, payload) == payload
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def test_stop_closes_connections_with_data_in_flight(echo: str) -> None:
    emulator = LinkEmulator(echo, _link(rtt_ms=20_000.0)).start()  # delivery 10 s away
    host, port = emulator.target.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"in flight")
        time.sleep(0.05)
        emulator.stop()
        assert not emulator.running  # the loop thread ended (stop joins it)
        with contextlib.suppress(ConnectionResetError):  # closed (FIN) or reset: either way, not left hanging
            assert sock.recv(1) == b""
    emulator.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        _ = emulator.target


def test_radio_promotion_is_counted_once_for_a_round_trip(echo: str) -> None:
    with LinkEmulator(echo, _link(), radio_promotion=True, tcp_handshake=False) as emulator:
        assert _exchange(emulator.target, b"ping") == b"ping"
        assert emulator.stats().promotions == 1


@pytest.mark.parametrize(
    ("target", "kwargs", "needle"),
    [
        ("nohost", {}, "'nohost' is not HOST:PORT"),
        ("127.0.0.1:0", {}, "port in 1..65535"),
        ("127.0.0.1:70000", {}, "'127.0.0.1:70000'"),
        ("127.0.0.1:8001", {"listen_port": -1}, "listen_port"),
        ("127.0.0.1:8001", {"listen_host": ""}, "listen_host"),
    ],
)
def test_bad_arguments_raise_config_error(target: str, kwargs: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        LinkEmulator(target, _link(), **kwargs)  # type: ignore[arg-type]


def test_bad_link_and_busy_port_raise_config_error(echo: str) -> None:
    with pytest.raises(ConfigError, match="LinkProfile"):
        LinkEmulator(echo, "lte")  # type: ignore[arg-type]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            LinkEmulator(echo, _link(), listen_port=port).start()


def test_cli_rejects_an_unknown_link(capsys: pytest.CaptureFixture[str]) -> None:
    from specedge.cli import main

    assert main(["emulate", "--link", "lte5", "--target", "127.0.0.1:8001"]) == 1
    assert "'lte5'" in capsys.readouterr().err
    assert main(["emulate", "--link", "lte", "--target", "nohost"]) == 1
    assert "'nohost'" in capsys.readouterr().err
