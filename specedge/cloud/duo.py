"""Dynamic Duo on the server: a little model answers, the big one recomputes what the probe doubts (thesis ch. 6).

Every request runs on the *little* engine; the confidence probe exported by ``specedge pair
--kind duo`` (:func:`specedge.pairing.duo.write_duo`) scores each row of the little's logits and
the rows it doubts, and only those, are recomputed on the *big* engine (thesis section 6.3.2,
Fig. 6.4). A recovery request from an edge device (``recovery=True``) has already been judged
doubtful by the edge's own detector, so it goes straight to the big engine.

:class:`DuoModel` serves under one model name with the big model's tensor signature, so a
client cannot tell it from the big model alone. Each engine keeps its own queue (and batcher),
so the escalated rows of many concurrent requests are batched together on the big model, which
is where the datacenter throughput of section 6.5 comes from.

The probe is ``duo.json``'s :class:`~specedge.detector.MisspeculationDetector`: a row is
escalated when its keep score is below the detector's ``threshold_``, the keep score being the
little's confidence score (``max_softmax`` by default) minus, under a per-class policy, the
learned offset of the class the little predicted (thesis Fig. 6.7's threshold per class).

Time accounting: the little and the big phase each report queue and compute time; the duo
reports their sums, with the probe counted as compute, so with engines that measure queue time
from the request's arrival, ``queue + compute`` covers the request from arrival to answer.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from specedge.cloud.engine import (
    InferenceEngine,
    InferenceResult,
    ModelConfigInfo,
    ModelMetadata,
    ModelNotReadyError,
)
from specedge.cloud.statistics import BatchStats, Duration, ModelStats
from specedge.detector import MisspeculationDetector
from specedge.errors import ArtifactError, ConfigError
from specedge.models.artifact import LoadedModel, load_artifact
from specedge.models.classifier import ImageClassifier
from specedge.pairing.duo import DuoConfig, read_duo

__all__ = ["ANSWERED_BY", "DuoModel", "EngineFactory", "load_duo"]

#: What :attr:`InferenceResult.answered_by` says: no row recomputed, every row on big, or a mix.
ANSWERED_BY = ("little", "big", "little+big")
#: Builds one engine of the pair; ``specedge serve`` passes one carrying its batching flags.
EngineFactory = Callable[[ImageClassifier, str], InferenceEngine]
#: The name ``specedge pair`` gives the master in duo.json (any artifact may play it).
_MASTER_NAME = "master"


class DuoModel:
    """A little and a big engine behind the exported confidence probe, served as one model.

    Args:
        little: the cheap engine every non-recovery request runs on.
        big: the accurate engine; recomputes the rows the probe doubts and answers recoveries.
        detector: the probe, fitted on the little's logits (``duo.json``'s detector).
        model_name: the name clients address the duo by (typically the big model's, so edges
            written for the big model need no change).
        model_version: the single version it serves.
    """

    def __init__(
        self,
        little: InferenceEngine,
        big: InferenceEngine,
        detector: MisspeculationDetector,
        *,
        model_name: str,
        model_version: str = "1",
    ) -> None:
        if not model_name:
            raise ConfigError("model_name must be a non-empty string")
        if not model_version:
            raise ConfigError("model_version must be a non-empty string")
        _check_pair(little.metadata(), big.metadata(), detector)
        self.little = little
        self.big = big
        self.detector = detector
        self.model_name = model_name
        self.model_version = model_version
        self.max_batch = min(little.max_batch, big.max_batch)
        self.image_shape = big.image_shape
        self.num_classes = big.num_classes
        self._counters = _DuoCounters()

    @property
    def ready(self) -> bool:
        """Both engines can run inference."""
        return bool(self.little.ready and self.big.ready)

    def metadata(self) -> ModelMetadata:
        """The big model's signature under the duo's name and version."""
        return dataclasses.replace(self.big.metadata(), name=self.model_name, versions=(self.model_version,))

    def config(self) -> ModelConfigInfo:
        """The big engine's config under the duo's name, its batch limit the smaller of the two engines'."""
        little, big = self.little.config(), self.big.config()
        return dataclasses.replace(
            big, name=self.model_name, max_batch_size=min(little.max_batch_size, big.max_batch_size)
        )

    def statistics(self) -> ModelStats:
        """The duo's requests, with the work of both engines behind them (Triton's fields).

        ``success``, ``fail`` and ``inference_count`` count the duo's own requests and images;
        ``queue`` and ``compute_*`` add up both engines' time (the probe counts as compute_infer),
        charged to the duo's successful requests; ``execution_count`` and ``batch_stats`` count
        every forward pass of either model, so the big model's share shows there.
        """
        little, big = self.little.statistics(), self.big.statistics()
        return self._counters.snapshot(self.model_name, self.model_version, little, big)

    def close(self) -> None:
        """Drain the little engine first (its requests may still escalate), then the big one."""
        self.little.close()
        self.big.close()

    def infer(
        self,
        images: np.ndarray,
        *,
        arrival_ns: int | None = None,
        deadline_ns: int | None = None,
        recovery: bool = False,
    ) -> InferenceResult:
        """Logits for uint8 ``images`` ``(N, C, H, W)``: the little's, with the doubted rows the big's.

        ``arrival_ns`` (``time.perf_counter_ns()`` when the request reached the server) defaults
        to now; ``deadline_ns`` is on the same clock and passed to both engines. A recovery runs
        on the big engine only.
        """
        if not self.ready:
            raise ModelNotReadyError(f"model {self.model_name!r} is not ready")
        if arrival_ns is None:
            arrival_ns = time.perf_counter_ns()
        try:
            result, probe_ns = self._answer(images, arrival_ns, deadline_ns, recovery=recovery)
        except Exception:
            self._counters.failed(time.perf_counter_ns() - arrival_ns)
            raise
        self._counters.answered(len(images), time.perf_counter_ns() - arrival_ns, probe_ns)
        return result

    def _answer(
        self,
        images: np.ndarray,
        arrival_ns: int,
        deadline_ns: int | None,
        *,
        recovery: bool,
    ) -> tuple[InferenceResult, int]:
        """The answer and the probe's time in ns."""
        if recovery:
            result = self.big.infer(images, arrival_ns=arrival_ns, deadline_ns=deadline_ns, recovery=True)
            return dataclasses.replace(result, answered_by="big"), 0
        little = self.little.infer(images, arrival_ns=arrival_ns, deadline_ns=deadline_ns, recovery=False)
        probe_started_ns = time.perf_counter_ns()
        escalate = self.detector.decide(little.logits).escalate  # (N,) bool
        n_doubted = int(escalate.sum())
        probe_ns = time.perf_counter_ns() - probe_started_ns
        probe_us = probe_ns // 1000
        if n_doubted == 0:
            return _result(little.logits, little.queue_time_us, little.compute_time_us + probe_us, "little"), probe_ns
        # The big phase arrives now: its queue time is its own, not the little phase again.
        big = self.big.infer(images[escalate], arrival_ns=time.perf_counter_ns(), deadline_ns=deadline_ns)
        logits = little.logits.copy()
        logits[escalate] = big.logits
        return _result(
            logits,
            little.queue_time_us + big.queue_time_us,
            little.compute_time_us + probe_us + big.compute_time_us,
            "big" if n_doubted == len(escalate) else "little+big",
        ), probe_ns


