"""Minion pools (M&MNet, thesis 5.3): small models from a master's family, timed before training, trained two ways.

Candidates scale the master's architecture by a width multiplier alpha (thesis 5.3.1) and a
resolution multiplier rho (input down-sampling, 5.3.2). Each candidate's batch-1 latency is
calibrated on the device backend *before* training (an untrained network times the same as a
trained one: seed 001's hardware calibration), and only candidates faster than offloading one
input to the cloud over the fastest configured link are trained (thesis 5.3.3): a minion slower
than the network can never pay. Kept candidates are trained from labels and distilled from the
master, and both are reported. The pool lives in a folder (``pool.json`` plus one artifact per
trained model) and is resumable: a model whose artifact exists is not trained again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from specedge.backends import OnnxRunner, export_onnx, measure_latency_us, runner_for
from specedge.compression.distillation import distill
from specedge.data import DatasetSplits
from specedge.errors import ConfigError
from specedge.models import ImageClassifier, build_classifier, load_artifact, model_entry
from specedge.models.profiler import profile_classifier
from specedge.pairing import MasterReference, PoolMember, offload_cost
from specedge.simulator import get_link_profile
from specedge.simulator.wire import infer_message_sizes
from specedge.simulator.workloads import local_cost
from specedge.training import TrainConfig, TrainingError, check_fits, save_evaluated, train_new

__all__ = [
    "DEFAULT_ALPHAS",
    "DEFAULT_RHOS",
    "METHODS",
    "POOL_FILE",
    "Candidate",
    "PoolEntry",
    "build_pool",
    "link_offload_costs",
    "master_reference",
    "offload_latency_s",
    "pool_member",
    "read_pool",
]

DEFAULT_ALPHAS = (0.25, 0.5, 0.75, 1.0)
DEFAULT_RHOS = (1.0, 0.75, 0.5)
METHODS = ("labels", "distilled")
POOL_FILE = "pool.json"
_FORMAT = "specedge-pool"
_LATENCY_REPEATS = 100


@dataclass(frozen=True)
class Candidate:
    """One point of the family: its options, input size, cost and calibrated latency."""

    name: str  # e.g. "lenet5-a0.5-r0.75"
    architecture: str
    alpha: float
    rho: float
    arch_options: dict[str, Any]
    input_size: int
    macs: int
    params: int
    latency_s: float  # batch-1, device backend, untrained weights


@dataclass(frozen=True)
class PoolEntry:
    """A trained pool member: a candidate, how it was trained, where it is and how good it is."""

    candidate: Candidate
    method: str  # "labels" or "distilled"
    path: str
    val_accuracy: float
    test_accuracy: float

    @property
    def name(self) -> str:
        """E.g. ``lenet5-a0.5-r0.75-distilled``."""
        return f"{self.candidate.name}-{self.method}"


def _family_options(architecture: str, alpha: float, rho: float) -> tuple[dict[str, Any], int]:
    """Options and backbone input size of ``architecture`` scaled by ``alpha`` (width) and ``rho`` (resolution)."""
    entry = model_entry(architecture)
    if architecture == "mobilenet_v1":  # has both multipliers natively (thesis 5.3)
        return {"alpha": alpha, "rho": rho}, entry.default_input_size
    size = max(entry.min_input_size, round(rho * entry.default_input_size))
    if architecture.startswith("resnet"):
        return {"width": max(4, round(16 * alpha))}, size
    if architecture in ("lenet5", "convnet"):
        return {"width": alpha}, size
    raise ConfigError(
        f"no width/resolution family is defined for {architecture!r}; pools support lenet5, convnet, resnet*, "
        "mobilenet_v1"
    )


def _build(candidate: Candidate, splits: DatasetSplits) -> ImageClassifier:
    return build_classifier(
        candidate.architecture,
        num_classes=splits.num_classes,
        image_shape=splits.image_shape,
        input_size=candidate.input_size,
        **candidate.arch_options,
    )


def calibrate_candidate(
    architecture: str, alpha: float, rho: float, splits: DatasetSplits, *, threads: int = 1
) -> Candidate:
    """An untrained candidate's MACs, parameters and batch-1 latency on ONNX Runtime."""
    options, size = _family_options(architecture, alpha, rho)
    name = f"{architecture}-a{alpha:g}-r{rho:g}"
    torch.manual_seed(0)
    probe = Candidate(name, architecture, alpha, rho, options, size, 0, 0, 0.0)
    model = _build(probe, splits).eval()
    profile = profile_classifier(model)
    images = splits.val.images[:8]
    runner = OnnxRunner(export_onnx(model, images), threads=threads)
    latency_us = measure_latency_us(runner, images, batch=1, repeats=_LATENCY_REPEATS, warmup=10)
    return replace(probe, macs=profile.total_macs, params=profile.total_params, latency_s=latency_us / 1e6)


