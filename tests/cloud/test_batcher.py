"""DynamicBatcher: batches form, results reach the right caller, the queue is bounded, deadlines, drain, honest times.

Timing assertions are lower bounds or orderings only (a slow host makes things later, never earlier).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import pytest

from specedge.cloud.batcher import (
    BatchedResult,
    BatcherClosedError,
    DeadlineExpiredError,
    DynamicBatcher,
    QueueFullError,
)
from specedge.cloud.statistics import BatchStats, StatsRecorder
from specedge.errors import ConfigError, TensorError

WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 7.0


def oracle(x: np.ndarray) -> np.ndarray:
    """A row-wise model: each output row depends on its input row only."""
    return x @ WEIGHTS


class GatedForward:
    """``oracle`` that records batch sizes and can be held (a slow forward) until released."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.computed: list[np.ndarray] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.sizes.append(len(x))
        self.computed.append(x.copy())
        self.entered.set()
        assert self.gate.wait(timeout=30)
        return oracle(x)

    def hold(self) -> None:
        self.gate.clear()
        self.entered.clear()


@pytest.fixture
def forward() -> GatedForward:
    return GatedForward()


@pytest.fixture
def make(forward: GatedForward) -> Iterator[Callable[..., DynamicBatcher]]:
    made: list[DynamicBatcher] = []

    def build(**kwargs: object) -> DynamicBatcher:
        batcher = DynamicBatcher(forward, **kwargs)  # type: ignore[arg-type]
        made.append(batcher)
        return batcher

    yield build
    forward.gate.set()
    for batcher in made:
        batcher.close(timeout_s=10)


