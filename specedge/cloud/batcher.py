"""Dynamic batching: requests wait in a bounded queue and run together in one forward pass.

The scheduler follows Triton's dynamic batcher. A request (an image batch, its arrival time and
an optional deadline, all on the ``time.perf_counter_ns()`` clock) joins a FIFO queue of at most
``max_queue`` requests; a full queue refuses at once with :class:`QueueFullError`
(RESOURCE_EXHAUSTED), so overload shows up as a fast, explicit refusal instead of unbounded
latency and memory. A worker takes the oldest request and waits until ``max_batch`` images are
queued or ``max_delay_us`` has passed *since that request arrived* (a request that already
waited that long leaves at once), then takes requests in order while their images fit in
``max_batch``. Requests whose deadline has passed are dropped there with
:class:`DeadlineExpiredError`: expired work is never computed. The batch is concatenated, run
through ``forward`` once and split back to the callers.

Times are honest under load: ``queue_ns`` runs from the request's arrival (taken by the caller,
ideally the first thing in the RPC handler) to the start of its batch, so time spent waiting
behind other batches is queue time; ``compute_ns`` is the batch's forward pass.

With several ``workers`` one forms the next batch while the others compute; on a machine with
few cores one worker (with torch's intra-op threads) is usually fastest. :meth:`DynamicBatcher.close`
refuses new requests, finishes the queued ones, then stops the workers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np

from specedge.cloud.statistics import StatsRecorder
from specedge.errors import ConfigError, SpecEdgeError, TensorError

__all__ = [
    "BatchedResult",
    "BatcherClosedError",
    "DeadlineExpiredError",
    "DynamicBatcher",
    "QueueFullError",
]


class QueueFullError(SpecEdgeError):
    """The model's queue holds ``max_queue`` requests already; retry later (RESOURCE_EXHAUSTED)."""


class DeadlineExpiredError(SpecEdgeError):
    """The request's deadline passed while it waited; it was not computed (DEADLINE_EXCEEDED)."""


class BatcherClosedError(SpecEdgeError):
    """The batcher is closing or closed and takes no new requests."""


@dataclass(frozen=True)
class BatchedResult:
    """One request's outputs and where its time went."""

    outputs: np.ndarray  # this request's rows of the batch output
    queue_ns: int  # arrival -> start of its batch
    compute_ns: int  # the batch's forward pass
    batch_size: int  # images in the batch it ran in


@dataclass(eq=False)
class _Request:
    images: np.ndarray
    arrival_ns: int
    deadline_ns: int | None
    future: Future[BatchedResult]


