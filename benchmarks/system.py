"""SpecEdge against cloud-only and mobile-only: MNIST (LeNet-5) and CIFAR-10 (JPEG) (ConvNet), simulated.

For each setup (master + distilled speculative model, see _trained.py) and each detector
configuration fitted on the validation split:

    accuracy@1.0   the seeds' method: a threshold that meets 100% of the master's validation accuracy
    accuracy@0.99  SIEVE's relaxed 99% mode, fitted the same way
    agreement@0.995 certified (Learn-then-Test, delta 0.05): agreement with the master >= 99.5%

the detector's decisions on the test split are replayed by the simulator on 3G, LTE and WiFi
(constant rate; and trace-driven from the Mahimahi cellular traces), on two device profiles
(tegra-k1, pixel-class), with SIEVE's "simple" transfer model and the "realistic" one
(promotion, tails, handshakes, zstd-compressed inputs), a camera at 1 and 30 frames/s, and
three selectors (always speculate; SIEVE's first-order rule; the predictive one) minimising
latency or energy. Rows carry the agreed keys (latency_vs_cloud = cloud latency / SpecEdge
latency; energy_vs_cloud = SpecEdge energy / cloud energy; likewise vs mobile-only), and the run
reports the simulator's throughput (requests per second of the vectorised replay).

    python benchmarks/system.py                  # full run (trains and caches models on first use)
    python benchmarks/system.py --quick          # same code path on small models
    python benchmarks/system.py --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _trained import ROOT, Trained, prepare

from specedge.detector import MisspeculationDetector
from specedge.simulator import get_link_profile
from specedge.simulator.measure import measure_classifier_s
from specedge.simulator.report import evaluation_row
from specedge.simulator.speed import replay_speed
from specedge.simulator.stream import MODEL_KINDS
from specedge.simulator.sweep import Scenario, run_scenarios, with_traces
from specedge.simulator.system import OBJECTIVES, SELECTORS, Workload
from specedge.simulator.workloads import workload_from_outputs

DEVICES = ("tegra-k1", "pixel-class")
LINKS = ("3g", "lte", "wifi")
TRACES = {  # realistic, trace-driven: Mahimahi uplink/downlink pairs (anchors.md section 5)
    "lte": ("TMobile-LTE-short.up", "TMobile-LTE-short.down"),
    "3g": ("TMobile-UMTS-driving.up", "TMobile-UMTS-driving.down"),
}
DETECTORS = {
    "accuracy@1.0": {"quality": "accuracy", "target": 1.0, "delta": None},
    "accuracy@0.99": {"quality": "accuracy", "target": 0.99, "delta": None},
    "agreement@0.995": {"quality": "agreement", "target": 0.995, "delta": 0.05},
}
SIEVE_GOALS = {"3G": (12.3, 0.09), "LTE": (2.8, 0.43), "WiFi": (2.0, 0.74)}  # simple model, thesis 4.5.2-4.5.3


def _scenarios(rates: tuple[float, ...], rng: np.random.Generator) -> list[tuple[Scenario, str]]:
    cases = [
        (Scenario(get_link_profile(link), rate, kind), "constant")
        for kind in MODEL_KINDS
        for rate in rates
        for link in LINKS
    ]
    mahimahi = ROOT.parent / "shared" / "traces" / "mahimahi"
    if mahimahi.is_dir():
        for link, (up, down) in TRACES.items():
            traced = with_traces(get_link_profile(link), uplink=mahimahi / up, downlink=mahimahi / down, rng=rng)
            cases += [(Scenario(traced, rate, "realistic"), "trace") for rate in rates]
    return cases


def _workloads(trained: Trained, device: str, server_s: float, limit: int | None) -> dict[str, Workload]:
    validation, test = trained.outputs("val"), trained.outputs("test")
    images = trained.splits.test.images
    if limit is not None:
        test, images = test.subset(np.arange(limit)), images[:limit]
    master, speculative = trained.classifier("master"), trained.classifier("speculative")
    workloads = {}
    for name, params in DETECTORS.items():
        detector = MisspeculationDetector(**params).fit(
            validation.speculative_logits, validation.master_predictions, validation.labels
        )
        workloads[name] = workload_from_outputs(
            f"{trained.splits.name}: {speculative.spec.label} -> {master.spec.label}",
            outputs=test,
            detector=detector,
            images=images,
            device=device,
            speculative_model=speculative,
            master_model=master,
            server_s=server_s,
        )
    return workloads


def _goal_checks(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per setup, device and link: the goals at 100% of the master's accuracy (predictive selector, 1 fps)."""
    checks = []
    chosen = [r for r in rows if r["detector"] == "accuracy@1.0" and r["selector"] == "predictive" and r["fps"] == 1.0]
    keys = sorted({(r["model"], r["device"], r["link"], r["model_kind"], r["capacity"]) for r in chosen})
    for model, device, link, kind, capacity in keys:
        by_objective = {
            r["objective"]: r
            for r in chosen
            if (r["model"], r["device"], r["link"], r["model_kind"], r["capacity"])
            == (model, device, link, kind, capacity)
        }
        latency, energy = by_objective["latency"], by_objective["energy"]
        check: dict[str, Any] = {
            "model": model,
            "device": device,
            "link": link,
            "model_kind": kind,
            "capacity": capacity,
            "latency_vs_cloud": latency["latency_vs_cloud"],
            "energy_vs_cloud": energy["energy_vs_cloud"],
            "latency_vs_mobile": latency["latency_vs_mobile"],
            "energy_vs_mobile": energy["energy_vs_mobile"],
            "runs_for_latency": latency["runs"],
            "runs_for_energy": energy["runs"],
        }
        best_latency = min(latency["latency_ms"]["cloud-only"], latency["latency_ms"]["mobile-only"])
        best_energy = min(energy["energy_mj"]["cloud-only"], energy["energy_mj"]["mobile-only"])
        latency_vs_best = latency["latency_ms"]["SpecEdge"] / best_latency
        energy_vs_best = energy["energy_mj"]["SpecEdge"] / best_energy
        check |= {"latency_vs_best_baseline": latency_vs_best, "energy_vs_best_baseline": energy_vs_best}
        if kind == "simple" and link in SIEVE_GOALS and capacity == "constant":
            speed_goal, energy_goal = SIEVE_GOALS[link]
            check["meets_sieve_goals"] = bool(
                latency["latency_vs_cloud"] >= speed_goal
                and energy["energy_vs_cloud"] <= energy_goal
                and latency["latency_vs_mobile"] >= 1 - 1e-9
                and energy["energy_vs_mobile"] <= 1 + 1e-9
            )
        if kind == "realistic":
            check["never_worse_than_best_baseline"] = bool(latency_vs_best <= 1 + 1e-9 and energy_vs_best <= 1 + 1e-9)
            check["half_of_best_baseline_somewhere"] = bool(min(latency_vs_best, energy_vs_best) <= 0.5)
        checks.append(check)
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small models and fewer requests (same code path)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "system.json")
    parser.add_argument("--setups", default="mnist,cifar10", help="comma-separated setups (default: mnist,cifar10)")
    args = parser.parse_args()
    started = time.time()
    rates = (1.0, 30.0)
    rows: list[dict[str, Any]] = []
    compression = {}
    for name in args.setups.split(","):
        trained = prepare(name, quick=args.quick, log=lambda m: print(m, file=sys.stderr))
        master = trained.classifier("master")
        server_s = measure_classifier_s(master, trained.splits.test.images[:50])
        for device in DEVICES:
            limit = 2000 if args.quick else None
            for detector_name, workload in _workloads(trained, device, server_s, limit).items():
                assert workload.compressed_request_bytes is not None
                compression[workload.name] = float(
                    workload.request_bytes.sum() / workload.compressed_request_bytes.sum()
                )
                cases = _scenarios(rates, np.random.default_rng(0))
                for selector in SELECTORS:
                    for objective in OBJECTIVES:
                        if selector == "always" and objective == "latency":
                            continue  # no selection: the same run as for energy
                        evaluations = run_scenarios(
                            workload, [c for c, _ in cases], selector=selector, objective=objective, seed=0
                        )
                        for (case, capacity), evaluation in zip(cases, evaluations, strict=True):
                            rows.append(
                                evaluation_row(
                                    evaluation,
                                    model=workload.name,
                                    device=device,
                                    detector=detector_name,
                                    fps=case.fps,
                                    capacity=capacity,
                                    server_ms=server_s * 1e3,
                                    speculative_local=workload.speculative.__dict__,
                                    master_local=workload.master.__dict__,
                                )
                            )
    speed = [
        replay_speed(100_000 if args.quick else 1_000_000, link=link, kind=kind)
        for link in LINKS
        for kind in MODEL_KINDS
    ]
    report = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "quick": args.quick,
        "machine": platform.platform(),
        "rows": rows,
        "goals": _goal_checks(rows),
        "compression_ratio": compression,
        "requests_per_s": {f"{s.link}/{s.kind}": s.requests_per_s for s in speed},
        "seconds": time.time() - started,
    }
    print(f"{'model':<44} {'device':<12} {'link':<40} {'kind':<9} {'speed-up':>9} {'energy':>7} {'vs mob.':>8} "
          f"{'energy':>7}  runs (latency / energy)")  # fmt: skip
    for g in report["goals"]:
        print(
            f"{g['model']:<44} {g['device']:<12} {g['link']:<40} {g['model_kind']:<9} {g['latency_vs_cloud']:>8.2f}x "
            f"{g['energy_vs_cloud']:>7.3f} {g['latency_vs_mobile']:>7.2f}x {g['energy_vs_mobile']:>7.3f}  "
            f"{g['runs_for_latency']} / {g['runs_for_energy']}"
        )
    for key, value in report["requests_per_s"].items():
        print(f"simulator throughput {key}: {value:,.0f} requests/s")
    for model, ratio in compression.items():
        print(f"zstd on serialised requests, {model}: {ratio:.2f}x (SIEVE assumed 4x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