def rows(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.standard_normal((n, 4)).astype(np.float32)


def test_concurrent_requests_share_batches_and_get_their_own_rows(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=32, max_delay_us=2000, max_queue=256)
    inputs = [rows(rng, int(n)) for n in rng.integers(1, 4, size=120)]
    with ThreadPoolExecutor(max_workers=40) as pool:
        results = list(pool.map(batcher.run, inputs))
    for x, result in zip(inputs, results, strict=True):
        np.testing.assert_allclose(result.outputs, oracle(x), rtol=1e-6)  # oracle: each request alone
        assert result.outputs.shape == (len(x), 3)
    assert len(forward.sizes) < len(inputs)  # batching happened
    assert max(forward.sizes) <= 32
    assert sum(forward.sizes) == sum(len(x) for x in inputs)  # every image computed exactly once
    stats = batcher.stats.snapshot()
    assert stats.success.count == len(inputs) and stats.fail.count == 0
    assert stats.inference_count == sum(len(x) for x in inputs)
    assert stats.execution_count == len(forward.sizes)
    assert sum(b.count for b in stats.batch_stats.values()) == len(forward.sizes)
    assert {size: b.count for size, b in stats.batch_stats.items()} == {
        size: forward.sizes.count(size) for size in set(forward.sizes)
    }


def test_requests_queued_behind_a_running_batch_run_together(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=8, max_delay_us=0, max_queue=16)
    forward.hold()
    first = batcher.submit(rows(rng, 1))
    assert forward.entered.wait(10)  # the worker is inside forward with the first request
    waiting = [batcher.submit(rows(rng, 2)) for _ in range(3)]
    forward.gate.set()
    for future in [first, *waiting]:
        future.result(timeout=10)
    assert forward.sizes == [1, 6]  # the three queued requests formed one batch
    assert {f.result().batch_size for f in waiting} == {6}


def test_a_batch_never_exceeds_max_batch_and_keeps_arrival_order(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=5, max_delay_us=0, max_queue=16)
    forward.hold()
    first = batcher.submit(rows(rng, 1))
    assert forward.entered.wait(10)
    sizes = [3, 3, 2, 4, 1]
    inputs = [rows(rng, n) for n in sizes]
    futures = [batcher.submit(x) for x in inputs]
    forward.gate.set()
    for x, future in zip(inputs, futures, strict=True):
        np.testing.assert_allclose(future.result(timeout=10).outputs, oracle(x), rtol=1e-6)
    first.result(timeout=10)
    assert forward.sizes == [1, 3, 5, 5]  # FIFO: [3], [3, 2], [4, 1]


def test_max_delay_waits_for_company_counted_from_arrival(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=64, max_delay_us=300_000, max_queue=16)
    futures = [batcher.submit(rows(rng, 1)) for _ in range(3)]  # all well within the 300 ms window
    results = [f.result(timeout=10) for f in futures]
    assert forward.sizes == [3]
    assert results[0].queue_ns >= 300_000_000  # the oldest waited the whole delay for company
    # a request that already waited longer than the delay when it reached the batcher leaves at once
    old = time.perf_counter_ns() - 10**9
    result = batcher.run(rows(rng, 1), arrival_ns=old)
    assert forward.sizes == [3, 1]
    assert result.queue_ns >= 10**9


def test_full_batch_does_not_wait_for_the_delay(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=4, max_delay_us=60_000_000, max_queue=16)  # a minute
    started = time.monotonic()
    futures = [batcher.submit(rows(rng, 2)) for _ in range(2)]
    for future in futures:
        future.result(timeout=30)
    assert time.monotonic() - started < 30  # released by size, not by the one-minute delay
    assert forward.sizes == [4]


def test_full_queue_refuses_at_once(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=2, max_delay_us=0, max_queue=3)
    forward.hold()
    running = batcher.submit(rows(rng, 2))
    assert forward.entered.wait(10)
    queued = [batcher.submit(rows(rng, 1)) for _ in range(3)]
    assert batcher.queue_depth() == 3
    with pytest.raises(QueueFullError, match=r"queue is full \(3 requests waiting\)"):
        batcher.submit(rows(rng, 1))
    forward.gate.set()
    for future in [running, *queued]:
        future.result(timeout=10)
    batcher.run(rows(rng, 1))  # room again
    stats = batcher.stats.snapshot()
    assert stats.fail.count == 1 and stats.success.count == 5


def test_expired_work_is_skipped_and_never_computed(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=8, max_delay_us=0, max_queue=16)
    forward.hold()
    running = batcher.submit(rows(rng, 1))
    assert forward.entered.wait(10)
    doomed = rows(rng, 1) + 1000.0  # recognisable if it were computed
    expired = batcher.submit(doomed, deadline_ns=time.perf_counter_ns() + 20_000_000)  # 20 ms
    alive_x = rows(rng, 1)
    alive = batcher.submit(alive_x, deadline_ns=time.perf_counter_ns() + 60 * 10**9)
    time.sleep(0.05)  # the first deadline passes while the slow forward runs
    forward.gate.set()
    with pytest.raises(DeadlineExpiredError, match="not computed"):
        expired.result(timeout=10)
    np.testing.assert_allclose(alive.result(timeout=10).outputs, oracle(alive_x), rtol=1e-6)
    running.result(timeout=10)
    assert all(not np.any(batch >= 500) for batch in forward.computed)
    assert forward.sizes == [1, 1]
    assert batcher.stats.snapshot().fail.count == 1


def test_queue_time_counts_the_wait_behind_a_slow_forward(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=1, max_delay_us=0, max_queue=16)
    forward.hold()
    batcher.submit(rows(rng, 1))
    assert forward.entered.wait(10)
    arrival_ns = time.perf_counter_ns()
    waiting = batcher.submit(rows(rng, 1), arrival_ns=arrival_ns)
    time.sleep(0.1)  # the running forward needs >= 100 ms more
    forward.gate.set()
    result = waiting.result(timeout=10)
    assert result.queue_ns >= 100_000_000
    stats = batcher.stats.snapshot()
    assert stats.queue.ns >= 100_000_000
    assert stats.success.ns >= stats.queue.ns  # arrival -> completion includes the queue


def test_compute_time_is_the_forward(make: Callable[..., DynamicBatcher], rng: np.random.Generator) -> None:
    def slow(x: np.ndarray) -> np.ndarray:
        time.sleep(0.05)
        return oracle(x)

    batcher = DynamicBatcher(slow, max_batch=4)
    try:
        result = batcher.run(rows(rng, 2))
    finally:
        batcher.close()
    assert result.compute_ns >= 50_000_000
    assert batcher.stats.snapshot().compute_infer.ns >= 50_000_000


def test_forward_errors_reach_every_caller_of_the_batch_and_the_worker_survives(rng: np.random.Generator) -> None:
    calls = []

    def flaky(x: np.ndarray) -> np.ndarray:
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return oracle(x)

    batcher = DynamicBatcher(flaky, max_batch=4)
    try:
        with pytest.raises(RuntimeError, match="model exploded"):
            batcher.run(rows(rng, 1))
        x = rows(rng, 3)
        np.testing.assert_allclose(batcher.run(x).outputs, oracle(x), rtol=1e-6)
    finally:
        batcher.close()
    assert batcher.stats.snapshot().fail.count == 1


def test_close_drains_queued_work_then_refuses(
    make: Callable[..., DynamicBatcher], forward: GatedForward, rng: np.random.Generator
) -> None:
    batcher = make(max_batch=2, max_delay_us=10_000_000, max_queue=16)  # a 10 s delay that close cuts short
    forward.hold()
    inputs = [rows(rng, 1) for _ in range(5)]
    futures: list[Future[BatchedResult]] = [batcher.submit(x) for x in inputs]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    time.sleep(0.05)
    assert closer.is_alive()  # close waits for the queued work
    with pytest.raises(BatcherClosedError, match="shutting down"):
        batcher.submit(rows(rng, 1))
    forward.gate.set()
    closer.join(timeout=10)
    assert not closer.is_alive()
    for x, future in zip(inputs, futures, strict=True):
        np.testing.assert_allclose(future.result(timeout=0).outputs, oracle(x), rtol=1e-6)
    assert sum(forward.sizes) == 5
    assert batcher.closed


def test_several_workers_compute_batches_at_the_same_time(rng: np.random.Generator) -> None:
    inside = threading.Semaphore(0)
    release = threading.Event()

    def blocking(x: np.ndarray) -> np.ndarray:
        inside.release()
        assert release.wait(timeout=30)
        return oracle(x)

    batcher = DynamicBatcher(blocking, max_batch=1, workers=2)
    try:
        futures = [batcher.submit(rows(rng, 1)) for _ in range(2)]
        assert inside.acquire(timeout=10) and inside.acquire(timeout=10)  # both forwards entered
        release.set()
        for future in futures:
            future.result(timeout=10)
    finally:
        release.set()
        batcher.close()


def test_oversized_or_empty_requests_are_refused(make: Callable[..., DynamicBatcher], rng: np.random.Generator) -> None:
    batcher = make(max_batch=4)
    for n in (0, 5):
        with pytest.raises(TensorError, match=f"1 to 4 images; got {n}"):
            batcher.submit(rows(rng, n))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch": 0}, "max_batch must be an int >= 1; got 0"),
        ({"max_delay_us": -1}, "max_delay_us must be an int >= 0; got -1"),
        ({"max_queue": 0}, "max_queue must be an int >= 1; got 0"),
        ({"workers": 0}, "workers must be an int >= 1; got 0"),
        ({"max_batch": 2.5}, "max_batch must be an int >= 1; got 2.5"),
    ],
)
def test_settings_are_validated(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DynamicBatcher(oracle, **kwargs)


def test_statistics_snapshot_is_a_copy() -> None:
    recorder = StatsRecorder("m", "1")
    recorder.record_batch(queue_ns=[5, 7], total_ns=[20, 30], images=3, input_ns=1, infer_ns=10, output_ns=2)
    before = recorder.snapshot()
    recorder.record_batch(queue_ns=[1], total_ns=[4], images=3, input_ns=1, infer_ns=10, output_ns=2)
    recorder.record_failure(total_ns=9)
    assert before.success.count == 2 and before.success.ns == 50
    assert before.queue.ns == 12
    assert before.compute_infer.count == 2 and before.compute_infer.ns == 20  # each request is charged the batch
    assert before.batch_stats == {3: BatchStats(1, 10)}
    after = recorder.snapshot()
    assert after.batch_stats == {3: BatchStats(2, 20)}
    assert after.inference_count == 6 and after.execution_count == 2
    assert after.fail.count == 1 and after.fail.ns == 9
    assert after.success_count == 3 and after.queue_ns == 13  # flat views for exporters
    assert after.last_inference_ms > 0