def offload_latency_s(link: str, splits: DatasetSplits) -> float:
    """First-order time to send one input to the cloud and get its answer on ``link`` (bytes / bandwidth + RTT)."""
    profile = get_link_profile(link)
    sizes = infer_message_sizes(splits.image_shape, splits.num_classes)
    up = sizes.request_bytes * 8 / (profile.uplink.mean_mbps * 1e6)
    down = sizes.response_bytes * 8 / (profile.downlink.mean_mbps * 1e6)
    return up + down + profile.rtt_s


def _entry_path(out: Path, candidate: Candidate, method: str) -> Path:
    return out / f"{candidate.name}-{method}"


def _train(
    candidate: Candidate,
    method: str,
    *,
    master: ImageClassifier,
    splits: DatasetSplits,
    config: TrainConfig,
    out: Path,
    show_progress: bool,
) -> PoolEntry:
    path = _entry_path(out, candidate, method)
    if not (path / "manifest.json").is_file():  # resumable: trained models stay
        if method == "labels":
            model, result = train_new(
                candidate.architecture,
                splits,
                config,
                arch_options=candidate.arch_options,
                input_size=candidate.input_size,
                show_progress=show_progress,
                description=f"{candidate.name} (labels)",
            )
            training: dict[str, Any] = {"config": config.to_dict(), **result.to_dict()}
        else:
            model, report = distill(
                master,
                splits,
                candidate.architecture,
                config,
                arch_options=candidate.arch_options,
                input_size=candidate.input_size,
                show_progress=show_progress,
            )
            training = {"config": config.to_dict(), **report.to_dict()}
        save_evaluated(path, model, splits, training={**training, "pool_candidate": asdict(candidate)})
    metrics = load_artifact(path).metrics
    return PoolEntry(candidate, method, str(path), float(metrics["val_accuracy"]), float(metrics["test_accuracy"]))


