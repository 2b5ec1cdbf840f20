"""How well the device models predict latency on this machine.

For a zoo of architectures (LeNet-5, the CIFAR ConvNet, MobileNet-V1 with alpha/rho, ResNet-8/20,
at several widths) it measures, with torch eager at batch 1 on one thread, every layer alone and
the whole backbone, in interleaved rounds (medians; the machine is shared). Then:

* the per-layer regression (:class:`specedge.simulator.latency_model.LayerLatencyRegressor`) is
  fitted on some architectures and scored on others it has never seen: leave-one-family-out, and
  a named held-out set of configurations. Reported: per-layer MAPE (overall and per layer kind)
  and whole-model MAPE, against the measured whole model and against the sum of its measured
  layers (the gap between the two is time outside leaf layers: residual adds, containers). A
  gradient-boosted trees model on the same splits is the comparison that justifies the linear form.
* the analytic roofline model with the ``host-x86`` profile is compared with the measured torch eager
  latency of every architecture (every profiled row a call), and, with batch norm and activations
  fused, with anchors.md section 8's ONNX Runtime latencies of four reference models.

    python benchmarks/device_model.py --quick                       # < 5 minutes
    python benchmarks/device_model.py --out benchmarks/results/device_model.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
import torch
from sklearn.ensemble import HistGradientBoostingRegressor

from specedge.models.profiler import LayerProfile, ModelProfile, profile_model
from specedge.models.registry import get_model
from specedge.simulator.device import get_device_profile, model_cost
from specedge.simulator.latency_model import LayerLatencyRegressor, layer_features, layer_kind
from specedge.simulator.measure import measure_layers, measure_module_s


@dataclass(frozen=True)
class Arch:
    """One architecture of the zoo at one configuration."""

    family: str
    name: str
    options: dict[str, Any]
    input_shape: tuple[int, int, int]

    @property
    def label(self) -> str:
        """E.g. ``mobilenet_v1(alpha=0.5,rho=1.0)``."""
        options = ",".join(f"{k}={v}" for k, v in self.options.items())
        return f"{self.name}({options})"


def _zoo(quick: bool) -> list[Arch]:
    lenet = [Arch("lenet", "lenet5", {"width": w}, (1, 28, 28)) for w in (0.25, 0.5, 1.0, 2.0)]
    convnet = [Arch("convnet", "convnet", {"width": w}, (3, 32, 32)) for w in (0.25, 0.5, 1.0, 2.0)]
    mobilenet = [
        Arch("mobilenet", "mobilenet_v1", {"alpha": a, "rho": r}, (3, 32, 32))
        for a in (0.25, 0.5, 0.75, 1.0)
        for r in (1.0, 0.5)
    ]
    resnet = [Arch("resnet", d, {"width": w}, (3, 32, 32)) for d in ("resnet8", "resnet20") for w in (8, 16, 32)]
    if quick:
        return [lenet[0], lenet[2], convnet[1], convnet[2], mobilenet[2], mobilenet[3], resnet[1], resnet[4]]
    return lenet + convnet + mobilenet + resnet


# Named held-out configurations: unseen widths / resolutions of families the regression has seen.
HELD_OUT = {
    "lenet5(width=2.0)",
    "lenet5(width=1.0)",
    "convnet(width=0.5)",
    "mobilenet_v1(alpha=0.75,rho=1.0)",
    "mobilenet_v1(alpha=0.25,rho=0.5)",
    "resnet8(width=32)",
    "resnet20(width=16)",
}

# anchors.md section 8 [V]: batch-1, 1-thread ONNX Runtime latency on this host (us).
ORT_REFERENCE_US = {
    "lenet5(width=1.0)": 66.0,
    "convnet(width=1.0)": 169.0,
    "mobilenet_v1(alpha=0.5,rho=1.0)": 147.0,
    "resnet20(width=16)": 424.0,
}


@dataclass
class Measured:
    """An architecture's profile and its timings, one sample per round."""

    arch: Arch
    profile: ModelProfile
    layer_samples: list[list[float]] = field(default_factory=list)
    whole_samples: list[float] = field(default_factory=list)

    @property
    def layer_s(self) -> np.ndarray:
        """Median latency of each layer row over rounds."""
        return np.median(np.array(self.layer_samples), axis=0)

    @property
    def whole_s(self) -> float:
        """Median latency of the whole backbone over rounds."""
        return statistics.median(self.whole_samples)


