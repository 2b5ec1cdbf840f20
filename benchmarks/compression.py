"""SIEVE and int8 speculative variants: bytes, memory traffic, accuracy, and the edge backends' speed.

For LeNet-5 on MNIST and the ConvNet on CIFAR-10 (JPEG), the cached benchmark masters
(``_trained.py``) are compressed by ``specedge.compression.compress``: SIEVE's three variants
(search on validation, thesis 4.4.1) and int8 (ONNX Runtime static quantisation). One row per
(model, variant): ``bytes_ratio`` and ``traffic_ratio`` (to fp32), ``normalized_test_accuracy``
(to the master's), ``search_s``. Per model, batch-1 and batch-64 latencies of torch eager, ONNX
Runtime fp32 and ONNX Runtime int8, measured side by side in interleaved rounds on one thread:
``int8_speedup_b1``, ``int8_speedup_b64`` (int8 vs the fp32 ONNX Runtime model), ``backend_speedup_b1``
(ONNX Runtime vs torch eager, fp32) and ``floor_ratio_b1`` (the fp32 fast backend's batch-1 latency /
(2 x MACs / 250 GFLOPS), this host's fp32 peak in anchors.md section 8). ResNet-20 and MobileNet-V1 on CIFAR-10
are timed too (weights untrained: latency does not depend on them; seed 001's calibration).

    python benchmarks/compression.py --quick       # same code path on small models and data
    python benchmarks/compression.py --out FILE.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _trained import CACHE, DATA_ROOT, prepare

from specedge.backends import OnnxRunner, TorchRunner, export_onnx
from specedge.backends.runners import ModelRunner
from specedge.compression.int8 import quantize_int8
from specedge.compression.pipeline import SIEVE_VARIANTS, compress
from specedge.data import DatasetSplits, load_dataset
from specedge.models import ImageClassifier, build_classifier, load_artifact
from specedge.models.profiler import profile_classifier

PEAK_FLOPS = 250e9  # anchors.md section 8: this host's single-thread fp32 GEMM peak
TIMED_ONLY = {"resnet20": {}, "mobilenet_v1": {"alpha": 0.5}}


def _subset(splits: DatasetSplits, count: int) -> DatasetSplits:
    rng = np.random.default_rng(0)

    def take(split: Any) -> Any:
        return split.subset(np.sort(rng.permutation(len(split))[: min(count, len(split))]))

    return dataclasses.replace(splits, val=take(splits.val), test=take(splits.test))


def _median_us(runner: ModelRunner, batch: np.ndarray, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        runner.logits(batch)
        times.append((time.perf_counter_ns() - start) / 1e3)
    return statistics.median(times)


def _timings(classifier: ImageClassifier, images: np.ndarray, *, rounds: int, quick: bool) -> dict[str, Any]:
    """Median batch-1 and batch-64 latency (us) per runner, in shuffled interleaved rounds."""
    runners: dict[str, ModelRunner] = {
        "torch": TorchRunner(classifier, threads=1),
        "onnxruntime": OnnxRunner(export_onnx(classifier, images[:8]), threads=1),
        "onnxruntime_int8": OnnxRunner(quantize_int8(classifier, images[:256]), threads=1),
    }
    batches = {"b1": images[:1], "b64": images[:64]}
    repeats = {"b1": 20 if quick else 100, "b64": 2 if quick else 10}
    samples: dict[str, dict[str, list[float]]] = {b: {r: [] for r in runners} for b in batches}
    for runner in runners.values():  # warm-up
        runner.logits(batches["b64"])
    order = list(runners)
    for _ in range(rounds):
        random.shuffle(order)
        for name in order:
            for b, batch in batches.items():
                samples[b][name].append(_median_us(runners[name], batch, repeats[b]))
    latency = {b: {r: statistics.median(v) for r, v in per.items()} for b, per in samples.items()}

    def ratio(b: str, slow: str, fast: str) -> float:  # median of per-round ratios: noise hits both alike
        return statistics.median(s / f for s, f in zip(samples[b][slow], samples[b][fast], strict=True))

    macs = profile_classifier(classifier).total_macs
    return {
        "macs": macs,
        "latency_us": latency,
        "int8_speedup_b1": ratio("b1", "onnxruntime", "onnxruntime_int8"),
        "int8_speedup_b64": ratio("b64", "onnxruntime", "onnxruntime_int8"),
        "backend_speedup_b1": ratio("b1", "torch", "onnxruntime"),
        "floor_ratio_b1": latency["b1"]["onnxruntime"] / (2 * macs / PEAK_FLOPS * 1e6),
    }


def _compress_rows(name: str, trained: Any, splits: DatasetSplits, out: Path) -> list[dict[str, Any]]:
    master = load_artifact(trained.master)
    rows = []
    started = time.perf_counter()
    variants = compress(master, splits, method="sieve", variants=SIEVE_VARIANTS, out=out, progress=True)
    sieve_s = time.perf_counter() - started
    started = time.perf_counter()
    variants += compress(master, splits, method="int8", out=out)
    int8_s = time.perf_counter() - started
    for variant in variants:
        record, metrics = variant.tradeoff, variant.tradeoff["metrics"]
        compression = json.loads((variant.path / "manifest.json").read_text())["compression"]
        rows.append(
            {
                "model": f"{name}/{master.spec.label}",
                "variant": variant.name,
                "bytes_ratio": record["bytes_ratio"],
                "traffic_ratio": record["traffic_ratio"],
                "normalized_val_accuracy": metrics["normalized_val_accuracy"],
                "normalized_test_accuracy": metrics["normalized_test_accuracy"],
                "test_agreement": metrics["test_agreement"],
                "search_s": compression.get("search_s", int8_s),
                "compress_s": sieve_s if variant.name.startswith("sieve") else int8_s,
                "backend": record["backend"],
                "weight_bits": [layer["weight_bits"] for layer in record["layers"]],
                "activation_bits": [layer["activation_bits"] for layer in record["layers"]],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small models and data (same code path)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "compression.json")
    parser.add_argument("--datasets", default="mnist,cifar10", help="comma-separated setups (default: mnist,cifar10)")
    args = parser.parse_args()
    started = time.time()
    torch.set_num_threads(1)
    random.seed(0)
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/compression.py", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": platform.platform(),
        "peak_flops": PEAK_FLOPS,
        "rows": [],
        "models": [],
    }
    rounds = 3 if args.quick else 7
    cifar: DatasetSplits | None = None
    for name in args.datasets.split(","):
        trained = prepare(name, quick=args.quick, log=lambda m: print(m, file=sys.stderr))
        torch.set_num_threads(1)
        splits = _subset(trained.splits, 500) if args.quick else trained.splits
        out = CACHE / ("compressed-quick" if args.quick else "compressed") / name
        shutil.rmtree(out, ignore_errors=True)
        report["rows"] += _compress_rows(name, trained, splits, out)
        master = load_artifact(trained.master).classifier
        report["models"].append(
            {
                "model": f"{name}/{master.spec.label}",
                **_timings(master, splits.val.images, rounds=rounds, quick=args.quick),
            }
        )
        if name == "cifar10":
            cifar = splits
    if cifar is None:
        cifar = _subset(load_dataset("cifar10-jpeg", data_root=DATA_ROOT, cache_dir=CACHE / "data-cache"), 500)
    for arch, options in TIMED_ONLY.items():
        torch.manual_seed(0)
        model = build_classifier(arch, num_classes=10, image_shape=cifar.image_shape, **options).eval()
        label = f"cifar10/{model.spec.label} (untrained, timing only)"
        report["models"].append({"model": label, **_timings(model, cifar.val.images, rounds=rounds, quick=args.quick)})
    report["seconds"] = time.time() - started

    print(f"{'model':<28} {'variant':<18} {'bytes':>6} {'traffic':>7} {'val':>7} {'test':>7} {'agree':>7} "
          f"{'search s':>8} backend")  # fmt: skip
    for r in report["rows"]:
        print(
            f"{r['model']:<28} {r['variant']:<18} {r['bytes_ratio']:6.3f} {r['traffic_ratio']:7.3f} "
            f"{r['normalized_val_accuracy']:7.4f} {r['normalized_test_accuracy']:7.4f} {r['test_agreement']:7.4f} "
            f"{r['search_s']:8.1f} {r['backend']}"
        )
    print(f"\n{'model':<48} {'MACs':>11} {'torch b1':>9} {'ort b1':>8} {'int8 b1':>8} {'int8x b1':>8} "
          f"{'int8x b64':>9} {'ort/torch':>9} {'floor':>6}")  # fmt: skip
    for m in report["models"]:
        b1 = m["latency_us"]["b1"]
        print(
            f"{m['model']:<48} {m['macs']:>11,} {b1['torch']:9.0f} {b1['onnxruntime']:8.0f} "
            f"{b1['onnxruntime_int8']:8.0f} {m['int8_speedup_b1']:8.2f} {m['int8_speedup_b64']:9.2f} "
            f"{m['backend_speedup_b1']:9.2f} {m['floor_ratio_b1']:6.2f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
