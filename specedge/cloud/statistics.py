"""Per-model inference statistics, shaped like Triton's ``ModelStatistics``.

:class:`StatsRecorder` is fed by the :class:`~specedge.cloud.batcher.DynamicBatcher` (one call per
request outcome and one per executed batch) and read as an immutable :class:`ModelStats`
snapshot by ModelStatistics and the Prometheus endpoint, so both report the same counters.

Field meanings follow Triton's ``inference_statistics`` documentation:

- ``success``: requests answered; ``ns`` is their total time from arrival to completion.
- ``fail``: requests refused or failed after arrival (queue full, deadline expired, model
  error); ``ns`` is the time from arrival to the failure.
- ``queue``: per successful request, arrival to the start of its batch.
- ``compute_input`` / ``compute_infer`` / ``compute_output``: per successful request, the time its
  batch spent assembling inputs, in the forward pass, and splitting outputs (every request in a
  batch is charged the whole batch's time, as in Triton).
- ``inference_count``: images inferred (a request of batch 8 counts 8); ``execution_count``: model
  executions (one per batch); ``batch_stats``: per executed batch size (images), the number of
  executions and their cumulative forward time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["BatchStats", "Duration", "ModelStats", "StatsRecorder"]


@dataclass(frozen=True, slots=True)
class Duration:
    """A count and a cumulative duration, Triton's ``StatisticDuration``."""

    count: int = 0
    ns: int = 0


@dataclass(frozen=True, slots=True)
class BatchStats:
    """Executions of one batch size and their cumulative forward time."""

    count: int = 0
    compute_ns: int = 0


@dataclass(frozen=True)
class ModelStats:
    """An immutable snapshot of one model's counters since the server started.

    The ``*_count`` / ``*_ns`` properties flatten the durations for exporters (Prometheus).
    """

    name: str
    version: str
    last_inference_ms: int = 0  # Unix time in ms of the last answered request; 0 if none
    inference_count: int = 0
    execution_count: int = 0
    success: Duration = Duration()
    fail: Duration = Duration()
    queue: Duration = Duration()
    compute_input: Duration = Duration()
    compute_infer: Duration = Duration()
    compute_output: Duration = Duration()
    batch_stats: dict[int, BatchStats] = field(default_factory=dict)  # batch size (images) -> executions

    @property
    def success_count(self) -> int:
        """Requests counted in ``success``."""
        return self.success.count

    @property
    def success_ns(self) -> int:
        """Cumulative ns of ``success``."""
        return self.success.ns

    @property
    def fail_count(self) -> int:
        """Requests counted in ``fail``."""
        return self.fail.count

    @property
    def fail_ns(self) -> int:
        """Cumulative ns of ``fail``."""
        return self.fail.ns

    @property
    def queue_ns(self) -> int:
        """Cumulative ns of ``queue``."""
        return self.queue.ns

    @property
    def compute_input_ns(self) -> int:
        """Cumulative ns of ``compute_input``."""
        return self.compute_input.ns

    @property
    def compute_infer_ns(self) -> int:
        """Cumulative ns of ``compute_infer``."""
        return self.compute_infer.ns

    @property
    def compute_output_ns(self) -> int:
        """Cumulative ns of ``compute_output``."""
        return self.compute_output.ns


class StatsRecorder:
    """Thread-safe accumulator of one model's statistics."""

    def __init__(self, name: str, version: str) -> None:
        self.name = name
        self.version = version
        self._lock = threading.Lock()
        self._last_inference_ms = 0
        self._inference_count = 0
        self._execution_count = 0
        # name -> [count, ns]; names are ModelStats' Duration fields
        self._durations = {key: [0, 0] for key in _DURATIONS}
        self._batch_stats: dict[int, list[int]] = {}

    def record_batch(
        self,
        *,
        queue_ns: Sequence[int],
        total_ns: Sequence[int],
        images: int,
        input_ns: int,
        infer_ns: int,
        output_ns: int,
    ) -> None:
        """One executed batch: its requests' queue and total times, its image count and phase times."""
        requests = len(queue_ns)
        now_ms = time.time_ns() // 1_000_000
        with self._lock:
            self._last_inference_ms = now_ms
            self._inference_count += images
            self._execution_count += 1
            for key, ns in (
                ("success", sum(total_ns)),
                ("queue", sum(queue_ns)),
                ("compute_input", input_ns * requests),
                ("compute_infer", infer_ns * requests),
                ("compute_output", output_ns * requests),
            ):
                entry = self._durations[key]
                entry[0] += requests
                entry[1] += ns
            batch = self._batch_stats.setdefault(images, [0, 0])
            batch[0] += 1
            batch[1] += infer_ns

    def record_failure(self, *, total_ns: int) -> None:
        """One request that failed ``total_ns`` after its arrival."""
        with self._lock:
            entry = self._durations["fail"]
            entry[0] += 1
            entry[1] += max(total_ns, 0)

    def snapshot(self) -> ModelStats:
        """The counters now (a copy: later requests do not change it)."""
        with self._lock:
            return ModelStats(
                name=self.name,
                version=self.version,
                last_inference_ms=self._last_inference_ms,
                inference_count=self._inference_count,
                execution_count=self._execution_count,
                batch_stats={size: BatchStats(c, ns) for size, (c, ns) in sorted(self._batch_stats.items())},
                **{key: Duration(c, ns) for key, (c, ns) in self._durations.items()},
            )


_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")
