"""Which speculative model the demo's device runs: the distilled one or one of its compressed variants.

The distilled student is compressed further (SIEVE's three variants and int8; thesis 4.4) and every
candidate is judged the way the system will use it, on the validation split only: its own
detector is calibrated (so P_r is the candidate's own escalation rate at the demo's certified
target), and the simulator replays its validation decisions on every configured link with its
stored widths priced by the device model. The candidate with the least simulated SpecEdge energy
per input (then latency) runs on the device; the table shows all of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from specedge.backends import BackendChoice, ModelRunner, PairRunner, runner_for
from specedge.compression.pipeline import SIEVE_VARIANTS, compress
from specedge.data import DatasetSplits
from specedge.detector import MisspeculationDetector, ModelOutputs
from specedge.models import ImageClassifier, LoadedModel, load_artifact
from specedge.simulator import constant_rate_arrivals, get_link_profile
from specedge.simulator.system import evaluate_system
from specedge.simulator.workloads import HOST_MEASURED, StoredWidths, workload_from_outputs
from specedge.training import EvalResult, evaluate_logits

__all__ = ["Candidate", "build_candidates", "choose_candidate", "evaluate_candidate", "minion_pair", "on_device"]

#: The simulator prices candidates analytically; a measured host time exists only after the live runs.
_ANALYTIC_HOST = "host-x86"


@dataclass
class Candidate:
    """One speculative model the device could run, measured on its device backend."""

    name: str  # "distilled", "sieve-accurate", "int8", ...
    loaded: LoadedModel
    runner: ModelRunner
    backend: BackendChoice
    val: EvalResult
    test: EvalResult
    detector: MisspeculationDetector | None = None
    simulated: dict[str, dict[str, float]] | None = None  # link -> SpecEdge energy_mj / latency_ms on validation
    partner: Candidate | None = None  # the second minion of a pair (M&MNet); ``runner`` then runs both

    @property
    def val_logits(self) -> np.ndarray:
        """``(N, K)``, or ``(N, 2, K)`` for a minion pair: what the detector reads."""
        return self.val.logits if self.partner is None else np.stack([self.val.logits, self.partner.val.logits], 1)

    @property
    def test_logits(self) -> np.ndarray:
        """Like :attr:`val_logits`, on the test split."""
        return self.test.logits if self.partner is None else np.stack([self.test.logits, self.partner.test.logits], 1)

    @property
    def structures(self) -> ImageClassifier | list[ImageClassifier]:
        """What the device model prices: one model, or both minions of a pair."""
        return self.structure if self.partner is None else [self.structure, self.partner.structure]

    @property
    def structure(self) -> ImageClassifier:
        """The fp32 layer structure the device model prices (an int8 graph has no torch form)."""
        return self.loaded.torch_classifier or ImageClassifier(self.loaded.spec)

    @property
    def tradeoff(self) -> dict[str, Any] | None:
        """The compressed variant's trade-off record; None for the uncompressed model."""
        record = self.loaded.manifest.get("tradeoff")
        return dict(record) if record is not None else None

    @property
    def widths(self) -> StoredWidths | None:
        """Stored widths for the device model; None = fp32 everywhere."""
        record = self.tradeoff
        return StoredWidths.from_tradeoff(record) if record is not None else None

    @property
    def label(self) -> str:
        """E.g. ``lenet5(width=0.5) sieve-accurate``: what records and the report call it."""
        return f"{self.loaded.spec.label} {self.name}"

    def mean_simulated(self, metric: str) -> float:
        """The simulated SpecEdge ``energy_mj`` or ``latency_ms`` averaged over the links."""
        assert self.simulated is not None
        return float(np.mean([per_link[metric] for per_link in self.simulated.values()]))

    def row(self, chosen: bool) -> dict[str, Any]:
        """JSON-ready summary for the report."""
        record = self.tradeoff or {}
        return {
            "name": self.name,
            "chosen": chosen,
            "path": str(self.loaded.path),
            "encoding": self.loaded.encoding,
            "backend": self.backend.backend,
            "bytes_ratio": record.get("bytes_ratio", 1.0),
            "traffic_ratio": record.get("traffic_ratio", 1.0),
            "val_accuracy": self.val.accuracy,
            "test_accuracy": self.test.accuracy,
            "val_escalation_rate": None if self.detector is None else self.detector.escalation_rate_,
            "simulated": self.simulated,
        }


def on_device(name: str, loaded: LoadedModel, splits: DatasetSplits, threads: int) -> Candidate:
    """``loaded`` on its device backend (chosen and parity-checked on validation), evaluated on validation and test."""
    runner, choice = runner_for(loaded, splits.val.images, threads=threads)
    k = splits.num_classes
    return Candidate(
        name=name,
        loaded=loaded,
        runner=runner,
        backend=choice,
        val=evaluate_logits(runner.logits(splits.val.images), splits.val.labels, k),
        test=evaluate_logits(runner.logits(splits.test.images), splits.test.labels, k),
    )


def build_candidates(
    speculative: Path,
    splits: DatasetSplits,
    *,
    out: Path,
    compressed: bool,
    threads: int,
    log: Callable[[str], None],
) -> list[Candidate]:
    """The speculative artifact at ``speculative`` and (``compressed``) its SIEVE and int8 variants."""
    source = load_artifact(speculative)
    candidates = [on_device("distilled", source, splits, threads)]
    if not compressed or source.encoding != "fp32":
        return candidates
    log("compressing the speculative model: SIEVE custom floats (search on validation) and int8")
    variants = compress(source, splits, method="sieve", variants=SIEVE_VARIANTS, out=out, threads=threads)
    variants += compress(source, splits, method="int8", out=out, threads=threads)
    return candidates + [on_device(v.name, load_artifact(v.path), splits, threads) for v in variants]


def evaluate_candidate(
    candidate: Candidate,
    detector: MisspeculationDetector,
    *,
    master: ImageClassifier,
    master_val: EvalResult,
    splits: DatasetSplits,
    device: str,
    links: Sequence[str],
    fps: float,
) -> None:
    """Attach ``detector`` and the simulated SpecEdge cost of the candidate's validation decisions per link."""
    candidate.detector = detector
    outputs = ModelOutputs(candidate.val_logits, master_val.predictions, splits.val.labels)
    workload = workload_from_outputs(
        candidate.name,
        outputs=outputs,
        detector=detector,
        images=splits.val.images,
        device=_ANALYTIC_HOST if device == HOST_MEASURED else device,
        speculative_model=candidate.structures,
        master_model=master,
        server_s=0.0,  # the same master serves every candidate: it cancels out of the comparison
        speculative_widths=candidate.widths,
    )
    arrivals = constant_rate_arrivals(len(outputs), rate_hz=fps)
    candidate.simulated = {}
    for link in links:
        outcome = evaluate_system(workload, get_link_profile(link), arrival_s=arrivals, kind="realistic").speculating
        candidate.simulated[link] = {"energy_mj": outcome.energy_mj, "latency_ms": outcome.latency_ms}


def minion_pair(first: Candidate, second: Candidate) -> Candidate:
    """Two minions as one local model (M&MNet, thesis 5.2): both run, the pair detector decides."""
    return dataclasses.replace(
        first, name="minion-pair", runner=PairRunner(first.runner, second.runner), partner=second
    )


def choose_candidate(candidates: Sequence[Candidate]) -> Candidate:
    """The least simulated energy per input (then latency), averaged over the links."""
    return min(candidates, key=lambda c: (c.mean_simulated("energy_mj"), c.mean_simulated("latency_ms")))
