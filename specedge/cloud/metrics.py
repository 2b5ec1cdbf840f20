"""Prometheus metrics for the cloud server: per-model statistics and per-RPC request counts.

Two sources, one registry per server (so several servers in one process never collide):

- :class:`ModelStatsCollector` reads each served model's ``statistics()`` (the same
  ``ModelStats`` that ModelStatistics answers, :mod:`specedge.cloud.statistics`) at scrape time,
  so the server keeps no second set of counters: successes, failures, inference and execution
  counts, cumulative queue and compute time, and executions per batch size.
- :class:`RpcMetricsInterceptor` counts every RPC by method and the status code it ended with
  (``specedge_rpc_requests_total``; failures are the codes other than OK).

:func:`start_metrics_server` serves the registry as Prometheus text on ``http://HOST:PORT/metrics``.
Names follow Triton's ``nv_inference_*`` metrics with a ``specedge_`` prefix; durations are in
microseconds as in Triton.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import grpc
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "MetricsEndpoint",
    "ModelStatsCollector",
    "RpcMetricsInterceptor",
    "StatisticsSource",
    "build_registry",
    "start_metrics_server",
]

_log = logging.getLogger(__name__)


class StatisticsSource(Protocol):
    """What the collector needs of a served model."""

    model_version: str

    def statistics(self) -> Any:
        """A ``ModelStats`` (statistics.py); read by attribute name, missing fields are skipped."""


# ModelStats Duration field -> (metric name stem, what it measures); each gives a count and microseconds.
_DURATIONS: tuple[tuple[str, str, str], ...] = (
    ("success", "specedge_inference_request_success", "requests answered (time: arrival to answer)"),
    ("fail", "specedge_inference_request_failure", "requests that failed (time: arrival to failure)"),
    ("queue", "specedge_inference_queue", "successful requests' time in the queue"),
    ("compute_input", "specedge_inference_compute_input", "successful requests' input preparation time"),
    ("compute_infer", "specedge_inference_compute_infer", "successful requests' forward-pass time"),
    ("compute_output", "specedge_inference_compute_output", "successful requests' output preparation time"),
)
_COUNTS: tuple[tuple[str, str, str], ...] = (
    ("inference_count", "specedge_inference_count", "Images inferred (a request of batch N counts N)"),
    ("execution_count", "specedge_inference_exec_count", "Model executions (batched forward passes)"),
)


class ModelStatsCollector(Collector):
    """Prometheus metrics read from each model's ``statistics()`` (a ``ModelStats``) at scrape time."""

    def __init__(self, models: Mapping[str, StatisticsSource]) -> None:
        self._models = dict(models)

    def collect(self) -> Iterator[Metric]:
        """Counters per ModelStats field labelled by model and version; batch executions by size."""
        labels = ["model", "version"]
        counts = {attr: CounterMetricFamily(stem, doc, labels=labels) for attr, stem, doc in _COUNTS}
        durations = {
            attr: (
                CounterMetricFamily(stem, f"Inference {doc}: count", labels=labels),
                CounterMetricFamily(f"{stem}_duration_us", f"Inference {doc}: cumulative microseconds", labels=labels),
            )
            for attr, stem, doc in _DURATIONS
        }
        batches = CounterMetricFamily(
            "specedge_inference_batch_exec", "Model executions per batch size (images)", labels=[*labels, "batch_size"]
        )
        batch_us = CounterMetricFamily(
            "specedge_inference_batch_compute_duration_us",
            "Cumulative forward-pass microseconds per batch size",
            labels=[*labels, "batch_size"],
        )
        last = GaugeMetricFamily(
            "specedge_inference_last_timestamp_ms",
            "Unix ms of the last answered request (0: none)",
            labels=labels,
        )
        for name, model in self._models.items():
            if not hasattr(model, "statistics"):
                continue  # a model without statistics has nothing to report
            try:
                stats = model.statistics()
            except Exception:  # a failing model must not break the scrape of the others
                _log.exception("statistics() of model %r failed during a metrics scrape", name)
                continue
            values = [name, str(model.model_version)]
            for attr, family in counts.items():
                family.add_metric(values, float(getattr(stats, attr, 0)))
            for attr, (count_family, us_family) in durations.items():
                duration = getattr(stats, attr, None)
                if duration is not None:
                    count_family.add_metric(values, float(duration.count))
                    us_family.add_metric(values, duration.ns / 1000)
            for batch_size, entry in sorted((getattr(stats, "batch_stats", None) or {}).items()):
                batches.add_metric([*values, str(batch_size)], float(entry.count))
                batch_us.add_metric([*values, str(batch_size)], entry.compute_ns / 1000)
            last.add_metric(values, float(getattr(stats, "last_inference_ms", 0)))
        yield from counts.values()
        for count_family, us_family in durations.values():
            yield count_family
            yield us_family
        yield batches
        yield batch_us
        yield last