def measure_zoo(archs: list[Arch], *, rounds: int, calls: int, repeats: int) -> list[Measured]:
    """Interleaved rounds over all architectures: each round times every layer once and each model."""
    torch.manual_seed(0)
    runs = []
    for arch in archs:
        model = get_model(
            arch.name, num_classes=10, in_channels=arch.input_shape[0], input_size=arch.input_shape[1], **arch.options
        )
        runs.append((model, Measured(arch, profile_model(model, arch.input_shape))))
    for r in range(rounds):
        start = time.perf_counter()
        for model, measured in runs:
            timings = measure_layers(
                model,
                measured.arch.input_shape,
                rounds=1,
                calls_per_round=calls,
                warmup=2 if r else 5,
                profile=measured.profile,
            )
            measured.layer_samples.append([t.latency_s for t in timings])
            measured.whole_samples.append(measure_module_s(model, measured.arch.input_shape, warmup=3, repeats=repeats))
        print(f"  round {r + 1}/{rounds}: {time.perf_counter() - start:.1f} s", flush=True)
    return [measured for _, measured in runs]


# --- scoring --------------------------------------------------------------------------------------


def _ape(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    return np.abs(predicted - actual) / actual


class _TreesBaseline:
    """Gradient-boosted trees on log features and one-hot kinds, fitted on log latency (the comparison)."""

    def fit(self, layers: list[LayerProfile], latency_s: np.ndarray) -> _TreesBaseline:
        self.kinds = sorted({layer_kind(layer) for layer in layers})
        self.model = HistGradientBoostingRegressor(random_state=0).fit(self._x(layers), np.log(latency_s))
        return self

    def _x(self, layers: list[LayerProfile]) -> np.ndarray:
        base = np.log1p(layer_features(layers)[:, 1:])
        geometry = np.array([[(x.kernel or (0,))[0], (x.stride or (0,))[0], x.groups or 0] for x in layers])
        onehot = np.array([[layer_kind(x) == k for k in self.kinds] for x in layers], dtype=float)
        return np.hstack([base, geometry, onehot])

    def predict(self, layers: list[LayerProfile]) -> np.ndarray:
        return np.exp(self.model.predict(self._x(layers)))


def evaluate_split(runs: list[Measured], test: list[bool], make: Any) -> dict[str, Any]:
    """Fit on the runs where ``test`` is False, score on the others."""
    train_layers = [layer for m, t in zip(runs, test, strict=True) if not t for layer in m.profile.layers]
    train_y = np.concatenate([m.layer_s for m, t in zip(runs, test, strict=True) if not t])
    model = make().fit(train_layers, train_y)
    per_kind: dict[str, list[float]] = defaultdict(list)
    layer_errors: list[float] = []
    models = []
    for m, t in zip(runs, test, strict=True):
        if not t:
            continue
        predicted = model.predict(list(m.profile.layers))
        errors = _ape(predicted, m.layer_s)
        layer_errors += errors.tolist()
        for layer, e in zip(m.profile.layers, errors, strict=True):
            per_kind[layer_kind(layer)].append(float(e))
        models.append(
            {
                "arch": m.arch.label,
                "predicted_us": float(predicted.sum() * 1e6),
                "measured_us": m.whole_s * 1e6,
                "sum_of_layers_us": float(m.layer_s.sum() * 1e6),
                "error_vs_measured": float(abs(predicted.sum() - m.whole_s) / m.whole_s),
                "error_vs_sum_of_layers": float(abs(predicted.sum() - m.layer_s.sum()) / m.layer_s.sum()),
            }
        )
    return {
        "per_layer_mape": float(np.mean(layer_errors)),
        "per_layer_mape_by_kind": {k: float(np.mean(v)) for k, v in sorted(per_kind.items())},
        "layers_by_kind": {k: len(v) for k, v in sorted(per_kind.items())},
        "whole_model_mape": float(np.mean([m["error_vs_measured"] for m in models])),
        "whole_model_mape_vs_sum_of_layers": float(np.mean([m["error_vs_sum_of_layers"] for m in models])),
        "models": models,
    }


def _pooled(splits: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-layer MAPE over all the splits' test layers (overall and by kind) and whole-model MAPE."""
    counts: dict[str, int] = defaultdict(int)
    sums: dict[str, float] = defaultdict(float)
    for split in splits:
        for kind, n in split["layers_by_kind"].items():
            counts[kind] += n
            sums[kind] += split["per_layer_mape_by_kind"][kind] * n
    models = [m for split in splits for m in split["models"]]
    return {
        "per_layer_mape": sum(sums.values()) / sum(counts.values()),
        "per_layer_mape_by_kind": {k: sums[k] / counts[k] for k in sorted(counts)},
        "whole_model_mape": float(np.mean([m["error_vs_measured"] for m in models])),
        "whole_model_mape_vs_sum_of_layers": float(np.mean([m["error_vs_sum_of_layers"] for m in models])),
    }


def evaluate_regression(runs: list[Measured], make: Any) -> dict[str, Any]:
    families = sorted({m.arch.family for m in runs})
    lofo = {family: evaluate_split(runs, [m.arch.family == family for m in runs], make) for family in families}
    held = [m.arch.label in HELD_OUT for m in runs]
    return {
        "leave_one_family_out": {**_pooled(list(lofo.values())), "by_family": lofo},
        "named_held_out": evaluate_split(runs, held, make) if any(held) and not all(held) else None,
    }


def evaluate_analytic(runs: list[Measured]) -> dict[str, Any]:
    """Roofline predictions on host-x86: per row against torch eager, fused against anchors' ONNX Runtime."""
    host = get_device_profile("host-x86")
    rows = []
    for m in runs:
        per_row_s = model_cost(m.profile, host).time_s
        fused_s = model_cost(m.profile, host, fuse_elementwise=True).time_s
        row = {
            "arch": m.arch.label,
            "macs": m.profile.total_macs,
            "predicted_us": per_row_s * 1e6,
            "measured_us": m.whole_s * 1e6,
            "error": abs(per_row_s - m.whole_s) / m.whole_s,
            "ratio_measured_to_predicted": m.whole_s / per_row_s,
            "predicted_fused_us": fused_s * 1e6,
        }
        if m.arch.label in ORT_REFERENCE_US:
            ort_s = ORT_REFERENCE_US[m.arch.label] / 1e6
            row["ort_reference_us"] = ORT_REFERENCE_US[m.arch.label]
            row["fused_error_vs_ort_reference"] = abs(fused_s - ort_s) / ort_s
        rows.append(row)
    ort = [r["fused_error_vs_ort_reference"] for r in rows if "fused_error_vs_ort_reference" in r]
    return {
        "device": host.name,
        "mape_vs_torch_eager": float(np.mean([r["error"] for r in rows])),
        "median_ratio_measured_to_predicted": float(np.median([r["ratio_measured_to_predicted"] for r in rows])),
        "fused_mape_vs_ort_reference": float(np.mean(ort)) if ort else None,
        "models": rows,
    }


# --- output ----------------------------------------------------------------------------------------


def _print_summary(result: dict[str, Any]) -> None:
    print("\nper-layer latency regression, held-out architectures (MAPE, fractions)")
    print(f"  {'split':<28} {'model':<8} {'per-layer':>10} {'whole model':>12} {'vs layer sum':>13}")
    for name, key in (("linear (chosen)", "regression"), ("trees", "trees_baseline")):
        lofo = result[key]["leave_one_family_out"]
        print(
            f"  {'leave-one-family-out':<28} {name.split()[0]:<8} {lofo['per_layer_mape']:>10.3f} "
            f"{lofo['whole_model_mape']:>12.3f} {lofo['whole_model_mape_vs_sum_of_layers']:>13.3f}"
        )
        held = result[key]["named_held_out"]
        if held:
            print(
                f"  {'named held-out configs':<28} {name.split()[0]:<8} {held['per_layer_mape']:>10.3f} "
                f"{held['whole_model_mape']:>12.3f} {held['whole_model_mape_vs_sum_of_layers']:>13.3f}"
            )
    held = result["regression"]["named_held_out"]
    if held:
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in held["per_layer_mape_by_kind"].items())
        print(f"  per kind (named held-out, linear): {kinds}")
    analytic = result["analytic_host_x86"]
    print("\nanalytic roofline model, host-x86 profile, against measured torch eager latency")
    print(
        f"  {'architecture':<36} {'MACs':>11} {'predicted us':>13} {'measured us':>12} {'error':>7} "
        f"{'fused us':>9} {'ORT us':>7}"
    )
    for row in analytic["models"]:
        ort = f"{row['ort_reference_us']:>7.0f}" if "ort_reference_us" in row else ""
        print(
            f"  {row['arch']:<36} {row['macs']:>11,} {row['predicted_us']:>13.1f} {row['measured_us']:>12.1f} "
            f"{row['error']:>7.3f} {row['predicted_fused_us']:>9.1f} {ort}"
        )
    print(
        f"  MAPE vs torch eager {analytic['mape_vs_torch_eager']:.3f} (measured / predicted median "
        f"{analytic['median_ratio_measured_to_predicted']:.2f}x)"
        + (
            f"; fused vs anchors' ONNX Runtime MAPE {analytic['fused_mape_vs_ort_reference']:.3f}"
            if analytic["fused_mape_vs_ort_reference"] is not None
            else ""
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 architectures and 3 rounds (same code path)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/device_model.json"))
    args = parser.parse_args()

    archs = _zoo(args.quick)
    rounds, calls, repeats = (3, 10, 20) if args.quick else (9, 20, 40)
    print(f"measuring {len(archs)} architectures, {rounds} interleaved rounds (torch eager, batch 1, 1 thread)")
    started = time.perf_counter()
    runs = measure_zoo(archs, rounds=rounds, calls=calls, repeats=repeats)
    final = LayerLatencyRegressor().fit(
        [layer for m in runs for layer in m.profile.layers], np.concatenate([m.layer_s for m in runs])
    )
    result = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "config": {
            "quick": args.quick,
            "architectures": len(archs),
            "rounds": rounds,
            "calls_per_round": calls,
            "whole_model_repeats": repeats,
            "held_out": sorted(HELD_OUT),
        },
        "machine": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "sklearn": sklearn.__version__,
            "cpu": platform.processor() or platform.machine(),
        },
        "regression": evaluate_regression(runs, LayerLatencyRegressor),
        "trees_baseline": evaluate_regression(runs, _TreesBaseline),
        "analytic_host_x86": evaluate_analytic(runs),
        "measured": [
            {
                "arch": m.arch.label,
                "family": m.arch.family,
                "macs": m.profile.total_macs,
                "whole_us": m.whole_s * 1e6,
                "sum_of_layers_us": float(m.layer_s.sum() * 1e6),
            }
            for m in runs
        ],
        "regressor_fitted_on_all": final.to_dict(),
        "seconds": time.perf_counter() - started,
    }
    _print_summary(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
