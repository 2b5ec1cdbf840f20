"""The edge runtime: answer each input locally, escalate it, or send it straight to the cloud.

One input flows through :meth:`EdgeRuntime.classify`:

    image -> route (by mode) -> local model (logits) -> detector -> [escalate: cloud master] -> record

In speculate mode an optional :class:`~specedge.detector.audit.AgreementAudit` also sends a
small random share of the *kept* answers to the master and compares; the answer stays the
local one, the record says ``audited``, and the audit raises its alarm if agreement drifts
below what calibration promised. With a :class:`~specedge.detector.audit.RecalibrationBuffer`
the alarm starts a re-calibration: every input goes to the master (its answers are the safe
ones while the detector is in doubt) until the buffer holds enough master-answered inputs, then
the detector is refitted on them for agreement (no labels needed) and the audit starts afresh.

``Mode`` is the user's knob from SIEVE (thesis section 4.3.2): ``speculate`` is the normal
mode (speculative model on the device, misspeculation detector, cloud recovery),
``cloud`` is mission-critical (every input to the master), ``local`` is private (nothing leaves
the device; with the master as local model it is the mobile-only baseline). The per-input
cost-based selector, speculation history, deadlines and failure handling plug in at
:meth:`EdgeRuntime._route` and around the cloud call without changing the record format.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from specedge.backends import ModelRunner, PairRunner, TorchRunner
from specedge.detector import MisspeculationDetector, probability_from_score, score_logits
from specedge.detector.audit import AgreementAudit, RecalibrationBuffer
from specedge.edge.cloud_client import CloudClient, CloudResponse
from specedge.errors import ConfigError, TensorError
from specedge.models import ImageClassifier

__all__ = ["EdgeRuntime", "InferenceRecord", "Mode", "Route"]


class Mode(str, Enum):
    """How the runtime treats every input (the user's preference)."""

    SPECULATE = "speculate"
    CLOUD = "cloud"
    LOCAL = "local"


class Route(str, Enum):
    """Where one input was answered."""

    LOCAL = "local"  # the local model's answer was kept
    ESCALATED = "escalated"  # ran locally, the detector doubted it, the cloud master answered
    CLOUD = "cloud"  # sent straight to the cloud without running locally


@dataclass(frozen=True)
class InferenceRecord:
    """Everything measured about one input; the unit that reports and simulators consume.

    None means "did not happen": no local model ran, or the cloud was not called.
    """

    input_id: str
    route: Route
    prediction: int
    start_s: float  # when the input was taken up, on the runtime's clock (seconds since it was created)
    local_model: str | None  # which local model ran (architecture and options)
    local_prediction: int | None
    confidence: float | None
    cloud_prediction: int | None
    local_us: int | None  # local model + detector, measured on this device
    cloud_round_trip_us: int | None  # client-side time of the RPC
    cloud_queue_us: int | None  # server-reported wait before compute
    cloud_compute_us: int | None  # server-reported model time
    total_us: int
    request_bytes: int | None  # serialised ModelInferRequest
    response_bytes: int | None  # serialised ModelInferResponse
    attempts: int  # cloud calls made for this input
    audited: bool  # kept locally, and also sent to the master to audit the detector

    @property
    def reached_cloud(self) -> bool:
        """Whether this input was sent to the cloud (escalated, sent directly, or audited)."""
        return self.route is not Route.LOCAL or self.audited

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON/CSV-ready form."""
        d = asdict(self)
        d["route"] = self.route.value
        return d


class EdgeRuntime:
    """Runs inputs through the local model, the detector and the cloud client by ``mode``."""

    def __init__(
        self,
        *,
        mode: Mode,
        local_model: ModelRunner | ImageClassifier | None = None,
        local_model_id: str | None = None,
        detector: MisspeculationDetector | None = None,
        cloud: CloudClient | None = None,
        audit: AgreementAudit | None = None,
        recalibration: RecalibrationBuffer | None = None,
        clock_ns: Callable[[], int] = time.perf_counter_ns,
    ) -> None:
        needs = {
            Mode.SPECULATE: ("local_model", "detector", "cloud"),
            Mode.CLOUD: ("cloud",),
            Mode.LOCAL: ("local_model",),
        }[mode]
        given = {"local_model": local_model, "detector": detector, "cloud": cloud}
        missing = [name for name in needs if given[name] is None]
        if missing:
            raise ConfigError(f"mode {mode.value!r} needs {', '.join(missing)}")
        if audit is not None and mode is not Mode.SPECULATE:
            raise ConfigError(
                f"an audit checks the detector, which only mode 'speculate' uses; got mode {mode.value!r}"
            )
        if recalibration is not None and audit is None:
            raise ConfigError("re-calibration starts on the audit's drift alarm; give an audit too")
        self.mode = mode
        if isinstance(local_model, PairRunner) and detector is None:
            raise ConfigError("a minion pair needs the pair detector to choose its answer (policy 'pair')")
        if isinstance(local_model, ImageClassifier):
            local_model_id = local_model_id or local_model.spec.label
            local_model = TorchRunner(local_model, threads=torch.get_num_threads())
        self.local_model: ModelRunner | None = local_model
        self.detector = detector
        self.cloud = cloud
        self.audit = audit
        self.recalibration = recalibration
        self.recalibrating = False  # after a drift alarm: every input goes to the master until the buffer is full
        self.recalibrations = 0
        self._clock_ns = clock_ns
        self._epoch_ns = clock_ns()
        self.local_model_id = None if local_model is None else (local_model_id or local_model.backend)

    def warm_up(self, image: np.ndarray) -> None:
        """Run the local model once and check the cloud is ready, so first-call costs stay out of records."""
        if self.local_model is not None:
            self._run_local(image)
        if self.cloud is not None:
            self.cloud.wait_until_ready(timeout_s=10.0)

    def _route(self) -> Route:
        """Where an input starts: the cost-based selector replaces this with a per-input decision."""
        return Route.CLOUD if self.mode is Mode.CLOUD else Route.LOCAL

    def _run_local(self, image: np.ndarray) -> np.ndarray:
        """Logits ``(1, K)`` of the local model for one image, on its device backend."""
        assert self.local_model is not None
        logits: np.ndarray = self.local_model.logits(image[None]).astype(np.float64)
        return logits

    def _judge(self, logits: np.ndarray) -> tuple[int, float, bool]:
        """The local answer, its confidence on the familiar [0, 1] scale, and whether to escalate."""
        if self.detector is None:  # mobile-only / private: no detector, plain top softmax probability
            confidence = float(probability_from_score("max_softmax", score_logits(logits, "max_softmax"))[0])
            return int(logits.argmax()), confidence, False
        decisions = self.detector.decide(logits)
        escalate = self.mode is Mode.SPECULATE and bool(decisions.escalate[0])
        return int(decisions.predictions[0]), float(decisions.confidence[0]), escalate

    def classify(self, image: np.ndarray, *, input_id: str) -> InferenceRecord:
        """Answer one uint8 ``(C, H, W)`` image."""
        if image.dtype != np.uint8 or image.ndim != 3:
            raise TensorError(f"input {input_id}: expected a uint8 (C, H, W) image; got {image.dtype} {image.shape}")
        start = self._clock_ns()
        route = self._route()
        local_prediction = confidence = local_us = logits = None
        audited = False
        if route is Route.LOCAL:
            logits = self._run_local(image)
            local_prediction, confidence, escalate = self._judge(logits)
            local_us = (self._clock_ns() - start) // 1000
            if escalate or self.recalibrating:
                route = Route.ESCALATED
            elif self.audit is not None:
                audited = self.audit.should_audit()
        response = None
        if route is not Route.LOCAL or audited:
            assert self.cloud is not None
            response = self.cloud.infer(image[None], request_id=input_id)
        cloud_prediction = None if response is None else int(response.logits[0].argmax())
        if self.recalibrating and logits is not None and cloud_prediction is not None:
            self._collect(logits[0], cloud_prediction)
        elif self.audit is not None and local_prediction is not None:
            alarm = self.audit.observe(
                kept=route is Route.LOCAL,
                speculative=local_prediction if audited else None,
                master=cloud_prediction if audited else None,
            )
            self.recalibrating = alarm and self.recalibration is not None
        answer = local_prediction if route is Route.LOCAL else cloud_prediction
        assert answer is not None
        return self._record(
            input_id=input_id,
            route=route,
            prediction=answer,
            local_prediction=local_prediction,
            confidence=confidence,
            cloud_prediction=cloud_prediction,
            local_us=local_us,
            response=response,
            start_ns=start,
            audited=audited,
        )

    def _collect(self, logits: np.ndarray, master_prediction: int) -> None:
        """Re-calibration after a drift alarm: gather master-answered inputs, then refit label-free."""
        assert self.recalibration is not None and self.audit is not None and self.detector is not None
        self.recalibration.add(logits, master_prediction)
        if self.recalibration.full:
            self.detector = self.recalibration.refit(self.detector, target=self.audit.target)
            self.audit.reset()
            self.recalibrating = False
            self.recalibrations += 1

    def _record(
        self,
        *,
        input_id: str,
        route: Route,
        prediction: int,
        local_prediction: int | None,
        confidence: float | None,
        cloud_prediction: int | None,
        local_us: int | None,
        response: CloudResponse | None,
        start_ns: int,
        audited: bool,
    ) -> InferenceRecord:
        """The one place a record is built, whatever the route."""
        return InferenceRecord(
            input_id=input_id,
            route=route,
            prediction=prediction,
            start_s=(start_ns - self._epoch_ns) / 1e9,
            local_model=None if local_prediction is None else self.local_model_id,
            local_prediction=local_prediction,
            confidence=confidence,
            cloud_prediction=cloud_prediction,
            local_us=local_us,
            cloud_round_trip_us=None if response is None else response.round_trip_us,
            cloud_queue_us=None if response is None else response.queue_time_us,
            cloud_compute_us=None if response is None else response.compute_time_us,
            total_us=(self._clock_ns() - start_ns) // 1000,
            request_bytes=None if response is None else response.request_bytes,
            response_bytes=None if response is None else response.response_bytes,
            attempts=0 if response is None else 1,
            audited=audited,
        )

    def run(
        self,
        images: np.ndarray,
        *,
        ids: Sequence[str],
        show_progress: bool = False,
        description: str = "edge",
    ) -> list[InferenceRecord]:
        """Classify ``images`` one at a time, as a camera would deliver them."""
        if len(ids) != len(images):
            raise ConfigError(f"got {len(images)} images but {len(ids)} ids")
        if len(images):
            self.warm_up(images[0])
        return [
            self.classify(image, input_id=input_id)
            for image, input_id in tqdm(
                zip(images, ids, strict=True),
                total=len(ids),
                desc=description,
                unit="input",
                disable=not show_progress,
            )
        ]
