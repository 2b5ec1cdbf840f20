"""``specedge compress``: SIEVE custom-float and int8 speculative variants of a master (thesis 4.4)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from specedge.cli._args import add_common, add_dataset, load_splits, positive_int, say
from specedge.compression.pipeline import METHODS, SIEVE_VARIANTS, CompressedVariant, compress
from specedge.models import load_artifact
from specedge.training import check_fits

__all__ = ["register"]


def _row(variant: CompressedVariant) -> str:
    record = variant.tradeoff
    metrics = record["metrics"]
    return (
        f"{variant.name:<18} bytes {record['bytes_ratio']:6.3f}  traffic {record['traffic_ratio']:6.3f}  "
        f"val {metrics['normalized_val_accuracy']:.4f}  test {metrics['normalized_test_accuracy']:.4f}  "
        f"agree {metrics['test_agreement']:.4f}  {record['backend']:<11} {variant.path}"
    )


def _cmd_compress(args: argparse.Namespace) -> int:
    master = load_artifact(args.master)
    splits = load_splits(args)
    check_fits(master.spec, splits, what=f"master {args.master}")
    variants = SIEVE_VARIANTS if args.variant == "all" else (args.variant,)
    saved = compress(
        master,
        splits,
        method=args.method,
        variants=variants,
        out=args.out,
        progress=not args.quiet,
        threads=args.device_threads,
        log=lambda message: say(args, message),
    )
    print("variant            (ratios to fp32; accuracy normalised to the master's; agreement with the master)")
    for variant in saved:
        print(_row(variant))
    kept = json.loads((saved[0].path / "manifest.json").read_text())["compression"].get("kept_fp32") or []
    if kept:
        listed = ", ".join(f"{k['module']} ({k['type']})" for k in kept)
        print(f"kept fp32 (layer kinds the SIEVE search does not handle): {listed}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``compress``."""
    parser = subparsers.add_parser(
        "compress",
        help="derive SIEVE (custom floats) or int8 speculative variants of a master",
        description="Compress a master without retraining: SIEVE's per-layer custom float formats for weights "
        "and activations (searched on the validation split; thesis 4.4.1) or int8 static quantisation through "
        "ONNX Runtime. Each variant is saved as an artifact with its trade-off record (bytes, memory traffic, "
        "accuracy, agreement, latency) and the edge backend it runs on.",
    )
    parser.add_argument("--master", type=Path, required=True, metavar="DIR", help="the fp32 master's artifact folder")
    add_dataset(parser)
    parser.add_argument("--method", choices=METHODS, default="sieve", help="compression method (default: sieve)")
    parser.add_argument(
        "--variant",
        choices=(*SIEVE_VARIANTS, "all"),
        default="accurate",
        help="SIEVE variant: exact (most accurate formats), accurate (smallest at >= 100%% of the master's "
        "validation accuracy), approximate (>= 99.9%%), or all (default: accurate; ignored for int8)",
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the variants' artifacts")
    parser.add_argument(
        "--device-threads", type=positive_int, default=1, help="threads the edge backend runs on (default: 1)"
    )
    add_common(parser)
    parser.set_defaults(func=_cmd_compress)
