"""Build :class:`~specedge.simulator.system.Workload` s from real models, outputs and edge records.

Two sources, both real:

* :func:`workload_from_records`: the per-input records of a run through the edge runtime and the
  real gRPC server (the demo): which inputs were escalated or audited, the serialised request and
  response sizes the client measured, the server's reported queue and compute time, and when
  each input started (recorded arrivals);
* :func:`workload_from_outputs`: stored model outputs plus a fitted detector (benchmarks and
  ``specedge simulate``): the detector's decisions per input, and message sizes built from the
  real protobuf messages.

Compute on the device comes from :func:`local_cost`: the analytic roofline on a named device
profile (time and energy from the same profile), or time measured on this host priced with the
host's own profile. This module imports torch (profiling, measuring); :mod:`.system` does not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from specedge.detector import MisspeculationDetector, ModelOutputs
from specedge.edge.records import InferenceRecord, Route
from specedge.errors import ConfigError
from specedge.models import ImageClassifier, profile_classifier
from specedge.simulator.device import DEVICE_PROFILES, ComputeDtype, get_device_profile, model_cost
from specedge.simulator.measure import measure_classifier_s
from specedge.simulator.system import LocalCost, Workload
from specedge.simulator.wire import compressed_request_bytes, infer_message_sizes

__all__ = [
    "HOST_MEASURED",
    "StoredWidths",
    "local_cost",
    "speculative_cost",
    "workload_from_outputs",
    "workload_from_records",
]


def _compressed(images: np.ndarray, raw_bytes: np.ndarray) -> np.ndarray:
    """zstd-compressed request sizes, where compressing helps: a client sends the smaller form.

    Tiny inputs (8x8 digits) grow by zstd's frame overhead; camera-sized ones shrink.
    """
    out: np.ndarray = np.minimum(compressed_request_bytes(images).astype(np.float64), raw_bytes)
    return out


#: Device name for "time measured on this machine", priced with the host-x86 profile's power.
HOST_MEASURED = "host-measured"


@dataclass(frozen=True)
class StoredWidths:
    """The widths a compressed variant stores each profiled row's weights and activations at.

    SIEVE's custom floats move fewer bytes with fp32 arithmetic; int8 also computes in int8
    (thesis 4.4.2). One entry per profiler row, as the variant's trade-off record lists them.
    """

    weight_bits: tuple[int, ...]
    activation_bits: tuple[int, ...]
    compute: ComputeDtype = "fp32"  # "int8" for an int8 variant

    @classmethod
    def from_tradeoff(cls, record: Mapping[str, Any]) -> StoredWidths:
        """From a manifest's ``tradeoff`` section (``specedge.compression.tradeoff``)."""
        try:
            return cls(
                weight_bits=tuple(int(b) for b in record["weight_bits"]),
                activation_bits=tuple(int(b) for b in record["activation_bits"]),
                compute="int8" if record["encoding"] == "int8" else "fp32",
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed trade-off record: {exc!r}") from exc


def local_cost(
    classifier: ImageClassifier,
    device: str,
    *,
    widths: StoredWidths | None = None,
    images: np.ndarray | None = None,
    measured_s: float | None = None,
) -> LocalCost:
    """Per-input compute of ``classifier`` on ``device``.

    ``device`` is a name from :data:`~specedge.simulator.device.DEVICE_PROFILES` (analytic roofline,
    elementwise layers fused as a deployment runtime does, tensors at their stored ``widths``) or
    :data:`HOST_MEASURED`: the median batch-1 time on this machine (``measured_s`` if already
    measured, else timed on ``images``), with energy = that time x the host-x86 profile's active
    power above idle.
    """
    if device == HOST_MEASURED:
        host = get_device_profile("host-x86")
        if measured_s is None:
            if images is None:
                raise ConfigError("measuring on this host needs images (or a measured time)")
            measured_s = measure_classifier_s(classifier, images[: min(len(images), 50)])
        power_mw = host.active_power_mw - host.idle_power_mw
        return LocalCost(classifier.spec.label, measured_s, measured_s * power_mw, "host-x86", "measured on this host")
    if device not in DEVICE_PROFILES:
        valid = ", ".join([*DEVICE_PROFILES, HOST_MEASURED])
        raise ConfigError(f"unknown device {device!r}; expected one of: {valid}")
    profile, device_profile = profile_classifier(classifier), get_device_profile(device)
    cost = (
        model_cost(profile, device_profile, fuse_elementwise=True)
        if widths is None
        else model_cost(
            profile,
            device_profile,
            weight_bits=widths.weight_bits,
            activation_bits=widths.activation_bits,
            compute=widths.compute,
            fuse_elementwise=True,
        )
    )
    return LocalCost(classifier.spec.label, cost.time_s, cost.energy_mj, device, "analytic roofline")


def speculative_cost(
    models: ImageClassifier | Sequence[ImageClassifier],
    device: str,
    *,
    widths: StoredWidths | None = None,
    images: np.ndarray | None = None,
) -> LocalCost:
    """The speculative side's compute: one model, or a minion pair whose two runs add up (thesis 5.2)."""
    if isinstance(models, ImageClassifier):
        return local_cost(models, device, widths=widths, images=images)
    costs = [local_cost(model, device, images=images) for model in models]
    return LocalCost(
        " + ".join(c.model for c in costs),
        sum(c.latency_s for c in costs),
        sum(c.energy_mj for c in costs),
        costs[0].device,
        costs[0].method,
    )


def workload_from_records(
    name: str,
    *,
    speculative: Sequence[InferenceRecord],
    cloud_only: Sequence[InferenceRecord],
    mobile_only: Sequence[InferenceRecord],
    labels: np.ndarray | None,
    images: np.ndarray,
    device: str,
    speculative_model: ImageClassifier | Sequence[ImageClassifier],
    master_model: ImageClassifier,
    escalation_probability: float,
    audit_share: float,
    speculative_widths: StoredWidths | None = None,
) -> Workload:
    """A workload from three runs over the same inputs (as the demo makes them).

    The SpecEdge run says which inputs were escalated or audited and when each started; the
    cloud-only run, which sent every input, gives each input's real request and response sizes
    and the server's time; the mobile-only run gives the master's answer for every input. With
    ``device`` = :data:`HOST_MEASURED` the local times are those the records measured; on an
    analytic device ``speculative_widths`` prices a compressed speculative model's storage.
    """
    n = len(speculative)
    if not (len(cloud_only) == len(mobile_only) == n == len(images)):
        raise ConfigError(f"the three runs must cover the same inputs; got {n}, {len(cloud_only)}, {len(mobile_only)}")
    if any(r.request_bytes is None or r.response_bytes is None for r in cloud_only):
        raise ConfigError("every cloud-only record needs the request and response sizes the client measured")
    request_bytes = np.array([r.request_bytes for r in cloud_only], dtype=np.float64)
    if device == HOST_MEASURED:
        spec_us = [r.local_us for r in speculative if r.local_us is not None]
        master_us = [r.local_us for r in mobile_only if r.local_us is not None]
        first = speculative_model if isinstance(speculative_model, ImageClassifier) else speculative_model[0]
        spec_cost = local_cost(first, device, measured_s=float(np.median(spec_us)) / 1e6)  # a pair's runs included
        master_cost = local_cost(master_model, device, measured_s=float(np.median(master_us)) / 1e6)
    else:
        spec_cost = speculative_cost(speculative_model, device, widths=speculative_widths)
        master_cost = local_cost(master_model, device)
    return Workload(
        name=name,
        escalate=np.array([r.route is Route.ESCALATED for r in speculative]),
        audit=np.array([r.audited for r in speculative]),
        speculative_predictions=np.array([r.local_prediction for r in speculative], dtype=np.int64),
        master_predictions=np.array([r.prediction for r in mobile_only], dtype=np.int64),
        labels=labels,
        request_bytes=request_bytes,
        compressed_request_bytes=_compressed(images, request_bytes),
        response_bytes=np.array([r.response_bytes for r in cloud_only], dtype=np.float64),
        server_s=np.array([(r.cloud_queue_us or 0) + (r.cloud_compute_us or 0) for r in cloud_only]) / 1e6,
        speculative=spec_cost,
        master=master_cost,
        escalation_probability=escalation_probability,
        audit_share=audit_share,
        recorded_arrival_s=np.array([r.start_s for r in speculative]) - speculative[0].start_s,
    )


def workload_from_outputs(
    name: str,
    *,
    outputs: ModelOutputs,
    detector: MisspeculationDetector,
    images: np.ndarray,
    device: str,
    speculative_model: ImageClassifier | Sequence[ImageClassifier],
    master_model: ImageClassifier,
    server_s: float,
    audit_share: float = 0.0,
    rng: np.random.Generator | None = None,
    speculative_widths: StoredWidths | None = None,
) -> Workload:
    """A workload from a detector's decisions on stored test outputs (no server needed).

    Message sizes are those of the real protobuf messages for this input shape; audits are drawn
    at ``audit_share`` among kept answers (seeded). ``speculative_widths`` prices a compressed
    speculative model's storage on an analytic device.
    """
    if len(outputs) != len(images):
        raise ConfigError(f"{len(outputs)} outputs but {len(images)} images")
    decisions = detector.decide(outputs.speculative_logits)
    escalate = decisions.escalate
    draws = (rng or np.random.default_rng(0)).random(len(outputs))
    sizes = infer_message_sizes(images.shape[1:], outputs.num_classes)
    n = len(outputs)
    request_bytes = np.full(n, float(sizes.request_bytes))
    return Workload(
        name=name,
        escalate=escalate,
        audit=~escalate & (draws < audit_share),
        speculative_predictions=decisions.predictions,
        master_predictions=outputs.master_predictions,
        labels=outputs.labels,
        request_bytes=request_bytes,
        compressed_request_bytes=_compressed(images, request_bytes),
        response_bytes=np.full(n, float(sizes.response_bytes)),
        server_s=np.full(n, server_s),
        speculative=speculative_cost(speculative_model, device, widths=speculative_widths, images=images),
        master=local_cost(master_model, device, images=images),
        escalation_probability=detector.escalation_rate_,
        audit_share=audit_share,
    )
