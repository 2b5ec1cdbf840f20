"""``specedge simulate``: SpecEdge against cloud-only and mobile-only over links, traces, devices and frame rates.

Runs the speculative model and the master on the test split, decides per input with a
detector (calibrated here on validation, or read from ``specedge calibrate``), and replays the
three strategies on every link x frame rate x model kind x device, writing a Markdown report,
JSON rows and stacked-bar plots (thesis figures 4.13 / 4.14).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from specedge.cli._args import (
    add_common,
    add_dataset,
    add_detector_options,
    add_links,
    comma_names,
    default_cache_dir,
    default_data_root,
    positive_int,
    unit_interval,
)
from specedge.cli._models import load_for, model_outputs
from specedge.data import load_dataset
from specedge.demo.run import DEFAULT_QUALITY, DEFAULT_TARGET
from specedge.detector import MisspeculationDetector
from specedge.detector.bank import choose_detector, read_detectors
from specedge.errors import ConfigError
from specedge.simulator import DEVICE_PROFILES
from specedge.simulator.measure import measure_classifier_s
from specedge.simulator.plots import plot_breakdown
from specedge.simulator.report import evaluation_row, markdown_report
from specedge.simulator.stream import MODEL_KINDS
from specedge.simulator.sweep import ARRIVALS, run_scenarios, scenarios, with_traces
from specedge.simulator.system import OBJECTIVES, SELECTORS
from specedge.simulator.workloads import HOST_MEASURED, workload_from_outputs

__all__ = ["register"]


def _positive_numbers(what: str) -> Callable[[str], tuple[float, ...]]:
    """An argparse type for comma-separated numbers > 0."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(v) for v in text.split(","))
        except ValueError:
            values = ()
        if not values or any(not (v > 0 and v != float("inf")) for v in values):
            raise argparse.ArgumentTypeError(f"expected comma-separated {what} > 0, got {text!r}")
        return values

    return parse