class RpcMetricsInterceptor(grpc.ServerInterceptor, Collector):  # type: ignore[misc]  # grpc is untyped
    """Counts RPCs by method and final status code; a Prometheus collector as well.

    Put it first among the interceptors so refusals by later ones (UNAUTHENTICATED) count too.
    """

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def count(self, method: str, code: grpc.StatusCode) -> None:
        """Add one call of ``method`` that ended with ``code``."""
        key = (method, code.name)
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + 1

    def counts(self) -> dict[tuple[str, str], int]:
        """A copy: ``(method, code name) -> calls``."""
        with self._lock:
            return dict(self._counts)

    def collect(self) -> Iterator[Metric]:
        """``specedge_rpc_requests_total`` and ``specedge_rpc_failures_total`` by method (and code)."""
        requests = CounterMetricFamily(
            "specedge_rpc_requests", "gRPC calls by method and status", labels=["method", "code"]
        )
        failures = CounterMetricFamily("specedge_rpc_failures", "gRPC calls that did not end OK", labels=["method"])
        failed: dict[str, int] = {}
        for (method, code), calls in sorted(self.counts().items()):
            requests.add_metric([method, code], float(calls))
            if code != "OK":
                failed[method] = failed.get(method, 0) + calls
        for method, calls in sorted(failed.items()):
            failures.add_metric([method], float(calls))
        yield requests
        yield failures

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        """Wrap the method's behaviour so its outcome is counted."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method or "?"
        if handler.unary_unary is not None:
            return handler._replace(unary_unary=self._wrap_unary(handler.unary_unary, method))
        if handler.stream_unary is not None:
            return handler._replace(stream_unary=self._wrap_unary(handler.stream_unary, method))
        if handler.unary_stream is not None:
            return handler._replace(unary_stream=self._wrap_stream(handler.unary_stream, method))
        return handler._replace(stream_stream=self._wrap_stream(handler.stream_stream, method))

    def _wrap_unary(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        def counted(request: Any, context: grpc.ServicerContext) -> Any:
            try:
                response = behaviour(request, context)
            except BaseException:
                self.count(method, _final_code(context, failed=True))
                raise
            self.count(method, _final_code(context, failed=False))
            return response

        return counted

    def _wrap_stream(self, behaviour: Callable[..., Any], method: str) -> Callable[..., Any]:
        def counted(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            try:
                yield from behaviour(request, context)
            except BaseException:
                self.count(method, _final_code(context, failed=True))
                raise
            self.count(method, _final_code(context, failed=False))

        return counted


def _final_code(context: grpc.ServicerContext, *, failed: bool) -> grpc.StatusCode:
    """The code the handler set (``abort``/``set_code``), else OK or (after an exception) UNKNOWN."""
    code = context.code() if hasattr(context, "code") else None
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if failed else grpc.StatusCode.OK


def build_registry(models: Mapping[str, StatisticsSource], rpc_metrics: RpcMetricsInterceptor) -> CollectorRegistry:
    """A fresh registry holding the model statistics and the RPC counts."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(ModelStatsCollector(models))
    registry.register(rpc_metrics)
    return registry


class MetricsEndpoint:
    """A running ``/metrics`` HTTP server; :meth:`close` stops it."""

    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self._httpd = httpd
        self._thread = thread
        self.port: int = int(httpd.server_address[1])

    def close(self) -> None:
        """Stop serving and release the port."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(registry: CollectorRegistry, *, host: str, port: int) -> MetricsEndpoint:
    """Serve ``registry`` as Prometheus text on ``http://host:port/metrics`` (port 0 picks a free one)."""
    httpd, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsEndpoint(httpd, thread)
