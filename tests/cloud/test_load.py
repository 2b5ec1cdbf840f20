"""Load test over real gRPC channels (loopback): many clients, a small queue, honest queue time.

One server in this process with dynamic batching and a deliberately small queue; 64 client
threads in a child process (so the clients' GIL is not the server's), each on its own channel,
send batch-1 requests as fast as they are answered (a refused client backs off 50 ms). Every
answer must equal the model's local logits or be an explicit RESOURCE_EXHAUSTED, and the small
queue must refuse some; the server's memory stays bounded; the queue time the server reports must
match what the clients observe: mean(latency - network - compute) within 10% of mean(queue
time), where "network" (the round trip outside the model: transport, gRPC, both processes'
threads) is the median round trip of a no-op RPC (ServerLive) probed during the same load.
"""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np
import psutil
import pytest
import torch

from specedge.cloud.engine import InferenceEngine
from specedge.cloud.server import create_server
from specedge.models import build_classifier
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub

CLIENTS = 64
REQUESTS_PER_CLIENT = 25
POOL = 32  # distinct images; answers are checked against each one's local logits
MAX_QUEUE = 32
MAX_BATCH = 4
FORWARD_PAD_S = 0.03
ALLOWED_RSS_GROWTH_BYTES = 150 * 2**20


@dataclass
class Outcome:
    code: grpc.StatusCode
    latency_ns: int
    image: int
    logits: np.ndarray | None = None
    queue_us: int = 0
    compute_us: int = 0


def _request(images: np.ndarray) -> pb.ModelInferRequest:
    request = pb.ModelInferRequest(model_name="master")
    tensor = request.inputs.add(name="images")
    tensor.datatype, shape, raw = tensors.encode_raw(images)
    tensor.shape.extend(shape)
    request.raw_input_contents.append(raw)
    return request


def _client(target: str, pool: np.ndarray, seed: int, start: threading.Barrier, out: list[Outcome]) -> None:
    rng = np.random.default_rng(seed)
    requests = [_request(pool[i : i + 1]) for i in range(len(pool))]
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]  # generated
        stub.ServerLive(pb.ServerLiveRequest(), timeout=30)  # connect before the clock starts
        start.wait()
        for _ in range(REQUESTS_PER_CLIENT):
            index = int(rng.integers(len(pool)))
            sent_ns = time.perf_counter_ns()
            try:
                response = stub.ModelInfer(requests[index], timeout=60)
            except grpc.RpcError as exc:
                out.append(Outcome(exc.code(), time.perf_counter_ns() - sent_ns, index))
                time.sleep(0.05)  # a refused client backs off, as a real one would
                continue
            latency_ns = time.perf_counter_ns() - sent_ns
            params = tensors.read_parameters(response.parameters)
            logits = tensors.decode_outputs(response)["logits"]
            out.append(
                Outcome(
                    grpc.StatusCode.OK,
                    latency_ns,
                    index,
                    logits,
                    int(params["queue_time_us"]),
                    int(params["compute_time_us"]),
                )
            )


def _probe(target: str, stop: threading.Event, round_trips_ns: list[int]) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]  # generated
        stub.ServerLive(pb.ServerLiveRequest(), timeout=30)
        while not stop.is_set():
            sent_ns = time.perf_counter_ns()
            stub.ServerLive(pb.ServerLiveRequest(), timeout=30)
            round_trips_ns.append(time.perf_counter_ns() - sent_ns)
            time.sleep(0.005)


def _run_clients(target: str, pool: np.ndarray) -> tuple[list[Outcome], list[int]]:
    """All clients and the network probe, in a child process (so their GIL is not the server's)."""
    outcomes: list[Outcome] = []
    round_trips_ns: list[int] = []
    start = threading.Barrier(CLIENTS + 1)
    clients = [threading.Thread(target=_client, args=(target, pool, seed, start, outcomes)) for seed in range(CLIENTS)]
    for thread in clients:
        thread.start()
    stop = threading.Event()
    probe = threading.Thread(target=_probe, args=(target, stop, round_trips_ns))
    start.wait()
    probe.start()
    for thread in clients:
        thread.join(timeout=90)
    stop.set()
    probe.join(timeout=30)
    return outcomes, round_trips_ns


@pytest.mark.timeout(120)
def test_many_clients_get_correct_answers_or_resource_exhausted(rng: np.random.Generator) -> None:
    torch.manual_seed(0)
    classifier = build_classifier("convnet", num_classes=10, image_shape=(3, 32, 32)).eval()
    pool = rng.integers(0, 256, size=(POOL, 3, 32, 32), dtype=np.uint8)
    with torch.inference_mode():
        expected = classifier(torch.from_numpy(pool)).numpy()
    # Each forward pass also waits FORWARD_PAD_S without using the CPU, like a model on an
    # accelerator: on this 2-core host the clients and the server otherwise fight for the cores, and
    # the time an answered request then waits for a core (or the GIL) is neither queue nor network.
    classifier.register_forward_hook(lambda module, args, output: time.sleep(FORWARD_PAD_S))
    engine = InferenceEngine(
        classifier, model_name="master", max_batch=MAX_BATCH, max_queue_delay_us=0, max_queue_size=MAX_QUEUE
    )
    server, port = create_server({"master": engine}, rpc_workers=CLIENTS + 16)
    target = f"127.0.0.1:{port}"
    process = psutil.Process()
    try:
        _client(target, pool, 0, threading.Barrier(1), [])  # warm up: one client alone
        rss_before = process.memory_info().rss
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool_executor:
            outcomes, round_trips_ns = pool_executor.submit(_run_clients, target, pool).result(timeout=100)
        rss_after = process.memory_info().rss
        stats = engine.statistics()
    finally:
        server.stop(5).wait()
        engine.close()

    assert len(outcomes) == CLIENTS * REQUESTS_PER_CLIENT
    codes = {o.code for o in outcomes}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    answered = [o for o in outcomes if o.code == grpc.StatusCode.OK]
    refused = [o for o in outcomes if o.code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert refused, "a queue of 32 under 64 clients must refuse some requests"
    assert len(answered) >= CLIENTS
    for o in answered:
        assert o.logits is not None
        np.testing.assert_allclose(o.logits, expected[o.image : o.image + 1], rtol=1e-4, atol=1e-4)
        assert int(o.logits.argmax()) == int(expected[o.image].argmax())
    assert rss_after - rss_before < ALLOWED_RSS_GROWTH_BYTES
    assert stats.success.count >= len(answered) and stats.fail.count >= len(refused)

    network_ns = statistics.median(round_trips_ns)
    latency_ns = statistics.mean(o.latency_ns for o in answered)
    queue_ns = statistics.mean(o.queue_us * 1000 for o in answered)
    compute_ns = statistics.mean(o.compute_us * 1000 for o in answered)
    observed_wait_ns = latency_ns - network_ns - compute_ns
    print(
        f"\nanswered {len(answered)}, refused {len(refused)}; mean latency {latency_ns / 1e6:.2f} ms, "
        f"network {network_ns / 1e6:.2f} ms, compute {compute_ns / 1e6:.2f} ms, reported queue "
        f"{queue_ns / 1e6:.2f} ms, observed wait {observed_wait_ns / 1e6:.2f} ms, batches {stats.batch_stats}"
    )
    assert queue_ns > 2 * compute_ns  # the load really queued requests
    assert abs(queue_ns - observed_wait_ns) <= 0.10 * observed_wait_ns
