"""``specedge train``, ``specedge distill`` and ``specedge eval``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from specedge.backends import BACKENDS, runner_for
from specedge.cli._args import (
    add_common,
    add_dataset,
    add_options,
    add_training,
    load_splits,
    positive_int,
    say,
    train_config,
)
from specedge.compression import distill
from specedge.compression.tradeoff import tradeoff_table
from specedge.models import list_models, load_artifact
from specedge.training import TrainResult, check_fits, evaluate_logits, save_evaluated, train_new

__all__ = ["register"]


def _say_restarts(args: argparse.Namespace, result: TrainResult) -> None:
    for reason in result.restarts:
        say(args, f"restarted: {reason}")


def _restarted(result: TrainResult) -> str:
    """``, after 1 restart at lr 0.0002``: a recovered run says so in its one-line summary."""
    count = len(result.restarts)
    return f", after {count} restart{'s' if count > 1 else ''} at lr {result.lr:g}" if count else ""


def _cmd_train(args: argparse.Namespace) -> int:
    splits = load_splits(args)
    config = train_config(args)
    say(args, f"training {args.arch} on {splits.name}: {len(splits.train)} train / {len(splits.val)} validation")
    model, result = train_new(
        args.arch,
        splits,
        config,
        arch_options=dict(args.arch_opt),
        show_progress=not args.quiet,
        description=args.arch,
    )
    _say_restarts(args, result)
    out, val, test = save_evaluated(args.out, model, splits, training={"config": config.to_dict(), **result.to_dict()})
    print(
        f"{args.arch} on {splits.name}: validation {val.accuracy:.2%}, test {test.accuracy:.2%} "
        f"(best epoch {result.best_epoch}{_restarted(result)}); saved {out}"
    )
    return 0


def _cmd_distill(args: argparse.Namespace) -> int:
    master = load_artifact(args.master).classifier
    splits = load_splits(args)
    config = train_config(args)
    student, report = distill(
        master,
        splits,
        args.arch,
        config,
        arch_options=dict(args.arch_opt),
        temperature=args.temperature,
        alpha=args.alpha,
        show_progress=not args.quiet,
    )
    _say_restarts(args, report.training)
    out, val, test = save_evaluated(
        args.out, student, splits, training={"config": config.to_dict(), **report.to_dict()}
    )
    print(
        f"speculative {args.arch}: validation {val.accuracy:.2%}, test {test.accuracy:.2%}, "
        f"{report.mac_reduction:.1f}x fewer MACs than the master{_restarted(report.training)}; saved {out}"
    )
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    loaded = load_artifact(args.model)
    splits = load_splits(args)
    spec = loaded.spec
    check_fits(spec, splits, what=f"model {args.model}")
    split = getattr(splits, args.split)
    runner, choice = runner_for(loaded, splits.val.images, prefer=args.backend, threads=args.device_threads)
    result = evaluate_logits(runner.logits(split.images), split.labels, splits.num_classes)
    tradeoff = loaded.manifest.get("tradeoff")
    if args.json:
        per_class = dict(zip(splits.class_names, result.per_class_accuracy.tolist(), strict=True))
        report = {"accuracy": result.accuracy, "items": result.num_items, "per_class": per_class}
        print(json.dumps({**report, "backend": choice.to_dict(), "tradeoff": tradeoff}, indent=2))
        return 0
    print(
        f"{spec.label} ({loaded.encoding}) on {splits.name} {args.split}: "
        f"accuracy {result.accuracy:.2%} ({result.num_items} items) on {runner.backend}: {choice.reason}"
    )
    if tradeoff is not None:
        print(tradeoff_table(tradeoff))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the three subcommands."""
    train = subparsers.add_parser(
        "train",
        help="train a zoo model on a dataset and save an artifact",
        description="Train a classifier with early stopping on the validation split; save weights + manifest.",
    )
    add_dataset(train)
    train.add_argument("--arch", default="lenet5", help=f"architecture: {', '.join(list_models())} (default: lenet5)")
    add_options(train, "--arch-opt", what="architecture", example="width=0.5, alpha=0.25, rho=0.5")
    train.add_argument("--out", type=Path, required=True, metavar="DIR", help="artifact folder to write")
    add_training(train)
    add_common(train)
    train.set_defaults(func=_cmd_train)

    dist = subparsers.add_parser(
        "distill",
        help="derive a small speculative model from a master by knowledge distillation",
        description="Train a smaller architecture to imitate a master artifact (soft targets + labels).",
    )
    dist.add_argument("--master", type=Path, required=True, metavar="DIR", help="the master's artifact folder")
    add_dataset(dist)
    dist.add_argument("--arch", default="lenet5", help="student architecture (default: lenet5)")
    add_options(dist, "--arch-opt", what="student architecture", example="width=0.25")
    dist.add_argument("--temperature", type=float, default=4.0, help="softmax temperature of the soft targets")
    dist.add_argument("--alpha", type=float, default=0.7, help="weight of the soft-target term in [0, 1]")
    dist.add_argument("--out", type=Path, required=True, metavar="DIR", help="artifact folder to write")
    add_training(dist)
    add_common(dist)
    dist.set_defaults(func=_cmd_distill)

    ev = subparsers.add_parser(
        "eval",
        help="accuracy of a saved model on a dataset split",
        description="Evaluate an artifact on the train, validation or test split.",
    )
    ev.add_argument("--model", type=Path, required=True, metavar="DIR", help="artifact folder")
    add_dataset(ev)
    ev.add_argument("--split", choices=("train", "val", "test"), default="test", help="which split (default: test)")
    ev.add_argument("--json", action="store_true", help="print JSON with per-class accuracy")
    ev.add_argument(
        "--backend",
        choices=BACKENDS,
        default="auto",
        help="device backend: auto (onnxruntime where it matches torch on validation and is faster), torch, "
        "onnxruntime (default: auto)",
    )
    ev.add_argument("--device-threads", type=positive_int, default=1, help="threads the backend runs on (default: 1)")
    add_common(ev)
    ev.set_defaults(func=_cmd_eval)
