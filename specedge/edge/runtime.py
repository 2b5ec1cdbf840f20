"""The edge runtime: answer each input locally, escalate it, or send it straight to the cloud.

One input flows through :meth:`EdgeRuntime.classify`:

    image -> route (by mode) -> local model -> detector -> [escalate: cloud master] -> record

``Mode`` is the user's knob from SIEVE (thesis section 4.3.2): ``speculate`` is the normal
mode (speculative model on the device, misspeculation detector, cloud recovery),
``cloud`` is mission-critical (every input to the master), ``local`` is private (nothing leaves
the device; with the master as local model it is the mobile-only baseline). The per-input
cost-based selector, speculation history, deadlines and failure handling plug in at
:meth:`EdgeRuntime._route` and around the cloud call without changing the record format.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from specedge.edge.cloud_client import CloudClient
from specedge.edge.detector import ConfidenceThresholdDetector
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
    """Everything measured about one input; the unit that reports and simulators consume."""

    input_id: str
    route: Route
    prediction: int
    local_prediction: int | None
    confidence: float | None
    cloud_prediction: int | None
    local_us: int  # local model + detector, measured on this device
    cloud_round_trip_us: int  # client-side time of the RPC (0 if the cloud was not used)
    cloud_queue_us: int  # server-reported wait before compute
    cloud_compute_us: int  # server-reported model time
    total_us: int
    request_bytes: int
    response_bytes: int

    @property
    def reached_cloud(self) -> bool:
        """Whether this input was sent to the cloud."""
        return self.route is not Route.LOCAL

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
        local_model: ImageClassifier | None = None,
        detector: ConfidenceThresholdDetector | None = None,
        cloud: CloudClient | None = None,
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
        self.mode = mode
        self.local_model = local_model.eval() if local_model is not None else None
        self.detector = detector
        self.cloud = cloud

    def warm_up(self, image: np.ndarray) -> None:
        """Run the local model once and check the cloud is ready, so first-call costs stay out of records."""
        if self.local_model is not None:
            self._run_local(image)
        if self.cloud is not None:
            self.cloud.wait_until_ready(timeout_s=10.0)

    def _route(self) -> Route:
        """Where an input starts: the cost-based selector replaces this with a per-input decision."""
        return Route.CLOUD if self.mode is Mode.CLOUD else Route.LOCAL

    @torch.inference_mode()
    def _run_local(self, image: np.ndarray) -> np.ndarray:
        assert self.local_model is not None
        logits = self.local_model(torch.from_numpy(image[None]))
        return torch.softmax(logits.float(), dim=1).numpy()

    def classify(self, image: np.ndarray, *, input_id: str) -> InferenceRecord:
        """Answer one uint8 ``(C, H, W)`` image."""
        if image.dtype != np.uint8 or image.ndim != 3:
            raise TensorError(f"input {input_id}: expected a uint8 (C, H, W) image; got {image.dtype} {image.shape}")
        start = time.perf_counter_ns()
        route = self._route()
        local_prediction = confidence = None
        local_us = 0
        if route is Route.LOCAL:
            assert self.local_model is not None
            probs = self._run_local(image)
            local_prediction = int(probs.argmax())
            confidence = float(probs.max())
            if self.mode is Mode.SPECULATE:
                assert self.detector is not None
                if bool(self.detector.escalate(probs)[0]):
                    route = Route.ESCALATED
            local_us = (time.perf_counter_ns() - start) // 1000
        if route is Route.LOCAL:
            assert local_prediction is not None
            total_us = (time.perf_counter_ns() - start) // 1000
            return InferenceRecord(
                input_id=input_id,
                route=route,
                prediction=local_prediction,
                local_prediction=local_prediction,
                confidence=confidence,
                cloud_prediction=None,
                local_us=local_us,
                cloud_round_trip_us=0,
                cloud_queue_us=0,
                cloud_compute_us=0,
                total_us=total_us,
                request_bytes=0,
                response_bytes=0,
            )
        assert self.cloud is not None
        response = self.cloud.infer(image[None], request_id=input_id)
        cloud_prediction = int(response.logits[0].argmax())
        total_us = (time.perf_counter_ns() - start) // 1000
        return InferenceRecord(
            input_id=input_id,
            route=route,
            prediction=cloud_prediction,
            local_prediction=local_prediction,
            confidence=confidence,
            cloud_prediction=cloud_prediction,
            local_us=local_us,
            cloud_round_trip_us=response.round_trip_us,
            cloud_queue_us=response.queue_time_us,
            cloud_compute_us=response.compute_time_us,
            total_us=total_us,
            request_bytes=response.request_bytes,
            response_bytes=response.response_bytes,
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