def _check_pair(little: ModelMetadata, big: ModelMetadata, detector: MisspeculationDetector) -> None:
    """:class:`ConfigError` unless both models take the same input and the probe reads the little's output."""
    if little.inputs != big.inputs or [o.shape for o in little.outputs] != [o.shape for o in big.outputs]:
        raise ConfigError(
            f"the little model {little.name!r} and the big model {big.name!r} must share their signature; got "
            f"inputs {[i.shape for i in little.inputs]} -> {[o.shape for o in little.outputs]} and "
            f"{[i.shape for i in big.inputs]} -> {[o.shape for o in big.outputs]}"
        )
    num_classes = little.outputs[0].shape[-1]
    detector_classes = getattr(detector, "num_classes_", None)
    if detector_classes is None or detector.policy == "pair":
        raise ConfigError("the duo's probe must be a fitted single-model detector (not the pair policy)")
    if detector_classes != num_classes:
        raise ConfigError(f"the duo's probe was fitted on {detector_classes} classes; the models output {num_classes}")


def _result(logits: np.ndarray, queue_time_us: int, compute_time_us: int, answered_by: str) -> InferenceResult:
    return InferenceResult(
        logits=logits, queue_time_us=queue_time_us, compute_time_us=compute_time_us, answered_by=answered_by
    )