def build_pool(
    master_path: Path,
    splits: DatasetSplits,
    out: Path,
    *,
    config: TrainConfig,
    alphas: Sequence[float] = DEFAULT_ALPHAS,
    rhos: Sequence[float] = DEFAULT_RHOS,
    links: Sequence[str] = ("3g", "lte", "wifi"),
    methods: Sequence[str] = METHODS,
    threads: int = 1,
    show_progress: bool = False,
    log: Callable[[str], None] = lambda _: None,
) -> dict[str, Any]:
    """Calibrate, filter, train and record a pool of minions of the master at ``master_path``; returns ``pool.json``."""
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not methods:
        raise ConfigError(f"unknown pool training method(s) {unknown}; expected some of: {', '.join(METHODS)}")
    if not alphas or not rhos or any(not 0 < v <= 1 for v in (*alphas, *rhos)):
        raise ConfigError(f"alphas and rhos must be non-empty values in (0, 1]; got {list(alphas)}, {list(rhos)}")
    master = load_artifact(master_path).classifier
    check_fits(master.spec, splits, what=f"master {master_path}")
    fastest_link, offload_s = min(((link, offload_latency_s(link, splits)) for link in links), key=lambda x: x[1])
    candidates = []
    for alpha in alphas:
        for rho in rhos:
            candidate = calibrate_candidate(master.spec.architecture, alpha, rho, splits, threads=threads)
            keep = candidate.latency_s < offload_s
            log(
                f"{candidate.name}: {candidate.macs:,} MACs, {candidate.latency_s * 1e6:.0f} us on the device backend "
                f"({'kept' if keep else 'dropped'}: offloading over {fastest_link} takes {offload_s * 1e3:.1f} ms)"
            )
            candidates.append((candidate, keep))
    out.mkdir(parents=True, exist_ok=True)
    entries: list[PoolEntry] = []
    failed: list[dict[str, str]] = []
    for candidate, keep in candidates:
        for method in methods if keep else ():
            try:
                entries.append(
                    _train(
                        candidate,
                        method,
                        master=master,
                        splits=splits,
                        config=config,
                        out=out,
                        show_progress=show_progress,
                    )
                )
            except TrainingError as exc:  # one candidate that does not learn must not sink the pool
                log(f"{candidate.name} ({method}) not added: {exc}")
                failed.append({"candidate": candidate.name, "method": method, "error": str(exc)})
    record = {
        "format": _FORMAT,
        "format_version": 1,
        "master": str(master_path),
        "dataset": splits.describe(),
        "fastest_link": fastest_link,
        "offload_s": offload_s,
        "candidates": [{**asdict(c), "kept": keep} for c, keep in candidates],
        "members": [{**asdict(e), "name": e.name} for e in entries],
        "failed": failed,
    }
    (out / POOL_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return record


def pool_member(name: str, path: Path, splits: DatasetSplits, *, device: str, threads: int = 1) -> PoolMember:
    """A model's validation and test logits on its device backend, its cost priced on ``device``.

    Latency and energy come from one device profile (the analytic roofline), so pairs are compared
    on the device they would run on, not on this machine.
    """
    loaded = load_artifact(path)
    runner, _ = runner_for(loaded, splits.val.images, threads=threads)
    cost = local_cost(loaded.torch_classifier or ImageClassifier(loaded.spec), device)
    return PoolMember(
        name=name,
        val_logits=runner.logits(splits.val.images),
        test_logits=runner.logits(splits.test.images),
        latency_s=cost.latency_s,
        energy_mj=cost.energy_mj,
        macs=int(loaded.manifest.get("macs", 0)),
        params=int(loaded.manifest.get("params", 0)),
    )


def master_reference(master: PoolMember, splits: DatasetSplits) -> MasterReference:
    """The master's answers and its on-device cost, as the minion pairing compares against them."""
    return MasterReference(
        name=master.name,
        val_predictions=master.val_logits.argmax(axis=1),
        test_predictions=master.test_logits.argmax(axis=1),
        val_labels=splits.val.labels,
        test_labels=splits.test.labels,
        latency_s=master.latency_s,
        energy_mj=master.energy_mj,
    )


def link_offload_costs(links: Sequence[str], splits: DatasetSplits) -> dict[str, tuple[float, float]]:
    """Per link, (latency s, energy mJ) of sending one of ``splits``' inputs to the master and back."""
    sizes = infer_message_sizes(splits.image_shape, splits.num_classes)
    return {link: offload_cost(link, sizes.request_bytes, sizes.response_bytes) for link in links}


def read_pool(folder: Path) -> tuple[dict[str, Any], list[PoolEntry]]:
    """``pool.json`` of ``folder`` and its members; a clear error when it is missing, malformed or empty."""
    path = folder / POOL_FILE
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"{folder} is not a minion pool: it has no {POOL_FILE} (build one with specedge pool)"
        ) from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        raise ConfigError(f"{path} is not a specedge pool file")
    try:
        entries = [
            PoolEntry(
                Candidate(**m["candidate"]), str(m["method"]), str(m["path"]), m["val_accuracy"], m["test_accuracy"]
            )
            for m in record["members"]
        ]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: malformed pool member ({exc!r})") from exc
    if not entries:
        raise ConfigError(f"{path} has no trained members (every candidate was slower than offloading?)")
    return record, entries