class DynamicBatcher:
    """Batch concurrent requests for ``forward`` (a batch of inputs -> a batch of outputs, row for row).

    Args:
        forward: runs one batch; called from the worker threads only.
        max_batch: most images in one forward pass; also the most one request may carry.
        max_delay_us: how long the oldest request may wait for more to join its batch,
            counted from its arrival; 0 batches only what is already queued.
        max_queue: most requests waiting (not yet in a batch); more are refused.
        workers: threads running ``forward``.
        stats: where outcomes are counted; a private recorder if omitted.
        name: the model name, for messages and thread names.
    """

    def __init__(
        self,
        forward: Callable[[np.ndarray], np.ndarray],
        *,
        max_batch: int = 64,
        max_delay_us: int = 0,
        max_queue: int = 256,
        workers: int = 1,
        stats: StatsRecorder | None = None,
        name: str = "model",
    ) -> None:
        for label, value, low in (
            ("max_batch", max_batch, 1),
            ("max_delay_us", max_delay_us, 0),
            ("max_queue", max_queue, 1),
            ("workers", workers, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ConfigError(f"{label} must be an int >= {low}; got {value!r}")
        self.forward = forward
        self.max_batch = max_batch
        self.max_delay_us = max_delay_us
        self.max_queue = max_queue
        self.workers = workers
        self.name = name
        self.stats = stats if stats is not None else StatsRecorder(name, "")
        self._queue: deque[_Request] = deque()
        self._queued_images = 0
        self._closed = False
        self._cond = threading.Condition()  # guards the queue; signalled on submit and close
        self._forming = threading.Lock()  # one worker forms a batch at a time, the others compute
        self._threads = [
            threading.Thread(target=self._work, name=f"batcher-{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    # --- callers -------------------------------------------------------------------------------

    def submit(
        self, images: np.ndarray, *, arrival_ns: int | None = None, deadline_ns: int | None = None
    ) -> Future[BatchedResult]:
        """Queue ``images`` (first axis = batch); the future holds its :class:`BatchedResult`.

        Raises :class:`QueueFullError` at once when ``max_queue`` requests are waiting, and
        :class:`BatcherClosedError` after :meth:`close`.
        """
        if arrival_ns is None:
            arrival_ns = time.perf_counter_ns()
        count = len(images)
        if not 1 <= count <= self.max_batch:
            raise TensorError(f"a request must carry 1 to {self.max_batch} images; got {count}")
        request = _Request(images, arrival_ns, deadline_ns, Future())
        with self._cond:
            if self._closed:
                raise BatcherClosedError(f"model {self.name!r} is shutting down; it takes no new requests")
            if len(self._queue) >= self.max_queue:
                full = True
            else:
                full = False
                self._queue.append(request)
                self._queued_images += count
                self._cond.notify()
        if full:
            self.stats.record_failure(total_ns=time.perf_counter_ns() - arrival_ns)
            raise QueueFullError(
                f"model {self.name!r} is overloaded: its queue is full ({self.max_queue} requests waiting); retry later"
            )
        return request.future

    def run(
        self, images: np.ndarray, *, arrival_ns: int | None = None, deadline_ns: int | None = None
    ) -> BatchedResult:
        """:meth:`submit` and wait for the result (errors of ``forward`` are raised here)."""
        return self.submit(images, arrival_ns=arrival_ns, deadline_ns=deadline_ns).result()

    def queue_depth(self) -> int:
        """Requests waiting for a batch now."""
        with self._cond:
            return len(self._queue)

    def close(self, timeout_s: float | None = None) -> None:
        """Refuse new requests, run the queued ones, stop the workers (waiting up to ``timeout_s`` each)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout_s)

    @property
    def closed(self) -> bool:
        """:meth:`close` was called."""
        return self._closed

    # --- workers -------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._execute(batch)

    def _next_batch(self) -> list[_Request] | None:
        """The next batch to run, or None once closed and drained; blocks without spinning."""
        delay_ns = self.max_delay_us * 1000
        with self._forming, self._cond:
            while True:
                while not self._queue:
                    if self._closed:
                        return None
                    self._cond.wait()
                flush_ns = self._queue[0].arrival_ns + delay_ns
                while not self._closed and self._queued_images < self.max_batch:
                    remaining_ns = flush_ns - time.perf_counter_ns()
                    if remaining_ns <= 0:
                        break
                    self._cond.wait(remaining_ns / 1e9)
                batch, expired = self._take(time.perf_counter_ns())
                for request in expired:  # rare; the futures' waiters take no lock of ours
                    self._expire(request)
                if batch:
                    return batch

    def _take(self, now_ns: int) -> tuple[list[_Request], list[_Request]]:
        """Pop requests in order while their images fit; expired ones are popped apart. Holds the lock."""
        batch: list[_Request] = []
        expired: list[_Request] = []
        images = 0
        while self._queue:
            request = self._queue[0]
            if request.deadline_ns is not None and request.deadline_ns <= now_ns:
                expired.append(self._pop())
                continue
            if images + len(request.images) > self.max_batch:
                break
            images += len(request.images)
            batch.append(self._pop())
        return batch, expired

    def _pop(self) -> _Request:
        request = self._queue.popleft()
        self._queued_images -= len(request.images)
        return request

    def _expire(self, request: _Request) -> None:
        now_ns = time.perf_counter_ns()
        assert request.deadline_ns is not None
        late_us = (now_ns - request.deadline_ns) // 1000
        self.stats.record_failure(total_ns=now_ns - request.arrival_ns)
        request.future.set_exception(
            DeadlineExpiredError(
                f"the request's deadline passed {late_us} us before its batch formed, "
                f"after {(now_ns - request.arrival_ns) // 1000} us in the queue; not computed"
            )
        )

    def _execute(self, batch: list[_Request]) -> None:
        start_ns = time.perf_counter_ns()
        try:
            inputs = batch[0].images if len(batch) == 1 else np.concatenate([r.images for r in batch])
            input_ns = time.perf_counter_ns()
            outputs = self.forward(inputs)
            infer_ns = time.perf_counter_ns()
            if len(outputs) != len(inputs):
                raise SpecEdgeError(f"forward returned {len(outputs)} rows for {len(inputs)} inputs")
        except BaseException as exc:  # every caller hears of the failure; the worker lives on
            now_ns = time.perf_counter_ns()
            for request in batch:
                self.stats.record_failure(total_ns=now_ns - request.arrival_ns)
                request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        offsets = np.cumsum([0] + [len(r.images) for r in batch])
        results = [
            BatchedResult(
                outputs=outputs[offsets[i] : offsets[i + 1]],
                queue_ns=max(start_ns - request.arrival_ns, 0),
                compute_ns=infer_ns - input_ns,
                batch_size=len(inputs),
            )
            for i, request in enumerate(batch)
        ]
        done_ns = time.perf_counter_ns()
        self.stats.record_batch(
            queue_ns=[r.queue_ns for r in results],
            total_ns=[done_ns - request.arrival_ns for request in batch],
            images=len(inputs),
            input_ns=input_ns - start_ns,
            infer_ns=infer_ns - input_ns,
            output_ns=done_ns - infer_ns,
        )
        for request, result in zip(batch, results, strict=True):
            request.future.set_result(result)
