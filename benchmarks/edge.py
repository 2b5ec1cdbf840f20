"""The edge runtime, live: decision overhead, the batch-1 compute floor, and live vs simulated latency (issue 9).

Three measurements on the cached benchmark models (``_trained.py``: LeNet-5 on MNIST, the ConvNet
on CIFAR-10; the speculative model of each setup, fp32 on ONNX Runtime and an int8 variant):

* ``decision_overhead_ratio``: per input answered locally (kept by the detector), the time
  ``EdgeRuntime.classify`` spends beyond the speculative forward pass (policy plan with the
  selector on, an LTE-seeded link estimate and a payload; detector; speculation history; the
  record) over that forward time. The runner sits behind a timing proxy, so both times come from
  the same call; median over many inputs after a warm-up, one thread. Goal <= 0.05. A second,
  instrumented runtime times the parts (``policy.plan``, ``detector.decide``,
  ``policy.observe_input``; the rest is trace and record bookkeeping), a third runs with the
  selector off; the three run interleaved in shuffled rounds so machine noise hits them alike.
* ``floor_ratio_b1``: the speculative model's batch-1 forward time on its fast backend (ONNX Runtime,
  ``runner_for``) over its compute floor 2 x MACs / ``compression.PEAK_FLOPS`` (anchors.md section 8).
* ``live_vs_sim``: the master served by a real ``specedge serve`` child (``CloudServerProcess``),
  behind ``LinkEmulator`` with the 3G or LTE profile (no radio promotion; TCP handshake on, paid by
  the runtime's warm-up call); cloud-only (mission-critical) and SpecEdge (selector off, doubtful
  inputs escalated) on the same test inputs (SpecEdge on more of them, for enough escalations).
  Live mean = mean ``total_us``. Simulated mean = the same requests (each record's request/response
  bytes, server queue + compute, measured local time, arrival = its ``start_s``) replayed on the
  same link with SIEVE's "simple" transfer model and a plaintext connection (the emulated link
  carries gRPC without TLS). Goal: live / sim in 0.9-1.1.

    python benchmarks/edge.py --quick            # same code path, small models and fewer inputs
    python benchmarks/edge.py --out FILE.json
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _trained import Trained, prepare
from compression import PEAK_FLOPS  # the one stated host peak (anchors.md section 8)

from specedge.backends import ModelRunner, OnnxRunner, measure_latency_us, runner_for
from specedge.cloud.process import CloudServerProcess
from specedge.compression.int8 import quantize_int8
from specedge.detector import MisspeculationDetector
from specedge.edge.cloud_client import CloudClient
from specedge.edge.history import SpeculationHistory
from specedge.edge.link_estimate import LinkEstimate
from specedge.edge.policy import Payload
from specedge.edge.records import InferenceRecord, Route
from specedge.edge.runtime import EdgeRuntime, LocalModel
from specedge.emulator import LinkEmulator
from specedge.models import load_artifact
from specedge.models.profiler import profile_classifier
from specedge.simulator import ConnectionProfile, RequestStream, get_link_profile, replay
from specedge.simulator.device import get_device_profile
from specedge.simulator.links import LinkProfile
from specedge.simulator.wire import http2_stream_bytes, infer_message_sizes

OVERHEAD_GOAL = 0.05
LIVE_GOAL = (0.9, 1.1)
LINKS = ("3g", "lte")
UNUSED_CLOUD = "127.0.0.1:9"  # decision overhead: a configured client that kept inputs never call


# --- timing helpers ------------------------------------------------------------------------------


class _Stopwatch:
    """Calls ``fn`` and keeps how long the latest call took (``last_ns``)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.last_ns = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter_ns()
        out = self.fn(*args, **kwargs)
        self.last_ns = time.perf_counter_ns() - start
        return out


class _TimedRunner:
    """A runner proxy: the same logits, and the forward time of the latest call."""

    def __init__(self, runner: ModelRunner) -> None:
        self.runner = runner
        self.watch = _Stopwatch(runner.logits)

    @property
    def backend(self) -> str:
        return self.runner.backend

    def logits(self, images: np.ndarray) -> np.ndarray:
        out: np.ndarray = self.watch(images)
        return out