def _cmd_simulate(args: argparse.Namespace) -> int:
    splits = load_dataset(
        args.dataset,
        data_root=args.data_root or default_data_root(),
        cache_dir=args.cache_dir or default_cache_dir(),
        show_progress=not args.quiet,
    )
    master = load_for(args.master, splits, role="master")
    speculative = load_for(args.speculative, splits, role="speculative model")
    test = splits.test if args.limit is None else splits.test.subset(np.arange(min(args.limit, len(splits.test))))
    outputs = model_outputs([speculative], master, test)
    if args.detector is not None:
        detectors = read_detectors(args.detector)
        detector = (
            detectors[0] if len(detectors) == 1 else choose_detector(detectors, policy=args.policy, target=args.target)
        )
        if detector.policy == "pair" or detector.num_classes_ != splits.num_classes:
            raise ConfigError(f"detector file {args.detector} does not fit one speculative model on {splits.name}")
    else:
        validation = model_outputs([speculative], master, splits.val)
        detector = MisspeculationDetector(
            policy=args.policy,
            quality=args.quality,
            target=args.target,
            delta=None if args.no_guarantee else args.delta,
        ).fit(validation.speculative_logits, validation.master_predictions, validation.labels)
    server_s = measure_classifier_s(master, test.images[:50])
    rng = np.random.default_rng(args.seed)
    if (args.trace_up or args.trace_down) and args.bandwidth_scale != (1.0,):
        raise ConfigError("--bandwidth-scale scales constant-rate links; traces bring their own capacity")
    cases = scenarios(
        args.links, fps=args.fps, kinds=args.kind, arrivals=args.arrivals, bandwidth_scales=args.bandwidth_scale
    )
    if args.trace_up or args.trace_down:
        cases = [
            dataclasses.replace(
                case, link=with_traces(case.link, uplink=args.trace_up, downlink=args.trace_down, rng=rng)
            )
            for case in cases
        ]
    args.out.mkdir(parents=True, exist_ok=True)
    rows, sections = [], []
    for device in args.device:
        workload = workload_from_outputs(
            f"{splits.name}: {speculative.spec.label} -> {master.spec.label}",
            outputs=outputs,
            detector=detector,
            images=test.images,
            device=device,
            speculative_model=speculative,
            master_model=master,
            server_s=server_s,
            audit_share=args.audit_share,
            rng=rng,
        )
        evaluations = run_scenarios(workload, cases, selector=args.selector, objective=args.objective, seed=args.seed)
        for case, evaluation in zip(cases, evaluations, strict=True):
            rows.append(
                evaluation_row(evaluation, model=workload.name, device=device, fps=case.fps, arrivals=case.arrivals)
            )
        for kind in args.kind:
            for rate in args.fps:
                chosen = [e for c, e in zip(cases, evaluations, strict=True) if c.kind == kind and c.fps == rate]
                title = f"{workload.name} on {device}, {rate:g} frame/s, {kind} model"
                plot_breakdown(chosen, args.out / f"breakdown-{device}-{kind}-{rate:g}fps.png", title=title)
                sections.append(markdown_report(chosen, title=title).replace("# ", "## ", 1))
    notes = [
        f"Detector: {detector.describe()}; escalates {detector.escalation_rate_:.2%} of validation inputs (P_r).",
        f"Selector: {args.selector}, minimising {args.objective}. Server time: the master measured on this host, "
        f"{server_s * 1e3:.3f} ms.",
    ]
    header = "\n".join([f"# SpecEdge simulation: {splits.name}", "", *notes, ""])
    (args.out / "report.md").write_text(header + "\n" + "\n".join(sections))
    (args.out / "results.json").write_text(
        json.dumps({"command": sys.argv, "notes": notes, "rows": rows}, indent=2) + "\n"
    )
    print("\n".join(notes))
    print(f"{'device':<12} {'link':<28} {'fps':>5} {'kind':<9} {'runs':<9} {'speed-up':>9} {'energy':>7} "
          f"{'vs mobile: lat':>14} {'energy':>7}")  # fmt: skip
    for r in rows:
        print(
            f"{r['device']:<12} {r['link']:<28} {r['fps']:>5g} {r['model_kind']:<9} {r['runs']:<9} "
            f"{r['latency_vs_cloud']:>8.2f}x {r['energy_vs_cloud']:>7.3f} {r['latency_vs_mobile']:>13.2f}x "
            f"{r['energy_vs_mobile']:>7.3f}"
        )
    print(f"report, rows and plots: {args.out}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    sim = subparsers.add_parser(
        "simulate",
        help="simulate SpecEdge vs cloud-only and mobile-only over links, traces, devices and frame rates",
        description="Replay the test split through SpecEdge, cloud-only and mobile-only on 3G/LTE/WiFi/5G link "
        "profiles (optionally trace-driven), with stateful radios (promotion, tails), handshakes and device "
        "compute priced on named device profiles; write report.md, results.json and stacked-bar plots.",
    )
    sim.add_argument("--speculative", type=Path, required=True, metavar="DIR", help="speculative model artifact")
    sim.add_argument("--master", type=Path, required=True, metavar="DIR", help="master model artifact")
    add_dataset(sim)
    add_detector_options(sim, quality=DEFAULT_QUALITY, target=DEFAULT_TARGET)
    add_links(sim)
    sim.add_argument("--trace-up", type=Path, metavar="FILE", help="uplink capacity trace (Mahimahi or time/Mbps)")
    sim.add_argument("--trace-down", type=Path, metavar="FILE", help="downlink capacity trace (Mahimahi or time/Mbps)")
    devices = [*DEVICE_PROFILES, HOST_MEASURED]
    sim.add_argument(
        "--device",
        type=comma_names(devices, "device"),
        default=("tegra-k1",),
        help=f"comma-separated devices from {','.join(devices)} (default: tegra-k1)",
    )
    sim.add_argument(
        "--fps",
        type=_positive_numbers("frame rates (frames per second)"),
        default=(1.0,),
        help="comma-separated camera frame rates (default: 1)",
    )
    sim.add_argument(
        "--bandwidth-scale",
        type=_positive_numbers("bandwidth factors"),
        default=(1.0,),
        help="comma-separated factors on the links' bandwidths, e.g. 0.25,1,4 (default: 1)",
    )
    sim.add_argument(
        "--arrivals", choices=ARRIVALS, default="constant", help="frame arrival process (default: constant)"
    )
    sim.add_argument(
        "--kind",
        type=comma_names(MODEL_KINDS, "model kind"),
        default=MODEL_KINDS,
        help="simple (SIEVE's transfer model) and/or realistic (promotion, tails, handshakes, compressed inputs)",
    )
    sim.add_argument("--selector", choices=SELECTORS, default="predictive", help="how SpecEdge picks per link")
    sim.add_argument("--objective", choices=OBJECTIVES, default="energy", help="what the selector minimises")
    sim.add_argument("--audit-share", type=unit_interval, default=0.0, help="share of kept answers audited")
    sim.add_argument("--limit", type=positive_int, metavar="N", help="simulate only the first N test inputs")
    sim.add_argument("--seed", type=int, default=0, help="seed of arrivals, traces' segments and audit draws")
    sim.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for report.md, results.json, plots")
    add_common(sim)
    sim.set_defaults(func=_cmd_simulate)
