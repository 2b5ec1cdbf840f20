"""``specedge calibrate``: fit misspeculation detectors for a speculative model (or pair) and a master.

Runs both models on the validation split (calibration) and the test split (judgement), fits one
detector per policy and target, prints what each does on test, and writes the detectors with
their report as one JSON file that ``specedge demo --detector`` and the edge runtime read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from specedge.cli._args import add_common, add_dataset, default_cache_dir, default_data_root, fraction
from specedge.cli._models import load_for, model_outputs
from specedge.data import load_dataset
from specedge.detector import POLICIES, QUALITIES, SCORES, TemperatureScaler
from specedge.detector.bank import write_detectors
from specedge.detector.plots import plot_outcomes, plot_tradeoff
from specedge.detector.report import Calibration, calibrate_grid, tradeoff_curve
from specedge.errors import ConfigError

__all__ = ["format_calibration", "register"]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def format_calibration(results: list[Calibration]) -> str:
    """The table ``specedge calibrate`` prints: one row per policy and target."""
    lines = [
        f"  {'policy':<20} {'target':>6} {'escalated':>9} {'FN':>7} {'FP':>7} {'system':>8} {'(95% interval)':>17} "
        f"{'master':>8} {'ratio':>7}  guarantee"
    ]
    for r in results:
        if r.evaluation is None or r.detector is None:
            lines.append(f"  {r.policy:<20} {r.target:>6g}  {r.error or 'not evaluated'}")
            continue
        e = r.evaluation
        low, high = e.system_accuracy_interval
        guarantee = f"delta {r.detector.delta:g}" if r.detector.certified else "none (fitted to validation)"
        lines.append(
            f"  {r.policy:<20} {r.target:>6g} {_pct(e.escalation_rate):>9} {_pct(e.false_negative_rate):>7} "
            f"{_pct(e.false_positive_rate):>7} {_pct(e.system_accuracy):>8} "
            f"{f'({_pct(low)} - {_pct(high)})':>17} {_pct(e.master_accuracy):>8} {e.accuracy_ratio:>7.4f}  {guarantee}"
        )
    return "\n".join(lines)


def _cmd_calibrate(args: argparse.Namespace) -> int:
    if len(args.speculative) > 2:
        raise ConfigError(
            f"--speculative takes one model, or two minions for the pair policy; got {len(args.speculative)}"
        )
    pair = len(args.speculative) == 2
    policies = args.policy or (["pair"] if pair else ["threshold"])
    if pair != all(p == "pair" for p in policies):
        raise ConfigError("the pair policy takes exactly two --speculative minions, and the others exactly one")
    splits = load_dataset(
        args.dataset,
        data_root=args.data_root or default_data_root(),
        cache_dir=args.cache_dir or default_cache_dir(),
        show_progress=not args.quiet,
    )
    master = load_for(args.master, splits, role="master")
    speculative = [load_for(path, splits, role="speculative model") for path in args.speculative]
    validation = model_outputs(speculative, master, splits.val)
    test = model_outputs(speculative, master, splits.test)
    results = calibrate_grid(
        validation,
        test,
        policies=policies,
        targets=args.target or [1.0 if args.quality == "accuracy" else 0.99],
        score=args.score,
        quality=args.quality,
        delta=None if args.no_guarantee else args.delta,
        temperature=args.temperature,
        learn_fraction=args.learn_fraction,
    )
    fitted = [r.detector for r in results if r.detector is not None]
    first_logits = validation.speculative_logits[:, 0] if pair else validation.speculative_logits
    targets = (
        validation.labels
        if args.quality == "accuracy" and validation.labels is not None
        else validation.master_predictions
    )
    scaler = TemperatureScaler().fit(first_logits, targets)
    print(
        f"calibration on {splits.name}: {len(validation):,} validation inputs; judged on {len(test):,} test inputs\n"
        f"temperature {scaler.temperature_:.3f}: ECE (15 bins) {scaler.ece_before_:.4f} -> {scaler.ece_after_:.4f}\n"
        + format_calibration(results)
    )
    if not fitted:
        raise ConfigError("no policy and target could be calibrated (see the table above)")
    calibration = {
        "dataset": splits.describe(),
        "master": str(args.master),
        "speculative": [str(p) for p in args.speculative],
        "temperature": {"value": scaler.temperature_, "ece_before": scaler.ece_before_, "ece_after": scaler.ece_after_},
        "results": [r.to_dict() for r in results],
    }
    write_detectors(args.out, fitted, calibration=calibration)
    if not args.no_plots:
        stem = args.out.with_suffix("")
        for r in results:
            if r.detector is not None:
                plot_outcomes(r.detector, Path(f"{stem}-outcomes-{r.policy}-{r.target:g}.png"))
        first_of_policy = {r.policy: r.detector for r in reversed(results) if r.detector is not None}
        curves = {policy: tradeoff_curve(detector, test) for policy, detector in first_of_policy.items()}
        points = {
            f"{r.policy} @ {r.target:g}": (r.evaluation.escalation_rate, r.evaluation.system_accuracy)
            for r in results
            if r.evaluation is not None
        }
        master_accuracy = float((test.master_predictions == test.labels).mean())
        plot_tradeoff(curves, master_accuracy, Path(f"{stem}-tradeoff.png"), points=points)
    print(f"detectors: {args.out}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    cal = subparsers.add_parser(
        "calibrate",
        help="fit misspeculation detectors (with a statistical guarantee) for a speculative model and a master",
        description="Fit one detector per policy and target on the validation split, judge each on the test split "
        "and write them as JSON. With --delta (the default) each threshold carries a Learn-then-Test guarantee: "
        "with probability >= 1 - delta over the calibration draw, the target holds on inputs exchangeable with "
        "the calibration data (same distribution; drift breaks it, and the runtime's audit watches for that).",
    )
    cal.add_argument(
        "--speculative",
        type=Path,
        action="append",
        required=True,
        metavar="DIR",
        help="speculative model artifact; give two for a minion pair (policy 'pair')",
    )
    cal.add_argument("--master", type=Path, required=True, metavar="DIR", help="master model artifact")
    add_dataset(cal)
    cal.add_argument(
        "--policy",
        action="append",
        choices=POLICIES,
        help="escalation policy (repeatable; default: threshold, or pair for two minions)",
    )
    cal.add_argument(
        "--target",
        type=float,
        action="append",
        metavar="T",
        help="target (repeatable): for accuracy the fraction of the master's accuracy to keep (default 1.0), for "
        "agreement the fraction of answers equal to the master's (default 0.99)",
    )
    cal.add_argument(
        "--quality",
        choices=QUALITIES,
        default="accuracy",
        help="what the target is about: accuracy (needs labels) or agreement with the master (label-free)",
    )
    cal.add_argument(
        "--delta", type=fraction, default=0.05, help="failure probability of the guarantee (default: 0.05)"
    )
    cal.add_argument(
        "--no-guarantee", action="store_true", help="fit thresholds to validation only (the seeds' method)"
    )
    cal.add_argument(
        "--score", choices=tuple(SCORES), default="max_softmax", help="confidence score (default: max_softmax)"
    )
    cal.add_argument("--temperature", action="store_true", help="temperature-scale the logits before scoring")
    cal.add_argument(
        "--learn-fraction",
        type=fraction,
        default=0.5,
        help="share of validation that fits a certified policy's learned parts (default: 0.5)",
    )
    cal.add_argument("--out", type=Path, required=True, metavar="FILE", help="JSON file for the detectors and report")
    cal.add_argument("--no-plots", action="store_true", help="skip the outcome and trade-off plots beside FILE")
    add_common(cal)
    cal.set_defaults(func=_cmd_calibrate)