def _median_call_us(fn: Callable[[], Any], repeats: int) -> float:
    for _ in range(min(repeats, 50)):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - start)
    return statistics.median(times) / 1e3


# --- models ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Variant:
    """One speculative model as the device runs it, with a detector fitted on its own logits."""

    label: str
    runner: ModelRunner
    detector: MisspeculationDetector
    macs: int
    latency_s: float


def _variants(name: str, trained: Trained, *, calibration: int) -> list[_Variant]:
    loaded = load_artifact(trained.speculative)
    classifier = loaded.classifier
    val = trained.splits.val
    outputs = trained.outputs("val")
    macs = profile_classifier(classifier).total_macs
    fp32, _ = runner_for(loaded, val.images[:calibration], prefer="onnxruntime", threads=1)
    int8 = OnnxRunner(quantize_int8(classifier, val.images[:256]), threads=1)
    variants = []
    for suffix, runner in (("fp32", fp32), ("int8", int8)):
        detector = MisspeculationDetector(quality="accuracy", target=1.0, delta=None).fit(
            runner.logits(val.images), outputs.master_predictions, outputs.labels
        )
        latency_s = measure_latency_us(runner, val.images, batch=1, repeats=100, warmup=20) / 1e6
        variants.append(_Variant(f"{name}/{classifier.spec.label}/{suffix}", runner, detector, macs, latency_s))
    return variants


# --- 1. decision overhead ------------------------------------------------------------------------


def _runtime(variant: _Variant, image_shape: tuple[int, ...], classes: int, *, selector: bool) -> EdgeRuntime:
    """The edge as deployed with the selector on (LTE seed, payload, history, a cloud client) or off."""
    runner = _TimedRunner(variant.runner)
    detector = copy.deepcopy(variant.detector)  # the instrumented runtime wraps its own detector's decide
    energy_mj = _host_energy_mj(variant.latency_s)
    model = LocalModel(variant.label, runner, detector, latency_s=variant.latency_s, energy_mj=energy_mj)
    sizes = infer_message_sizes(image_shape, classes)
    return EdgeRuntime(
        speculative=[model],
        cloud=CloudClient(UNUSED_CLOUD, model_name="master"),
        objective="energy",
        selector=selector,
        link=LinkEstimate(get_link_profile("lte")) if selector else None,
        payload=Payload(sizes.request_bytes, sizes.response_bytes, 1e-3) if selector else None,
        history=SpeculationHistory(),
    )


def _host_energy_mj(latency_s: float) -> float:
    """Energy of one local run measured here, priced with the host-x86 profile's power above idle."""
    host = get_device_profile("host-x86")
    return latency_s * (host.active_power_mw - host.idle_power_mw)


def _instrument(runtime: EdgeRuntime) -> dict[str, _Stopwatch]:
    """Wrap the public calls of the decision path on this runtime's own objects (instance attributes)."""
    model = next(iter(runtime.models.values()))
    assert model.detector is not None
    watches = {
        "plan": _Stopwatch(runtime.policy.plan),
        "detector": _Stopwatch(model.detector.decide),
        "history": _Stopwatch(runtime.policy.observe_input),
    }
    runtime.policy.plan = watches["plan"]  # type: ignore[method-assign]
    model.detector.decide = watches["detector"]  # type: ignore[method-assign]
    runtime.policy.observe_input = watches["history"]  # type: ignore[method-assign]
    return watches


