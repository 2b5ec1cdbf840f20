"""``specedge demo``: the end-to-end run on the embedded digits set (or any dataset)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specedge.cli._args import (
    add_common,
    add_dataset,
    add_detector_options,
    add_links,
    add_options,
    add_training,
    default_cache_dir,
    default_data_root,
    positive_float,
    positive_int,
    train_config,
    unit_interval,
)
from specedge.demo import DEFAULT_SPECULATIVE_OPTIONS, DemoConfig, format_report, run_demo
from specedge.demo.run import DEFAULT_FPS, DEFAULT_QUALITY, DEFAULT_TARGET, DEVICE_CHOICES, LOCAL_MODELS
from specedge.errors import ConfigError

__all__ = ["register"]


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out} exists and is not a folder")
    config = DemoConfig(
        out_dir=args.out,
        dataset=args.dataset,
        data_root=args.data_root or default_data_root(),
        cache_dir=args.cache_dir or default_cache_dir(),
        master_arch=args.master_arch,
        master_kwargs=dict(args.master_opt),
        speculative_arch=args.speculative_arch,
        speculative_kwargs=dict(args.speculative_opt) or dict(DEFAULT_SPECULATIVE_OPTIONS),
        master_artifact=args.master_model,
        speculative_artifact=args.speculative_model,
        train=train_config(args),
        policy=args.policy,
        quality=args.quality,
        target=args.target,
        delta=None if args.no_guarantee else args.delta,
        detector_file=args.detector,
        audit_share=args.audit_share,
        limit=args.limit,
        links=args.links,
        device=args.device,
        fps=args.fps,
        device_threads=args.device_threads,
        compress=not args.no_compress,
        local=args.local,
        plots=not args.no_plots,
        show_progress=not args.quiet,
    )
    report = run_demo(config, log=(lambda _m: None) if args.quiet else (lambda m: print(m, file=sys.stderr)))
    print(format_report(report))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    demo = subparsers.add_parser(
        "demo",
        help="train, derive, calibrate, serve and compare SpecEdge with cloud-only and mobile-only",
        description="End to end: train a master CNN and a distilled speculative CNN, calibrate the detector on "
        "validation, start a real gRPC cloud server, run the test set through the edge runtime, and print "
        "accuracy, escalations, measured latency and estimated latency/energy on 3G/LTE/WiFi.",
    )
    add_dataset(demo)
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("demo-output"),
        metavar="DIR",
        help="folder for models, records.csv, report.json, plots (default: ./demo-output)",
    )
    demo.add_argument("--master-arch", default="resnet20", help="master architecture (default: resnet20)")
    add_options(demo, "--master-opt", what="master architecture", example="width=0.5")
    demo.add_argument("--speculative-arch", default="lenet5", help="speculative architecture (default: lenet5)")
    defaults = ", ".join(f"{k}={v}" for k, v in DEFAULT_SPECULATIVE_OPTIONS.items())
    add_options(demo, "--speculative-opt", what="speculative architecture", example=f"{defaults} (the default)")
    demo.add_argument("--master-model", type=Path, metavar="DIR", help="use this master artifact instead of training")
    demo.add_argument(
        "--speculative-model",
        type=Path,
        metavar="DIR",
        help="use this speculative artifact instead of distilling",
    )
    add_detector_options(demo, quality=DEFAULT_QUALITY, target=DEFAULT_TARGET)
    demo.add_argument(
        "--audit-share",
        type=unit_interval,
        default=0.02,
        help="share of kept answers also sent to the master to audit the detector (default: 0.02; 0 = off)",
    )
    demo.add_argument("--limit", type=positive_int, metavar="N", help="run only the first N test inputs")
    add_links(demo)
    demo.add_argument(
        "--device",
        choices=DEVICE_CHOICES,
        default="tegra-k1",
        help="device whose compute time and energy the simulator prices (analytic roofline), or host-measured for "
        "the times measured here (default: tegra-k1, the board SIEVE was evaluated on)",
    )
    demo.add_argument(
        "--fps",
        type=positive_float,
        default=DEFAULT_FPS,
        help=f"camera frame rate of the simulated stream, frames per second (default: {DEFAULT_FPS:g})",
    )
    demo.add_argument(
        "--device-threads",
        type=positive_int,
        default=1,
        help="threads for the edge runs, as on a device answering one frame at a time (default: 1)",
    )
    demo.add_argument(
        "--local",
        choices=LOCAL_MODELS,
        default="speculative",
        help="what the device runs: the speculative model (and its compressed variants), or a minion pair: the "
        "distilled model and a second one, with M&MNet's pair rule (default: speculative)",
    )
    demo.add_argument(
        "--no-compress",
        action="store_true",
        help="run the distilled speculative model as it is; by default its SIEVE custom-float and int8 variants "
        "are derived too and the device runs the one with the least simulated energy on validation",
    )
    demo.add_argument("--no-plots", action="store_true", help="skip confidence.png and costs.png")
    add_training(demo)
    add_common(demo)
    demo.set_defaults(func=_cmd_demo)
