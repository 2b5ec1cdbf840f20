"""``specedge compress``: derive SIEVE and int8 speculative variants of a master and save each as an artifact.

Each variant (thesis 4.4: the speculative CNN is a compressed copy of the master) is saved with
its trade-off record (:mod:`specedge.compression.tradeoff`) and the edge backend it runs on
(:func:`specedge.backends.choose_backend`, guarded by a parity check). Every decision uses the
validation split; test accuracy is measured once, at the end, for the record.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specedge.backends import OnnxRunner, choose_backend, measure_latency_us
from specedge.backends.runners import ModelRunner
from specedge.compression.int8 import describe_int8, quantize_int8
from specedge.compression.sieve import SieveSearch, SieveVariant, compress_sieve, sieve_search
from specedge.compression.tradeoff import LayerBits, layer_bits, tradeoff_record
from specedge.data import DatasetSplits
from specedge.errors import ConfigError
from specedge.models import ImageClassifier, LoadedModel, save_artifact
from specedge.models.encodings import Int8Encoding, SieveEncoding, WeightsEncoding
from specedge.training import predict_logits

__all__ = ["METHODS", "SIEVE_VARIANTS", "CompressedVariant", "compress"]

METHODS = ("sieve", "int8")
SIEVE_VARIANTS = ("exact", "accurate", "approximate")
_LATENCY_REPEATS = 200


@dataclass(frozen=True)
class CompressedVariant:
    """One saved variant and what it was measured to cost and give up."""

    name: str  # e.g. "sieve-accurate", "int8"
    path: Path
    tradeoff: dict[str, Any]


@dataclass(frozen=True)
class _Job:
    """What every variant of one ``compress`` call shares."""

    out: Path
    source: LoadedModel
    splits: DatasetSplits
    master_logits: dict[str, np.ndarray]
    threads: int


def _metrics(logits: dict[str, np.ndarray], master: dict[str, np.ndarray], splits: DatasetSplits) -> dict[str, float]:
    """Accuracy, accuracy relative to the master, and agreement with it, on validation and test."""
    out: dict[str, float] = {}
    for split_name, split in (("val", splits.val), ("test", splits.test)):
        predicted = logits[split_name].argmax(axis=1)
        master_predicted = master[split_name].argmax(axis=1)
        accuracy = float(np.mean(predicted == split.labels))
        master_accuracy = float(np.mean(master_predicted == split.labels))
        out[f"{split_name}_accuracy"] = accuracy
        out[f"normalized_{split_name}_accuracy"] = accuracy / master_accuracy if master_accuracy else 0.0
        out[f"{split_name}_agreement"] = float(np.mean(predicted == master_predicted))
    return out


def _save(
    job: _Job,
    model: ImageClassifier,
    *,
    name: str,
    encoding: WeightsEncoding,
    rows: list[LayerBits],
    runner: ModelRunner,
    backend_record: dict[str, Any],
    latency_us: dict[str, dict[str, float]],
    compression: dict[str, Any],
    activation_formats: dict[str, Any] | None = None,
) -> CompressedVariant:
    source, splits = job.source, job.splits
    logits = {"val": runner.logits(splits.val.images), "test": runner.logits(splits.test.images)}
    metrics = _metrics(logits, job.master_logits, splits)
    files, _ = encoding.encode(model.state_dict())
    (payload,) = files.values()
    record = tradeoff_record(
        model,
        encoding=encoding.name,
        stored_bytes=len(payload),
        rows=rows,
        metrics=metrics,
        latency_us=latency_us,
        backend=runner.backend,
    )
    path = save_artifact(
        job.out / name,
        model,
        dataset=source.dataset,
        metrics=metrics,
        model_name=f"{source.serving_name}-{name}",
        encoding=encoding,
        activation_formats=activation_formats,
        sections={
            "compression": {"source": str(source.path), "source_model": source.serving_name, **compression},
            "tradeoff": record,
            "edge_backend": backend_record,
        },
    )
    return CompressedVariant(name=name, path=path, tradeoff=record)


def _sieve_variant(job: _Job, search: SieveSearch, variant: SieveVariant) -> CompressedVariant:
    model = compress_sieve(job.source.classifier, variant.config)
    runner, choice = choose_backend(model, job.splits.val.images, threads=job.threads)
    config = variant.config
    return _save(
        job,
        model,
        name=f"sieve-{variant.name}",
        encoding=SieveEncoding({f"{layer}.weight": fmt for layer, fmt in config.weight_formats.items()}),
        activation_formats=dict(config.activation_formats),
        rows=layer_bits(model, weight_formats=config.weight_formats, activation_formats=config.activation_formats),
        runner=runner,
        backend_record=choice.to_dict(),
        latency_us={backend: {"b1": us} for backend, us in choice.latency_us.items()},
        compression={
            "method": "sieve",
            "variant": variant.name,
            "search_s": search.search_s,
            "evaluations": search.evaluations,
            "prefix_cache": search.prefix_cache,
            "kept_fp32": [{"module": m, "type": t, "reason": r} for m, t, r in search.kept_fp32],
            "baseline_validation_accuracy": search.baseline_validation_accuracy,
            **variant.to_dict(),
        },
    )


def _int8_variant(job: _Job) -> CompressedVariant:
    model_bytes = quantize_int8(job.source.classifier, job.splits.val.images)
    runner = OnnxRunner(model_bytes, threads=job.threads)
    latency = measure_latency_us(runner, job.splits.val.images, batch=1, repeats=_LATENCY_REPEATS, warmup=20)
    return _save(
        job,
        job.source.classifier,
        name="int8",
        encoding=Int8Encoding(model_bytes),
        rows=layer_bits(job.source.classifier, int8=True),
        runner=runner,
        backend_record={"backend": "onnxruntime", "reason": "int8 QDQ graphs run on onnxruntime only"},
        latency_us={"onnxruntime": {"b1": latency}},
        compression={"method": "int8", "calibration_images": len(job.splits.val), **describe_int8(model_bytes)},
    )


def compress(
    master: LoadedModel,
    splits: DatasetSplits,
    *,
    method: str,
    variants: Sequence[str] = ("accurate",),
    out: Path,
    progress: bool = False,
    threads: int = 1,
    log: Callable[[str], None] = lambda _: None,
) -> list[CompressedVariant]:
    """Compress ``master`` with ``method`` and save each variant under ``out/<variant>``.

    ``variants`` names SIEVE variants (``exact``, ``accurate``, ``approximate``); int8 has one.
    """
    if method not in METHODS:
        raise ConfigError(f"unknown compression method {method!r}; expected one of: {', '.join(METHODS)}")
    unknown = sorted(set(variants) - set(SIEVE_VARIANTS))
    if method == "sieve" and (unknown or not variants):
        raise ConfigError(f"unknown SIEVE variant(s) {unknown}; expected some of: {', '.join(SIEVE_VARIANTS)}")
    if master.encoding != "fp32":
        raise ConfigError(f"{master.path} is already compressed ({master.encoding}); compress an fp32 master")
    classifier = master.classifier
    master_logits = {
        "val": predict_logits(classifier, splits.val.images),
        "test": predict_logits(classifier, splits.test.images),
    }
    job = _Job(out, master, splits, master_logits, threads)
    if method == "int8":
        log("int8: ONNX Runtime static quantisation, calibrated on the validation split")
        return [_int8_variant(job)]
    log(f"sieve: searching per-layer float formats on {len(splits.val)} validation images")
    search = sieve_search(classifier, splits.val.images, splits.val.labels, progress=progress)
    return [_sieve_variant(job, search, search.variants[name]) for name in variants]