class _DuoCounters:
    """Thread-safe counts of the duo's own requests; the engines count their forward passes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._success = [0, 0]  # requests, ns from arrival to answer
        self._fail = [0, 0]
        self._images = 0
        self._probe_ns = 0
        self._last_inference_ms = 0

    def answered(self, images: int, total_ns: int, probe_ns: int) -> None:
        with self._lock:
            self._success[0] += 1
            self._success[1] += total_ns
            self._images += images
            self._probe_ns += probe_ns
            self._last_inference_ms = time.time_ns() // 1_000_000

    def failed(self, total_ns: int) -> None:
        with self._lock:
            self._fail[0] += 1
            self._fail[1] += max(total_ns, 0)

    def snapshot(self, name: str, version: str, little: ModelStats, big: ModelStats) -> ModelStats:
        with self._lock:
            requests = self._success[0]

            def phases(field: str, extra_ns: int = 0) -> Duration:
                ns = getattr(little, field).ns + getattr(big, field).ns + extra_ns
                return Duration(requests, ns)

            sizes = sorted(set(little.batch_stats) | set(big.batch_stats))
            zero = BatchStats(0, 0)
            return ModelStats(
                name=name,
                version=version,
                last_inference_ms=self._last_inference_ms,
                inference_count=self._images,
                execution_count=little.execution_count + big.execution_count,
                success=Duration(*self._success),
                fail=Duration(*self._fail),
                queue=phases("queue"),
                compute_input=phases("compute_input"),
                compute_infer=phases("compute_infer", self._probe_ns),
                compute_output=phases("compute_output"),
                batch_stats={
                    size: BatchStats(
                        little.batch_stats.get(size, zero).count + big.batch_stats.get(size, zero).count,
                        little.batch_stats.get(size, zero).compute_ns + big.batch_stats.get(size, zero).compute_ns,
                    )
                    for size in sizes
                },
            )


# --- loading a pairing's output ------------------------------------------------------------------


def _locate(duo_json: Path, role: str, name: str, given: Path | None) -> Path:
    """The artifact folder of ``name``: as given, else the folder of that name next to duo.json."""
    if given is not None:
        return Path(given)
    candidate = duo_json.parent / name
    if (candidate / "manifest.json").is_file():
        return candidate
    raise ConfigError(
        f"{duo_json} names the {role} model {name!r}, but there is no artifact {candidate}; "
        f"pass its folder ({role}=DIR, or --{role} DIR on the command line)"
    )


def _check_artifacts(duo_json: Path, duo: DuoConfig, little: LoadedModel, big: LoadedModel) -> None:
    """:class:`ArtifactError` where the artifacts cannot be the pair duo.json describes."""
    names = {little.path.name, little.serving_name}
    if duo.little not in names:
        raise ArtifactError(
            f"{little.path} is not the little model {duo.little!r} that {duo_json} names "
            f"(its folder and model name are {', '.join(sorted(names))}); pass the artifact the pairing chose"
        )
    if duo.big != _MASTER_NAME and duo.big not in {big.path.name, big.serving_name}:
        raise ArtifactError(f"{big.path} is not the big model {duo.big!r} that {duo_json} names")
    for what, attribute in (("image shape", "image_shape"), ("class count", "num_classes")):
        a, b = getattr(little.spec, attribute), getattr(big.spec, attribute)
        if a != b:
            raise ArtifactError(f"the little model {little.path} and the big {big.path} differ in {what}: {a} vs {b}")
    datasets = little.dataset.get("name"), big.dataset.get("name")
    if None not in datasets and datasets[0] != datasets[1]:
        raise ArtifactError(
            f"the little model {little.path} was trained on {datasets[0]!r}, the big {big.path} on {datasets[1]!r}"
        )
    if little.macs >= big.macs:
        raise ArtifactError(
            f"the little model {little.path} ({little.macs:,} MACs) is not cheaper than the big {big.path} "
            f"({big.macs:,} MACs); were the two swapped?"
        )


def _default_engine(classifier: ImageClassifier, name: str) -> InferenceEngine:
    return InferenceEngine(classifier, model_name=name)


def load_duo(
    duo_json: Path,
    *,
    little: Path | None = None,
    big: Path | None = None,
    model_name: str | None = None,
    model_version: str = "1",
    engine: EngineFactory = _default_engine,
) -> DuoModel:
    """A :class:`DuoModel` from ``specedge pair --kind duo``'s ``duo.json`` and the two artifacts.

    Args:
        duo_json: the pairing's ``duo.json`` (the probe, its policy and per-class thresholds).
        little: the little model's artifact folder; by default the folder next to duo.json
            with the name duo.json gives the little (a pool member's name).
        big: likewise for the big model (``specedge pair`` calls the master ``master``; pass
            the master's folder).
        model_name: the duo's served name; default the big artifact's serving name.
        model_version: the version it serves.
        engine: builds each engine from ``(classifier, name)``; pass one with batching settings.

    Raises:
        ConfigError: duo.json is missing or malformed, or an artifact cannot be found.
        ArtifactError: an artifact is unreadable or not the model duo.json names, the two do not
            fit together, or the little is not cheaper than the big.
    """
    duo_json = Path(duo_json)
    duo = read_duo(duo_json)
    little_model = load_artifact(_locate(duo_json, "little", duo.little, little))
    big_model = load_artifact(_locate(duo_json, "big", duo.big, big))
    _check_artifacts(duo_json, duo, little_model, big_model)
    engines: list[InferenceEngine] = []
    try:
        for loaded in (little_model, big_model):
            engines.append(engine(loaded.classifier, loaded.serving_name))
        little_engine, big_engine = engines
        return DuoModel(
            little_engine,
            big_engine,
            duo.detector,
            model_name=model_name or big_model.serving_name,
            model_version=model_version,
        )
    except BaseException:
        for started in engines:
            started.close()  # its workers would outlive the failed load
        raise