def _record_build_us(record: InferenceRecord, repeats: int) -> float:
    values = {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    return _median_call_us(lambda: InferenceRecord(**values), repeats)


def _decision_overhead(variant: _Variant, trained: Trained, *, inputs: int, rounds: int) -> dict[str, Any]:
    images = trained.splits.test.images
    logits = variant.runner.logits(images)
    kept = images[~variant.detector.decide(logits).escalate][:inputs]
    shape, classes = tuple(images.shape[1:]), int(logits.shape[1])
    runtimes = {
        "selector-on": _runtime(variant, shape, classes, selector=True),
        "instrumented": _runtime(variant, shape, classes, selector=True),
        "selector-off": _runtime(variant, shape, classes, selector=False),
    }
    watches = _instrument(runtimes["instrumented"])
    samples: dict[str, dict[str, list[int]]] = {name: {"total": [], "forward": []} for name in runtimes}
    samples["instrumented"] |= {part: [] for part in watches}
    counter = 0
    last: InferenceRecord | None = None
    chunks = np.array_split(np.arange(len(kept)), rounds)
    for round_index in range(-1, rounds):  # round -1 warms every runtime up
        chunk = chunks[0][: min(100, len(chunks[0]))] if round_index < 0 else chunks[round_index]
        order = list(runtimes)
        random.shuffle(order)
        for name in order:
            runtime = runtimes[name]
            runner = next(iter(runtime.models.values())).runner
            assert isinstance(runner, _TimedRunner)
            for i in chunk:
                counter += 1
                start = time.perf_counter_ns()
                record = runtime.classify(kept[i], input_id=f"in-{counter}")
                total = time.perf_counter_ns() - start
                if record.route is not Route.LOCAL or record.attempts or record.error:
                    raise RuntimeError(f"{variant.label}: a kept input was not answered locally: {record}")
                if round_index < 0:
                    continue
                samples[name]["total"].append(total)
                samples[name]["forward"].append(runner.watch.last_ns)
                if name == "instrumented":
                    for part, watch in watches.items():
                        samples[name][part].append(watch.last_ns)
                if name == "selector-on":
                    last = record
    assert last is not None

    def summary(name: str) -> dict[str, Any]:
        s = {k: np.array(v, dtype=np.float64) / 1e3 for k, v in samples[name].items()}  # us
        overhead = s["total"] - s["forward"]
        return {
            "ratio": float(np.median(overhead / s["forward"])),
            "ratio_of_medians": float(np.median(overhead) / np.median(s["forward"])),
            "p90_ratio": float(np.quantile(overhead / s["forward"], 0.9)),
            "forward_us": float(np.median(s["forward"])),
            "classify_us": float(np.median(s["total"])),
            "overhead_us": float(np.median(overhead)),
            **({"parts": s} if name == "instrumented" else {}),
        }

    result = {name: summary(name) for name in runtimes}
    parts = result["instrumented"].pop("parts")
    forward = float(np.median(parts["forward"]))
    breakdown = {part: float(np.median(parts[part])) for part in watches}
    rest = parts["total"] - parts["forward"] - sum(parts[p] for p in watches)
    breakdown["rest"] = float(np.median(rest))  # trace, checks, float64 cast, clock reads, the record
    policy = runtimes["selector-on"].policy
    link = policy.link
    assert link is not None and policy.payload is not None
    p = policy.payload
    now = time.perf_counter()
    repeats = 2000 if inputs > 500 else 300
    micro = {
        "policy.plan": _median_call_us(lambda: policy.plan(stream="micro", now_s=now), repeats),
        "policy.cloud_costs": _median_call_us(lambda: policy.cloud_costs(now), repeats),
        "link.round_trip_s": _median_call_us(
            lambda: link.round_trip_s(p.request_bytes, p.response_bytes, p.server_s, at_s=now), repeats
        ),
        "link.transfer_energy_mj": _median_call_us(
            lambda: link.transfer_energy_mj(p.request_bytes, p.response_bytes, at_s=now, server_s=p.server_s),
            repeats,
        ),
        "detector.decide": _median_call_us(lambda: variant.detector.decide(logits[:1].astype(np.float64)), repeats),
        "InferenceRecord(...)": _record_build_us(last, repeats),
    }
    return {
        "model": variant.label,
        "inputs": len(kept),
        "decision": last.decision,
        "decision_overhead_ratio": result["selector-on"]["ratio"],
        "selector_on": result["selector-on"],
        "selector_off": result["selector-off"],
        "instrumented": result["instrumented"],
        "breakdown_us": breakdown,
        "breakdown_share_of_forward": {k: v / forward for k, v in breakdown.items()},
        "micro_us": micro,
    }


# --- 2. compute floor ----------------------------------------------------------------------------


def _floor(variant: _Variant, images: np.ndarray, *, repeats: int) -> dict[str, Any]:
    latency_us = measure_latency_us(variant.runner, images, batch=1, repeats=repeats, warmup=50)
    floor_us = 2 * variant.macs / PEAK_FLOPS * 1e6
    return {
        "model": variant.label,
        "macs": variant.macs,
        "latency_b1_us": latency_us,
        "floor_us": floor_us,
        "floor_ratio_b1": latency_us / floor_us,
    }


# --- 3. live vs simulated ------------------------------------------------------------------------


def _plaintext(link: LinkProfile) -> LinkProfile:
    """The link the emulator imposes: same channels and RTT, gRPC without TLS."""
    return dataclasses.replace(link, connection=ConnectionProfile(tls_version=None))


def _simulate(records: list[InferenceRecord], link: LinkProfile, *, payload_only: bool) -> dict[str, float]:
    """The simulator's mean latency (ms) for the same requests; ``payload_only``: bytes as the proxy sees them."""
    to_cloud = np.array([r.cloud_round_trip_us is not None for r in records])
    request = np.array([r.request_bytes or 0 for r in records], dtype=np.int64)
    response = np.array([r.response_bytes or 0 for r in records], dtype=np.int64)
    if payload_only:
        up, down = http2_stream_bytes(request, response, link.connection.framing)
    else:
        up, down = link.connection.wire_bytes(request, response)
    start = np.array([r.start_s for r in records])
    stream = RequestStream.build(
        start - start[0],
        local_s=np.array([(r.local_us or 0) / 1e6 for r in records]),
        to_cloud=to_cloud,
        request_bytes=np.where(to_cloud, up, 0),
        response_bytes=np.where(to_cloud, down, 0),
        server_s=np.array([((r.cloud_queue_us or 0) + (r.cloud_compute_us or 0)) / 1e6 for r in records]),
    )
    result = replay(stream, link, kind="simple")
    service = result.latency_s - result.queue_s
    return {
        "mean_ms": float(service.mean() * 1e3),  # per input, without the replay's queue (see notes)
        "mean_with_queue_ms": float(result.latency_s.mean() * 1e3),
        "cloud_mean_ms": float(service[to_cloud].mean() * 1e3) if to_cloud.any() else 0.0,
    }


def _server_ms(records: list[InferenceRecord]) -> float:
    """Mean server queue + compute of the records that reached the cloud."""
    server = [(r.cloud_queue_us or 0) + (r.cloud_compute_us or 0) for r in records if r.cloud_round_trip_us]
    return float(np.mean(server)) / 1e3 if server else 0.0


def _stack_overhead(records: list[InferenceRecord]) -> dict[str, float]:
    """Cloud-only straight to the server (no emulator): what a call costs beyond the server's own time."""
    total = np.array([r.total_us for r in records], dtype=np.float64) / 1e3
    round_trip = np.array([r.cloud_round_trip_us or 0 for r in records], dtype=np.float64) / 1e3
    return {
        "inputs": len(records),
        "total_mean_ms": float(total.mean()),
        "round_trip_mean_ms": float(round_trip.mean()),
        "server_mean_ms": _server_ms(records),
        "overhead_mean_ms": float(total.mean()) - _server_ms(records),
        "runtime_outside_rpc_mean_ms": float((total - round_trip).mean()),
    }


def _live_config(records: list[InferenceRecord], link: LinkProfile) -> dict[str, Any]:
    total = np.array([r.total_us for r in records], dtype=np.float64) / 1e3
    cloud = np.array([r.cloud_round_trip_us is not None for r in records])
    sim = _simulate(records, link, payload_only=False)
    sim_payload = _simulate(records, link, payload_only=True)
    live_ms = float(total.mean())
    gaps = total[cloud] - np.array([(r.local_us or 0) / 1e3 for r in records])[cloud]
    return {
        "inputs": len(records),
        "to_cloud": int(cloud.sum()),
        "live_mean_ms": live_ms,
        "sim_mean_ms": sim["mean_ms"],
        "live_vs_sim": live_ms / sim["mean_ms"],
        "sim_mean_with_queue_ms": sim["mean_with_queue_ms"],
        "live_vs_sim_with_queue": live_ms / sim["mean_with_queue_ms"],
        "sim_payload_bytes_mean_ms": sim_payload["mean_ms"],
        "live_vs_sim_payload_bytes": live_ms / sim_payload["mean_ms"],
        "live_cloud_mean_ms": float(total[cloud].mean()) if cloud.any() else 0.0,
        "sim_cloud_mean_ms": sim["cloud_mean_ms"],
        "cloud_gap_ms": float(total[cloud].mean() - sim["cloud_mean_ms"]) if cloud.any() else 0.0,
        "live_cloud_minus_local_p50_ms": float(np.median(gaps)) if cloud.any() else 0.0,
        "server_ms_mean": _server_ms(records),
        "request_bytes": int(max(r.request_bytes or 0 for r in records)),
        "response_bytes": int(max(r.response_bytes or 0 for r in records)),
    }


def _live_vs_sim(name: str, trained: Trained, variant: _Variant, *, inputs: int) -> dict[str, Any]:
    """Cloud-only on the first ``inputs`` test images; SpecEdge on those and more, for ~``inputs`` escalations.

    A kept input costs a fraction of a millisecond, so SpecEdge runs on up to 10x as many inputs (the
    cloud-only ones first) until about ``inputs`` escalations are expected from the detector's rate.
    """
    master = load_artifact(trained.master)
    rate = max(float(variant.detector.escalation_rate_), 1e-3)
    spec_inputs = min(len(trained.splits.test), 10 * inputs, max(inputs, round(inputs / rate)))
    spec_images = trained.splits.test.images[:spec_inputs]
    images = spec_images[:inputs]
    spec_ids = [f"{name}-{i:05d}" for i in range(len(spec_images))]
    ids = spec_ids[:inputs]
    out: dict[str, Any] = {"setup": name, "speculative": variant.label, "master": master.spec.label}
    with CloudServerProcess([trained.master]) as server:
        with CloudClient(server.target, model_name=master.serving_name) as client:
            direct = EdgeRuntime(cloud=client, mode="mission-critical").run(images, ids=ids)
        out["direct_no_emulator"] = _stack_overhead(direct)
        for link_name in LINKS:
            link = _plaintext(get_link_profile(link_name))
            with (
                LinkEmulator(server.target, link, radio_promotion=False, tcp_handshake=True) as emulator,
                CloudClient(emulator.target, model_name=master.serving_name) as client,
            ):
                cloud_only = EdgeRuntime(cloud=client, mode="mission-critical").run(images, ids=ids)
                model = LocalModel(variant.label, variant.runner, variant.detector, latency_s=variant.latency_s)
                specedge = EdgeRuntime(speculative=[model], cloud=client, selector=False).run(spec_images, ids=spec_ids)
                stats = emulator.stats()
            for records in (cloud_only, specedge):
                bad = [r for r in records if r.error or r.flag]
                if bad:
                    raise RuntimeError(f"{name} over {link_name}: {len(bad)} inputs failed, e.g. {bad[0]}")
            out[link_name] = {
                "cloud_only": _live_config(cloud_only, link),
                "specedge": _live_config(specedge, link),
                "emulator": dataclasses.asdict(stats),
            }
    return out


# --- report ------------------------------------------------------------------------------------


def _overhead_note(overheads: list[dict[str, Any]]) -> str:
    """Where the decision time goes, from the instrumented runtime (medians, us)."""
    parts = ", ".join(
        f"{o['model']}: forward {o['instrumented']['forward_us']:.0f}, "
        + ", ".join(f"{k} {v:.0f}" for k, v in o["breakdown_us"].items())
        for o in overheads
    )
    overhead = [o["selector_on"]["overhead_us"] for o in overheads]
    forward = [o["selector_on"]["forward_us"] for o in overheads]
    return (
        f"decision overhead vs the 5% goal: the decision path costs {min(overhead):.0f}-{max(overhead):.0f} us "
        f"per input whatever the model, the speculative forward passes {min(forward):.0f}-{max(forward):.0f} us; "
        "a ratio below 0.05 would need the decision path under a few us. Parts (us): "
        f"{parts}. The detector (numpy scores on one row, its estimator checks) is the largest part; policy.plan "
        "reuses the cloud costs and the plan while the link state is unchanged (pricing anew costs ~60 us). "
        "details.decision_overhead[].micro_us times each call alone."
    )


def _notes(live: list[dict[str, Any]]) -> list[str]:
    return [
        "decision_overhead_ratio: median over kept inputs of (classify time - forward time) / forward time, both "
        "from the same call (the runner sits behind a timing proxy); selector on, LTE-seeded link estimate, "
        "payload given, history on, a cloud client configured at an unused address that kept inputs never call. "
        "The instrumented runtime's parts carry their stopwatch's own cost (about 0.1-0.2 us each).",
        "floor_ratio_b1: batch-1 ONNX Runtime latency (1 thread) / (2 x MACs / PEAK_FLOPS), PEAK_FLOPS from "
        "benchmarks/compression.py (fp32, anchors.md section 8); the int8 rows use the same fp32 floor.",
        "live_vs_sim: the runtime's warm-up call (not recorded) opens the gRPC channel through the emulator and "
        "pays its TCP-handshake RTT, so no recorded request carries a handshake, and the 'simple' model charges "
        "none: both sides describe a warm channel. Arrivals are the records' start_s, back to back; the simulated "
        "mean is per input without the replay's queue (a simulated service longer than the live one would "
        "otherwise delay every later arrival and count the difference again); the queued figure is in details.",
        "Simulated bytes are the plaintext wire bytes (TCP/IP headers and ACKs included); the emulator carries "
        "TCP payload only, so details also give the simulator fed the HTTP/2 stream bytes the proxy forwards.",
        "The live-minus-simulated gap per cloud call (details cloud_gap_ms) is what neither model has: the "
        "gRPC client and server stacks outside the server's queue + compute times, two asyncio hops in the "
        "proxy (timer granularity), and Python scheduling on 2 shared cores. details.live_vs_sim[].direct_no_emulator "
        "measures the stack part alone: cloud-only straight to the server, total minus server queue + compute.",
        f"live_vs_sim headline is the first live setup ({live[0]['setup'] if live else '-'}), SpecEdge with the "
        "selector off; cloud-only and the other setups are under details.live_vs_sim.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small models and fewer inputs (same code path)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "edge.json")
    parser.add_argument("--setups", default="mnist,cifar10", help="comma-separated setups (default: mnist,cifar10)")
    parser.add_argument("--live-setups", default=None, help="setups for live vs sim (default: mnist in --quick, all)")
    args = parser.parse_args()
    started = time.time()
    random.seed(0)
    setups = args.setups.split(",")
    live_setups = (args.live_setups or ("mnist" if args.quick else args.setups)).split(",")
    overhead_inputs, rounds = (300, 3) if args.quick else (2000, 5)
    live_inputs = 20 if args.quick else 150
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/edge.py", *sys.argv[1:]]),
        "quick": args.quick,
        "host": {
            "machine": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "peak_flops": PEAK_FLOPS,
        },
        "decision_overhead_ratio": {},
        "floor_ratio_b1": {},
        "live_vs_sim": {},
        "details": {"decision_overhead": [], "floor": [], "live_vs_sim": []},
    }
    details = report["details"]
    for name in setups:
        trained = prepare(name, quick=args.quick, log=lambda m: print(m, file=sys.stderr))
        torch.set_num_threads(1)
        variants = _variants(name, trained, calibration=200)
        for variant in variants:
            print(f"[{variant.label}] decision overhead and floor", file=sys.stderr)
            overhead = _decision_overhead(variant, trained, inputs=overhead_inputs, rounds=rounds)
            floor = _floor(variant, trained.splits.val.images, repeats=200 if args.quick else 1000)
            floor["in_classify_forward_us"] = overhead["selector_on"]["forward_us"]
            floor["in_classify_floor_ratio"] = overhead["selector_on"]["forward_us"] / floor["floor_us"]
            details["decision_overhead"].append(overhead)
            details["floor"].append(floor)
            report["decision_overhead_ratio"][variant.label] = overhead["decision_overhead_ratio"]
            report["floor_ratio_b1"][variant.label] = floor["floor_ratio_b1"]
        if name in live_setups:
            print(f"[{name}] live vs simulated over {', '.join(LINKS)}", file=sys.stderr)
            details["live_vs_sim"].append(_live_vs_sim(name, trained, variants[0], inputs=live_inputs))  # fp32
    live = details["live_vs_sim"]
    if live:
        report["live_vs_sim"] = {link: live[0][link]["specedge"]["live_vs_sim"] for link in LINKS}
        report["live_vs_sim_cloud_only"] = {link: live[0][link]["cloud_only"]["live_vs_sim"] for link in LINKS}
    low, high = LIVE_GOAL
    report["goals"] = {
        "decision_overhead_ratio<=0.05": {m: r <= OVERHEAD_GOAL for m, r in report["decision_overhead_ratio"].items()},
        "live_vs_sim_within_10%": {
            f"{entry['setup']}/{link}/{config}": low <= entry[link][config]["live_vs_sim"] <= high
            for entry in live
            for link in LINKS
            for config in ("specedge", "cloud_only")
        },
    }
    report["notes"] = [_overhead_note(details["decision_overhead"]), *_notes(live)]
    report["seconds"] = time.time() - started

    print(f"{'model':<34} {'fwd us':>7} {'classify':>8} {'ratio':>6} {'off':>6} {'plan':>6} {'detect':>6} "
          f"{'hist':>5} {'rest':>5} {'b1 us':>6} {'floor':>6}")  # fmt: skip
    for o, f in zip(details["decision_overhead"], details["floor"], strict=True):
        b = o["breakdown_us"]
        print(
            f"{o['model']:<34} {o['selector_on']['forward_us']:7.1f} {o['selector_on']['classify_us']:8.1f} "
            f"{o['decision_overhead_ratio']:6.2f} {o['selector_off']['ratio']:6.2f} {b['plan']:6.1f} "
            f"{b['detector']:6.1f} {b['history']:5.1f} {b['rest']:5.1f} {f['latency_b1_us']:6.1f} "
            f"{f['floor_ratio_b1']:6.2f}"
        )
    print(f"\n{'setup':<10} {'link':<4} {'config':<10} {'n':>4} {'cloud':>5} {'live ms':>8} {'sim ms':>8} "
          f"{'live/sim':>8} {'gap/call ms':>11}")  # fmt: skip
    for entry in live:
        for link in LINKS:
            for config in ("cloud_only", "specedge"):
                c = entry[link][config]
                print(
                    f"{entry['setup']:<10} {link:<4} {config:<10} {c['inputs']:4d} {c['to_cloud']:5d} "
                    f"{c['live_mean_ms']:8.2f} {c['sim_mean_ms']:8.2f} {c['live_vs_sim']:8.3f} "
                    f"{c['cloud_gap_ms']:11.2f}"
                )
        d = entry["direct_no_emulator"]
        print(
            f"{entry['setup']:<10} direct (no emulator): {d['total_mean_ms']:.2f} ms per cloud-only input, "
            f"server {d['server_mean_ms']:.2f} ms, stack overhead {d['overhead_mean_ms']:.2f} ms"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
