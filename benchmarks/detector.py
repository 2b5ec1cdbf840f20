"""Misspeculation detector: every policy and target on MNIST and CIFAR-10 (JPEG), judged on test.

For each dataset (LeNet-5 master + distilled LeNet-5 at quarter width on MNIST; Caffe ConvNet
master + distilled half-width ConvNet on CIFAR-10 (JPEG); a second distilled minion with another
seed for the pair rule) it fits, on the validation split, one detector per policy, target and
guarantee (none = the threshold meets the target on validation, as SIEVE and Dynamic Duo do;
ltt = Learn-then-Test at delta 0.05) and reports on the test split: escalation rate, false
negatives (correctable inputs kept), false positives (odd-correct inputs escalated), system and
master accuracy and the bound it certifies. Then:

- escalation at equal accuracy: each policy fitted over a sweep of targets, and the cheapest one
  whose test accuracy reaches a level; and, along each policy's accuracy-vs-recomputation curve
  on test (its offsets learned at 100% on validation), the least escalation reaching it;
- the guarantee on real outputs: validation and test outputs pooled and re-split at random into
  calibration and evaluation halves (200 times), counting how often a certified detector misses
  its target on the evaluation half, against how often a fitted one does; as the evaluation half
  is itself a sample, misses beyond its sampling error are counted too (at most delta + 5% of
  the draws when the guarantee holds).

    python benchmarks/detector.py                 # full run (trains and caches models on first use)
    python benchmarks/detector.py --quick         # same code path on small models, a few minutes
    python benchmarks/detector.py --out FILE.json
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
from _trained import prepare

from specedge.detector import MisspeculationDetector, ModelOutputs, TemperatureScaler
from specedge.detector.report import calibrate_grid, evaluate_detector, tradeoff_curve

POLICIES = ("threshold", "per-class-heuristic", "per-class-optimal", "pair")
TARGETS = (1.0, 0.99)
DELTA = 0.05


def _rows(dataset: str, validation: dict[str, ModelOutputs], test: dict[str, ModelOutputs]) -> list[dict[str, Any]]:
    rows = []
    for policy in POLICIES:
        kind = "pair" if policy == "pair" else "single"
        for guarantee, delta in (("none", None), ("ltt", DELTA)):
            for quality, targets in (("accuracy", TARGETS), ("agreement", (0.995,))):
                for result in calibrate_grid(
                    validation[kind], test[kind], policies=[policy], targets=targets, quality=quality, delta=delta
                ):
                    row: dict[str, Any] = {
                        "dataset": dataset,
                        "policy": policy,
                        "quality": quality,
                        "target": result.target,
                        "guarantee": guarantee,
                        "delta": delta,
                        "certified_bound": result.detector.describe() if result.detector and delta else None,
                        "error": result.error,
                    }
                    if result.evaluation is not None:
                        e = result.evaluation
                        row |= {
                            "escalation_rate": e.escalation_rate,
                            "false_negative_rate": e.false_negative_rate,
                            "false_positive_rate": e.false_positive_rate,
                            "system_accuracy": e.system_accuracy,
                            "master_accuracy": e.master_accuracy,
                            "speculative_accuracy": e.speculative_accuracy,
                            "accuracy_ratio": e.accuracy_ratio,
                            "agreement": e.agreement,
                        }
                    rows.append(row)
    return rows


def _equal_accuracy(
    dataset: str, validation: dict[str, ModelOutputs], test: dict[str, ModelOutputs], sweep: np.ndarray
) -> list[dict[str, Any]]:
    """Test escalation of each policy at the same test accuracy (interpolated over a sweep of targets)."""
    single = test["single"]
    assert single.labels is not None
    master = float((single.master_predictions == single.labels).mean())
    levels = {"master": master, "0.999 x master": 0.999 * master}
    rows = []
    for policy in ("threshold", "per-class-heuristic", "per-class-optimal"):
        points = []
        for target in sweep:
            detector = MisspeculationDetector(policy=policy, target=float(target), delta=None)
            v = validation["single"]
            try:
                detector.fit(v.speculative_logits, v.master_predictions, v.labels)
            except ValueError:
                continue
            e = evaluate_detector(detector, single)
            points.append((e.system_accuracy, e.escalation_rate))
        points.sort()
        accuracy, escalation = np.array(points).T
        # The policy's family (offsets learned at 100% on validation), its threshold swept over the test split.
        family = MisspeculationDetector(policy=policy, target=1.0, delta=None)
        v = validation["single"]
        family.fit(v.speculative_logits, v.master_predictions, v.labels)
        curve_escalation, curve_accuracy = tradeoff_curve(family, single)
        for name, level in levels.items():
            reach = np.flatnonzero(accuracy >= level - 1e-12)
            on_curve = np.flatnonzero(curve_accuracy >= level - 1e-12)
            rows.append(
                {
                    "dataset": dataset,
                    "policy": policy,
                    "accuracy_level": name,
                    "accuracy": level,
                    # The cheapest fitted operating point whose test accuracy reaches the level.
                    "escalation_rate": float(escalation[reach].min()) if reach.size else None,
                    # The least escalation along the family's curve on test that reaches it (same oracle for all).
                    "curve_escalation_rate": float(curve_escalation[on_curve[0]]) if on_curve.size else None,
                }
            )
    return rows


def _pool(a: ModelOutputs, b: ModelOutputs) -> ModelOutputs:
    assert a.labels is not None and b.labels is not None
    return ModelOutputs(
        np.concatenate([a.speculative_logits, b.speculative_logits]),
        np.concatenate([a.master_predictions, b.master_predictions]),
        np.concatenate([a.labels, b.labels]),
    )


def _significantly_below(detector: MisspeculationDetector, evaluation: ModelOutputs, config: dict[str, Any]) -> bool:
    """Whether the evaluation half shows the target missed beyond its own sampling error (one-sided z < -1.645).

    The evaluation half is a sample too: a detector exactly on target looks below it half of the
    time. Per input, Z = [answer right] - target x [master right] (accuracy) or [answer agrees] -
    target (agreement) has mean >= 0 when the target holds; a miss is significant when the mean
    of Z is more than 1.645 standard errors below 0. If the guarantee holds, such misses happen in
    at most delta + 5% of the draws.
    """
    assert evaluation.labels is not None
    decisions = detector.decide(evaluation.speculative_logits)
    final = np.where(decisions.escalate, evaluation.master_predictions, decisions.predictions)
    if config["quality"] == "accuracy":
        z = (final == evaluation.labels) - config["target"] * (evaluation.master_predictions == evaluation.labels)
    else:
        z = (final == evaluation.master_predictions) - config["target"]
    se = float(z.std(ddof=1)) / np.sqrt(len(z))
    return bool(z.mean() < -1.645 * se)


def _guarantee_check(
    dataset: str, pooled: ModelOutputs, draws: int, configs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Share of random calibration/evaluation splits whose evaluation half misses the target."""
    rng = np.random.default_rng(0)
    n = len(pooled)
    rows = []
    for config in configs:
        misses = {"ltt": 0, "none": 0}
        significant = {"ltt": 0, "none": 0}
        fitted = {"ltt": 0, "none": 0}
        escalation: dict[str, list[float]] = {"ltt": [], "none": []}
        for draw in range(draws):
            order = rng.permutation(n)
            calibration, evaluation = pooled.subset(order[: n // 2]), pooled.subset(order[n // 2 :])
            for guarantee, delta in (("ltt", DELTA), ("none", None)):
                detector = MisspeculationDetector(**config, delta=delta, random_state=draw)
                try:
                    detector.fit(calibration.speculative_logits, calibration.master_predictions, calibration.labels)
                except ValueError:
                    continue
                fitted[guarantee] += 1
                e = evaluate_detector(detector, evaluation)
                quality = e.accuracy_ratio if config["quality"] == "accuracy" else e.agreement
                misses[guarantee] += quality < config["target"]
                significant[guarantee] += _significantly_below(detector, evaluation, config)
                escalation[guarantee].append(e.escalation_rate)
        for guarantee in ("ltt", "none"):
            rows.append(
                {
                    "dataset": dataset,
                    **config,
                    "guarantee": guarantee,
                    "delta": DELTA if guarantee == "ltt" else None,
                    "draws": draws,
                    "fitted": fitted[guarantee],
                    "miss_rate": misses[guarantee] / fitted[guarantee] if fitted[guarantee] else None,
                    "significant_miss_rate": significant[guarantee] / fitted[guarantee] if fitted[guarantee] else None,
                    # 3 binomial standard deviations of the miss share estimated from `draws` draws at delta.
                    "tolerance": 3 * float(np.sqrt(DELTA * (1 - DELTA) / draws)),
                    "mean_escalation_rate": float(np.mean(escalation[guarantee])) if escalation[guarantee] else None,
                }
            )
    return rows


def _pct(x: float | None) -> str:
    return "      -" if x is None else f"{100 * x:6.2f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small models, fewer re-splits (same code path)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "detector.json")
    parser.add_argument("--datasets", default="mnist,cifar10", help="comma-separated setups (default: mnist,cifar10)")
    args = parser.parse_args()
    started = time.time()
    report: dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "quick": args.quick,
        "machine": platform.platform(),
        "rows": [],
        "equal_accuracy": [],
        "guarantee_check": [],
        "temperature": [],
    }
    draws = 20 if args.quick else 200
    sweep = np.linspace(0.99, 1.0, 6 if args.quick else 41)
    for name in args.datasets.split(","):
        trained = prepare(name, quick=args.quick, log=lambda m: print(m, file=sys.stderr))
        dataset = trained.splits.name
        validation = {"single": trained.outputs("val"), "pair": trained.outputs("val", pair=True)}
        test = {"single": trained.outputs("test"), "pair": trained.outputs("test", pair=True)}
        v = validation["single"]
        assert v.labels is not None
        scaler = TemperatureScaler().fit(v.speculative_logits, v.labels)
        report["temperature"].append(
            {
                "dataset": dataset,
                "temperature": scaler.temperature_,
                "ece_before": scaler.ece_before_,
                "ece_after": scaler.ece_after_,
            }
        )
        report["rows"] += _rows(dataset, validation, test)
        report["equal_accuracy"] += _equal_accuracy(dataset, validation, test, sweep)
        configs = [
            {"policy": "threshold", "quality": "agreement", "target": 0.995},
            {"policy": "threshold", "quality": "accuracy", "target": 0.999 if name == "mnist" else 0.99},
        ]
        report["guarantee_check"] += _guarantee_check(
            dataset, _pool(validation["single"], test["single"]), draws, configs
        )
    report["seconds"] = time.time() - started

    print(f"{'dataset':<16} {'policy':<20} {'quality':<9} {'target':>6} {'guar.':<5} {'escal.':>7} {'FN':>7} {'FP':>7} "
          f"{'system':>7} {'master':>7}  note")  # fmt: skip
    for r in report["rows"]:
        note = "" if r["error"] is None else r["error"].split(": ", 1)[-1][:70]
        rates = " ".join(
            _pct(r.get(key))
            for key in (
                "escalation_rate",
                "false_negative_rate",
                "false_positive_rate",
                "system_accuracy",
                "master_accuracy",
            )
        )
        head = f"{r['dataset']:<16} {r['policy']:<20} {r['quality']:<9} {r['target']:>6g} {r['guarantee']:<5}"
        print(f"{head} {rates}  {note}")
    print("\nescalation at equal test accuracy (cheapest fitted operating point that reaches it; along the curve):")
    for r in report["equal_accuracy"]:
        print(
            f"  {r['dataset']:<16} {r['policy']:<20} {r['accuracy_level']:<15} {_pct(r['escalation_rate'])} "
            f"{_pct(r['curve_escalation_rate'])}"
        )
    print("\nguarantee on real outputs (pooled validation + test, random halves):")
    for r in report["guarantee_check"]:
        print(
            f"  {r['dataset']:<16} {r['quality']:<9} {r['target']:>6g} {r['guarantee']:<5} misses "
            f"{_pct(r['miss_rate'])} of {r['fitted']} draws, beyond the evaluation half's sampling error "
            f"{_pct(r['significant_miss_rate'])} (delta {DELTA}); mean escalation {_pct(r['mean_escalation_rate'])}"
        )
    for r in report["temperature"]:
        print(
            f"temperature {r['dataset']}: T {r['temperature']:.3f}, ECE {r['ece_before']:.4f} -> {r['ece_after']:.4f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
