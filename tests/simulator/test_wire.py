"""Wire sizes against the real server: message sizes, and HTTP/2 bytes counted by a TCP proxy."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from specedge.cloud import InferenceEngine, create_server
from specedge.edge.cloud_client import CloudClient
from specedge.errors import ConfigError
from specedge.models import build_classifier
from specedge.simulator.links import ConnectionProfile
from specedge.simulator.wire import (
    WireFraming,
    compressed_request_bytes,
    compression_ratio,
    http2_stream_bytes,
    infer_message_sizes,
    wire_bytes,
)


class ByteCountingProxy:
    """Forwards TCP connections to ``target_port`` and counts the bytes each way (threads)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.uplink_bytes = 0
        self.downlink_bytes = 0
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:  # closed by stop()
                return
            server = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, server]
            for source, sink, up in ((client, server, True), (server, client, False)):
                thread = threading.Thread(target=self._pump, args=(source, sink, up), daemon=True)
                thread.start()
                self._threads.append(thread)

    def _pump(self, source: socket.socket, sink: socket.socket, up: bool) -> None:
        try:
            while data := source.recv(1 << 16):
                with self._lock:
                    if up:
                        self.uplink_bytes += len(data)
                    else:
                        self.downlink_bytes += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.uplink_bytes, self.downlink_bytes

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        for sock in self._sockets:
            sock.close()
        for thread in self._threads:
            thread.join(timeout=2)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[CloudClient, ByteCountingProxy]]:
    torch.manual_seed(0)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=(3, 224, 224), input_size=28, width=0.25)
    server, port = create_server({"master": InferenceEngine(classifier, model_name="master")})
    proxy = ByteCountingProxy(port)
    client = CloudClient(f"127.0.0.1:{proxy.port}", model_name="master")
    try:
        yield client, proxy
    finally:
        client.close()
        server.stop(None)
        proxy.stop()


def test_message_sizes_match_what_the_client_reports(served) -> None:
    client, _ = served
    images = np.zeros((1, 3, 224, 224), dtype=np.uint8)
    answer = client.infer(images, request_id="input-000042")
    sizes = infer_message_sizes(
        (3, 224, 224),
        10,
        request_id="input-000042",
        queue_time_us=answer.queue_time_us,
        compute_time_us=answer.compute_time_us,
    )
    assert (sizes.request_bytes, sizes.response_bytes) == (answer.request_bytes, answer.response_bytes)
    assert sizes.payload_bytes == images.nbytes


def test_http2_bytes_per_call_match_a_byte_counting_proxy(served) -> None:
    """On a kept-open channel, each ModelInfer's bytes are within 40 B + 0.2% of the model, both ways.

    The slack covers gRPC's BDP PING frames (17 bytes, sent now and then in either direction).
    """
    client, proxy = served
    image = np.random.default_rng(0).integers(0, 256, (1, 3, 224, 224), dtype=np.uint8)
    for i in range(3):  # open the channel, fill the HPACK tables, let flow-control windows grow
        client.infer(image, request_id=f"warm-{i}")
    time.sleep(0.2)
    calls = 5
    before = proxy.counts()
    answers = [client.infer(image, request_id=f"call-{i}") for i in range(calls)]
    time.sleep(0.2)
    up, down = (after - start for after, start in zip(proxy.counts(), before, strict=True))
    model_up, model_down = (
        sum(parts)
        for parts in zip(*(http2_stream_bytes(a.request_bytes, a.response_bytes) for a in answers), strict=True)
    )
    assert abs(up - model_up) <= calls * 40 + 0.002 * model_up, (up, model_up)
    assert abs(down - model_down) <= calls * 40 + 0.002 * model_down, (down, model_down)


def test_http2_framing_by_hand() -> None:
    framing = WireFraming()
    up, down = http2_stream_bytes(822, 122, framing)
    # HEADERS 9+9, DATA 9+5+822, two WINDOW_UPDATEs; HEADERS 9+3, DATA 9+5+122, trailers 9+16, one WINDOW_UPDATE.
    assert (int(up), int(down)) == (880, 186)
    big_up, _ = http2_stream_bytes(16384 * 3, 0, framing)
    assert int(big_up) == 18 + 16384 * 3 + 5 + 9 * 4 + 26  # 49157 bytes of gRPC message in four DATA frames


def test_wire_bytes_add_tls_records_and_tcp_ip_headers() -> None:
    plain_up, plain_down = wire_bytes(822, 122, tls=False)
    tls_up, tls_down = wire_bytes(822, 122, tls=True)
    # One segment each way (52 B headers) plus the peer's ACK for it; TLS adds one 22-byte record each way.
    assert (int(plain_up), int(plain_down)) == (880 + 52 + 52, 186 + 52 + 52)
    assert (int(tls_up), int(tls_down)) == (int(plain_up) + 22, int(plain_down) + 22)
    sizes = np.array([822, 150_574])
    up, _ = wire_bytes(sizes, np.array([122, 122]), tls=False)
    assert up.shape == (2,) and up[1] > 150_574 * (1 + 52 / 1448)
    assert ConnectionProfile(tls_version=None).wire_bytes(822, 122)[0] == plain_up


def test_zstd_compression_of_requests() -> None:
    rng = np.random.default_rng(0)
    sparse = np.zeros((4, 1, 28, 28), dtype=np.uint8)
    sparse[:, :, 10:18, 10:18] = 255
    noise = rng.integers(0, 256, (4, 1, 28, 28), dtype=np.uint8)
    assert compression_ratio(sparse) > 4.0
    assert compression_ratio(noise) < 1.05
    sizes = compressed_request_bytes(sparse)
    assert sizes.shape == (4,) and np.all(sizes < infer_message_sizes((1, 28, 28), 10).request_bytes)
    with pytest.raises(ConfigError, match="expected uint8 images"):
        compressed_request_bytes(sparse.astype(np.float32))


def test_message_sizes_validate() -> None:
    with pytest.raises(ConfigError, match="positive sizes"):
        infer_message_sizes((1, 0, 28), 10)
    with pytest.raises(ConfigError, match="framing sizes must be >= 1"):
        WireFraming(mss_bytes=0)
