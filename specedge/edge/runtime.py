"""The edge runtime: every input gets an answer, with its provenance, whatever the network and the cloud do.

One input flows through :meth:`EdgeRuntime.classify` (thesis 4.3, 5.2; seed 000 for deadlines):

    image -> policy.plan (mode, selector, history, cloud health, deadline)
          -> speculate: local model -> detector -> [doubtful: recovery on the cloud or device master]
          -> cloud: the cloud master            (falls back to the best local answer if the call fails)
          -> device-master: the master here
          -> one record (answer, route, verified, flag, timings)

The policy (:mod:`.policy`) decides; this module executes and reports back. A cloud call is a
step whose failure is a value: the error's kind (unavailable, timeout, overloaded, rejected,
protocol; mapped once in :mod:`.cloud_client`) becomes the answer's ``flag``, the local answer
already computed is kept, and the cloud's health (:mod:`.cloud_health`) backs off and probes.
Each call's timeout comes from the link estimate, capped so the answer still lands within the
input's deadline. :meth:`EdgeRuntime.stream` yields records as inputs complete; a bad input gets an
error record and the stream goes on. All time comes from the injected clock.

In normal mode an optional :class:`~specedge.detector.audit.AgreementAudit` also sends a small
random share of the *kept* answers to the master and compares; with a
:class:`~specedge.detector.audit.RecalibrationBuffer` its drift alarm sends every input to the
master until the detector is refitted on master-answered inputs (no labels needed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from specedge.backends import ModelRunner, PairRunner
from specedge.detector import MisspeculationDetector, probability_from_score, score_logits
from specedge.detector.audit import AgreementAudit, RecalibrationBuffer
from specedge.edge.clock import Clock
from specedge.edge.cloud_client import CloudClient, CloudResponse
from specedge.edge.cloud_health import CloudHealth
from specedge.edge.history import SpeculationHistory
from specedge.edge.link_estimate import LinkEstimate
from specedge.edge.policy import Mode, Payload, Plan, Policy
from specedge.edge.records import InferenceRecord, Route
from specedge.edge.selector import Action, LocalOption, Objective
from specedge.errors import CloudError, ConfigError, TensorError
from specedge.simulator.wire import infer_message_sizes

__all__ = ["EdgeInput", "EdgeRuntime", "LocalModel"]

DEFAULT_STREAM = "default"


@dataclass
class LocalModel:
    """A model on the device: its runner, detector(s) and per-input cost on the device model.

    A speculative model needs a detector (a minion pair: the pair detector); the master has none.
    ``relaxed_detector`` (e.g. calibrated for 99%) is what power-saving mode uses.
    """

    model_id: str
    runner: ModelRunner
    detector: MisspeculationDetector | None = None
    latency_s: float = 0.0
    energy_mj: float = 0.0
    relaxed_detector: MisspeculationDetector | None = None

    def option(self, *, relaxed: bool = False) -> LocalOption:
        """This model as the selector sees it."""
        detector = self.relaxed_detector if relaxed else self.detector
        p_r = None if detector is None else float(detector.escalation_rate_)
        return LocalOption(self.model_id, self.latency_s, self.energy_mj, p_r)


@dataclass(frozen=True)
class EdgeInput:
    """One input of a stream: an image, or the reason it could not be read."""

    input_id: str
    image: np.ndarray | None
    stream: str = DEFAULT_STREAM
    deadline_s: float | None = None  # answer within this many seconds of being taken up
    error: str | None = None  # e.g. "cannot decode cat.jpg: ..."


@dataclass
class _Trace:
    """What happened to one input so far; :meth:`record` is the one place a record is built."""

    input_id: str
    stream: str
    start_s: float
    deadline_s: float | None
    decision: str = ""
    route: Route | None = None
    answer: int | None = None
    answered_by: str | None = None
    verified: bool = False
    flag: str | None = None
    local_model: str | None = None
    local_prediction: int | None = None
    confidence: float | None = None
    escalate: bool = False
    local_s: float = 0.0
    ran_local: bool = False
    response: CloudResponse | None = None
    attempts: int = 0
    cloud_failure: str | None = None
    audited: bool = False
    error: str | None = None
    logits: np.ndarray | None = field(default=None, repr=False)

    @property
    def cloud_prediction(self) -> int | None:
        return None if self.response is None else int(self.response.logits[0].argmax())

    def record(self, *, epoch_s: float, end_s: float) -> InferenceRecord:
        r = self.response
        us = _us
        return InferenceRecord(
            input_id=self.input_id,
            stream=self.stream,
            start_s=self.start_s - epoch_s,
            route=self.route,
            prediction=self.answer,
            answered_by=self.answered_by,
            confidence=self.confidence,
            verified=self.verified,
            flag=self.flag,
            decision=self.decision,
            local_model=self.local_model,
            local_prediction=self.local_prediction,
            cloud_prediction=self.cloud_prediction,
            local_us=us(self.local_s) if self.ran_local else None,
            transfer_us=None if r is None else max(r.round_trip_us - r.queue_time_us - r.compute_time_us, 0),
            cloud_round_trip_us=None if r is None else r.round_trip_us,
            cloud_queue_us=None if r is None else r.queue_time_us,
            cloud_compute_us=None if r is None else r.compute_time_us,
            total_us=us(end_s - self.start_s),
            deadline_us=None if self.deadline_s is None else us(self.deadline_s),
            request_bytes=None if r is None else r.request_bytes,
            response_bytes=None if r is None else r.response_bytes,
            attempts=self.attempts,
            cloud_failure=self.cloud_failure,
            audited=self.audited,
            error=self.error,
        )


def _us(seconds: float) -> int:
    return round(seconds * 1e6)


class EdgeRuntime:
    """Runs inputs through the policy's plans on the local models, the device master and the cloud.

    Args:
        speculative: speculative models (or minion pairs) on the device, in preference order.
        master: the master on the device (the mobile-only baseline, or a recovery target).
        cloud: a client for the cloud master.
        mode: the user's mode; switch at run time with :attr:`mode`.
        objective: what the selector minimises ("latency", "energy", "mix:W" or an Objective).
        selector: choose per input (True) or always speculate with the first model (False).
        link: the live link estimate (required by the selector).
        payload: one escalation's expected sizes and server time; measured by :meth:`warm_up` if None.
        history: speculation history (None: off).
        health: the cloud's health tracker (default settings if None).
        audit, recalibration: detector drift audit and label-free re-calibration (normal mode).
        clock: seconds on a monotonic scale (tests inject :class:`~specedge.edge.clock.ManualClock`).
        timeouts: keyword arguments for the policy's cloud timeouts (factor, margin, max).
    """

    def __init__(
        self,
        *,
        speculative: Sequence[LocalModel] = (),
        master: LocalModel | None = None,
        cloud: CloudClient | None = None,
        mode: Mode | str = Mode.NORMAL,
        objective: Objective | str = "energy",
        selector: bool = False,
        link: LinkEstimate | None = None,
        payload: Payload | None = None,
        history: SpeculationHistory | None = None,
        health: CloudHealth | None = None,
        audit: AgreementAudit | None = None,
        recalibration: RecalibrationBuffer | None = None,
        clock: Clock = time.perf_counter,
        timeouts: dict[str, float] | None = None,
    ) -> None:
        for model in speculative:
            if model.detector is None:
                raise ConfigError(f"speculative model {model.model_id!r} needs a detector")
            if isinstance(model.runner, PairRunner) and model.detector.policy != "pair":
                raise ConfigError(f"minion pair {model.model_id!r} needs the pair detector (policy 'pair')")
        ids = [m.model_id for m in speculative]
        if len(set(ids)) != len(ids):
            raise ConfigError(f"local model ids must be unique; got {ids}")
        if master is not None and master.detector is not None:
            raise ConfigError("the device master answers for itself: it takes no detector")
        if audit is not None and not speculative:
            raise ConfigError("an audit checks a speculative model's detector: give a speculative model")
        if recalibration is not None and audit is None:
            raise ConfigError("re-calibration starts on the audit's drift alarm; give an audit too")
        self.models = {m.model_id: m for m in speculative}
        self.master = master
        self.cloud = cloud
        relaxed = {
            m.model_id: float(m.relaxed_detector.escalation_rate_)
            for m in speculative
            if m.relaxed_detector is not None
        }
        self.policy = Policy(
            speculative=[m.option() for m in speculative],
            master=None if master is None else master.option(),
            cloud=cloud is not None,
            mode=Mode(mode),
            objective=objective if isinstance(objective, Objective) else Objective.parse(objective),
            selector=selector,
            link=link,
            payload=payload,
            health=health,
            history=history,
            relaxed=relaxed,
            **(timeouts or {}),
        )
        self.audit = audit
        self.recalibration = recalibration
        self.recalibrating = False  # after a drift alarm: every input goes to the master until the buffer is full
        self.recalibrations = 0
        self._clock = clock
        self._epoch_s = clock()
        self.warm = False  # set by warm_up(); stream() warms up on its first good image otherwise

    # --- user knobs ----------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The user's mode (thesis 4.3.2); switching takes effect with the next input."""
        return self.policy.mode

    @mode.setter
    def mode(self, mode: Mode | str) -> None:
        self.policy.mode = Mode(mode)

    # --- set-up --------------------------------------------------------------------------------

    def warm_up(self, image: np.ndarray) -> None:
        """Run every local model once and make one real cloud call, so first-call costs stay out of records.

        Without a given payload, the selector prices escalations of this image's size (the real
        serialised messages; server time learnt from the warm-up call). A cloud that cannot be
        reached here is not an error: the health tracker learns it and the stream goes on locally.
        """
        image = self._checked(image, "warm-up")
        self.warm = True
        classes = 0
        for model in [*self.models.values(), *([self.master] if self.master else [])]:
            classes = int(model.runner.logits(image[None]).shape[-1])
        if self.cloud is None or self.mode is Mode.PRIVATE:
            return
        server_s = 0.0
        try:
            self.cloud.wait_until_ready(timeout_s=self.policy.max_timeout_s)
            response = self.cloud.infer(image[None], request_id="warm-up", timeout_s=self.policy.max_timeout_s)
            server_s = (response.queue_time_us + response.compute_time_us) / 1e6
            classes = int(response.logits.shape[-1])
        except CloudError as exc:
            self.policy.observe_failure(now_s=self._clock(), kind=getattr(exc, "kind", "unavailable"))
        if self.policy.payload is None and classes:
            sizes = infer_message_sizes(image.shape, classes, model_name=self.cloud.model_name)
            self.policy.payload = Payload(sizes.request_bytes, sizes.response_bytes, server_s)

    def _checked(self, image: object, input_id: str) -> np.ndarray:
        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise TensorError(f"input {input_id}: expected a uint8 (C, H, W) image; got {got}")
        return image

    # --- one input -----------------------------------------------------------------------------

    def classify(
        self,
        image: np.ndarray,
        *,
        input_id: str,
        stream: str = DEFAULT_STREAM,
        deadline_s: float | None = None,
    ) -> InferenceRecord:
        """Answer one uint8 ``(C, H, W)`` image; a bad image gets an error record, not an exception."""
        if deadline_s is not None and not deadline_s > 0:
            raise ConfigError(f"input {input_id}: a deadline must be > 0 seconds; got {deadline_s}")
        trace = _Trace(input_id, stream, self._clock(), deadline_s)
        try:
            self._answer(trace, self._checked(image, input_id))
        except TensorError as exc:  # the image does not fit the models: this input fails, the stream goes on
            trace.error, trace.route, trace.answer = str(exc), None, None
            trace.answered_by, trace.verified, trace.flag = None, False, None
        return trace.record(epoch_s=self._epoch_s, end_s=self._clock())

    def _answer(self, trace: _Trace, image: np.ndarray) -> None:
        deadline_at = None if trace.deadline_s is None else trace.start_s + trace.deadline_s
        plan = self.policy.plan(stream=trace.stream, now_s=trace.start_s, deadline_at_s=deadline_at)
        trace.decision = plan.reason
        if self.recalibrating:  # after a drift alarm every input is replayed on the master, logits kept
            trace.decision = "re-calibrating: every input to the master"
            model = next(iter(self.models.values()))
            self._run_local(trace, image, model, detect=True)
            trace.route, trace.answer, trace.answered_by = Route.LOCAL, trace.local_prediction, model.model_id
            trace.escalate = True
            if not self._ask_cloud(trace, image, deadline_at, route=Route.ESCALATED):
                trace.flag = trace.cloud_failure
        elif plan.action is Action.CLOUD:
            if not self._ask_cloud(trace, image, deadline_at, route=Route.CLOUD):
                self._fall_back(trace, image, deadline_at)
        elif plan.action is Action.DEVICE_MASTER:
            self._run_master(trace, image)
        else:
            self._speculate(trace, image, plan, deadline_at)
        master = trace.cloud_prediction if trace.route is Route.ESCALATED else None
        if trace.route is Route.DEVICE_MASTER and trace.escalate:
            master = trace.answer
        self.policy.observe_input(
            trace.stream,
            trace.start_s,
            escalated=trace.escalate,
            master_agreed=None if master is None else master == trace.local_prediction,
        )

    def _speculate(self, trace: _Trace, image: np.ndarray, plan: Plan, deadline_at: float | None) -> None:
        assert plan.model_id is not None
        self._run_local(trace, image, self.models[plan.model_id], detect=plan.detect)
        trace.route, trace.answer, trace.answered_by = Route.LOCAL, trace.local_prediction, plan.model_id
        if not plan.detect:
            trace.flag = plan.blocked  # the master could not be reached at all (mission-critical)
            return
        if self.audit is not None and self.mode is Mode.NORMAL:
            self._audit(trace, image, deadline_at)
        if not trace.escalate:
            return
        where, flag = self.policy.recovery(plan, now_s=self._clock(), deadline_at_s=deadline_at)
        if where is Action.CLOUD and self._ask_cloud(trace, image, deadline_at, route=Route.ESCALATED):
            return
        if where is Action.CLOUD:  # the call failed: the master on the device, if it still fits
            where, flag = self.policy.recovery(
                Plan(Action.SPECULATE, plan.model_id, True, Action.DEVICE_MASTER, None, ""),
                now_s=self._clock(),
                deadline_at_s=deadline_at,
            )
            flag = trace.cloud_failure if where is None else flag
        if where is Action.DEVICE_MASTER:
            self._run_master(trace, image)
        else:
            trace.flag = flag

    def _fall_back(self, trace: _Trace, image: np.ndarray, deadline_at: float | None) -> None:
        """The cloud failed an input sent straight to it: the best local answer, flagged with the failure."""
        failure = trace.cloud_failure
        now = self._clock()
        if self.master is not None and (deadline_at is None or now + self.master.latency_s <= deadline_at):
            self._run_master(trace, image)
            return
        if not self.models:
            trace.route, trace.answer, trace.answered_by, trace.flag = None, None, None, failure
            trace.error = f"input {trace.input_id}: the cloud failed ({failure}) and no model is on the device"
            return
        model = next(iter(self.models.values()))
        self._run_local(trace, image, model, detect=True)
        trace.route, trace.answer, trace.answered_by = Route.LOCAL, trace.local_prediction, model.model_id
        trace.verified = False
        trace.flag = failure if (trace.escalate or self.mode is Mode.MISSION_CRITICAL) else None

    # --- steps ---------------------------------------------------------------------------------

    def _run_local(self, trace: _Trace, image: np.ndarray, model: LocalModel, *, detect: bool) -> None:
        """The speculative model and (unless told not to) its detector."""
        start = self._clock()
        logits = model.runner.logits(image[None]).astype(np.float64)
        detector = model.relaxed_detector if self.mode is Mode.POWER_SAVING else model.detector
        if detect and detector is not None:
            decisions = detector.decide(logits)
            prediction, confidence = int(decisions.predictions[0]), float(decisions.confidence[0])
            trace.escalate = bool(decisions.escalate[0])
        else:
            flat = logits if logits.ndim == 2 else logits[:, 0]  # a pair without its detector: the first minion
            prediction = int(flat.argmax())
            confidence = float(probability_from_score("max_softmax", score_logits(flat, "max_softmax"))[0])
        trace.local_s += self._clock() - start
        trace.ran_local = True
        trace.local_model, trace.local_prediction, trace.confidence, trace.logits = (
            model.model_id,
            prediction,
            confidence,
            logits,
        )

    def _run_master(self, trace: _Trace, image: np.ndarray) -> None:
        assert self.master is not None
        start = self._clock()
        logits = self.master.runner.logits(image[None])
        trace.local_s += self._clock() - start
        trace.ran_local = True
        trace.route, trace.answer, trace.answered_by = Route.DEVICE_MASTER, int(logits[0].argmax()), "device-master"
        trace.verified, trace.flag = True, None

    def _ask_cloud(self, trace: _Trace, image: np.ndarray, deadline_at: float | None, *, route: Route) -> bool:
        """One cloud call; True if the master answered (the answer is then the cloud's)."""
        response = self._call(trace, image, deadline_at)
        if response is None:
            return False
        trace.response = response
        trace.route, trace.answer = route, trace.cloud_prediction
        trace.answered_by, trace.verified, trace.flag = (
            f"cloud:{self.cloud.model_name if self.cloud else ''}",
            True,
            None,
        )
        if self.recalibrating and trace.logits is not None:
            self._collect(trace.logits[0], int(trace.answer or 0))
        return True

    def _audit(self, trace: _Trace, image: np.ndarray, deadline_at: float | None) -> None:
        """The audit sees every detected input; a random share of kept answers is also sent to the master.

        An audited answer stays local; the audit learns whether the master agrees with it.
        """
        assert self.audit is not None
        master = None
        if not trace.escalate and self.audit.should_audit():
            trace.audited = True
            response = self._call(trace, image, deadline_at)
            if response is not None:
                trace.response = response
                master = int(response.logits[0].argmax())
        alarm = self.audit.observe(
            kept=not trace.escalate,
            speculative=trace.local_prediction if master is not None else None,
            master=master,
        )
        self.recalibrating = alarm and self.recalibration is not None

    def _call(self, trace: _Trace, image: np.ndarray, deadline_at: float | None) -> CloudResponse | None:
        """The RPC as a value: the response, or None with the failure's kind in the trace."""
        assert self.cloud is not None
        started = self._clock()
        timeout = self.policy.cloud_timeout_s(now_s=started, deadline_at_s=deadline_at, reserve_s=self._reserve_s())
        trace.attempts += 1
        try:
            response = self.cloud.infer(image[None], request_id=trace.input_id, timeout_s=timeout)
        except CloudError as exc:
            kind = getattr(exc, "kind", "unavailable")
            trace.cloud_failure = kind
            self.policy.observe_failure(now_s=self._clock(), kind=kind)
            return None
        self.policy.observe_cloud(
            started_s=started,
            ended_s=self._clock(),
            request_bytes=response.request_bytes,
            response_bytes=response.response_bytes,
            server_s=(response.queue_time_us + response.compute_time_us) / 1e6,
        )
        return response

    def _reserve_s(self) -> float:
        """Time to keep after a failed call for the local fallback: the fastest model on the device."""
        costs = [m.latency_s for m in self.models.values()]
        return min(costs) if costs else 0.0

    def _collect(self, logits: np.ndarray, master_prediction: int) -> None:
        """Re-calibration after a drift alarm: gather master-answered inputs, then refit label-free."""
        assert self.recalibration is not None and self.audit is not None
        self.recalibration.add(logits, master_prediction)
        if self.recalibration.full:
            model = next(iter(self.models.values()))
            assert model.detector is not None
            model.detector = self.recalibration.refit(model.detector, target=self.audit.target)
            self.audit.reset()
            self.recalibrating = False
            self.recalibrations += 1

    # --- streams -------------------------------------------------------------------------------

    def stream(self, inputs: Iterable[EdgeInput]) -> Iterator[InferenceRecord]:
        """Records as inputs complete, one per input, in order.

        The first good image warms the runtime up, unless :meth:`warm_up` already ran.
        """
        for item in inputs:
            if item.image is None or item.error is not None:
                yield self._unreadable(item)
                continue
            if not self.warm:
                try:
                    self.warm_up(item.image)
                except TensorError:
                    self.warm = False  # this input's own record says what is wrong with it
            yield self.classify(item.image, input_id=item.input_id, stream=item.stream, deadline_s=item.deadline_s)

    def _unreadable(self, item: EdgeInput) -> InferenceRecord:
        now = self._clock()
        trace = _Trace(item.input_id, item.stream, now, item.deadline_s, decision="unreadable")
        trace.error = item.error or f"input {item.input_id}: no image"
        return trace.record(epoch_s=self._epoch_s, end_s=now)

    def run(
        self,
        images: np.ndarray,
        *,
        ids: Sequence[str],
        show_progress: bool = False,
        description: str = "edge",
        deadline_s: float | None = None,
    ) -> list[InferenceRecord]:
        """Classify ``images`` one at a time, as a camera would deliver them; one record each."""
        if len(ids) != len(images):
            raise ConfigError(f"got {len(images)} images but {len(ids)} ids")
        inputs = (EdgeInput(i, image, deadline_s=deadline_s) for i, image in zip(ids, images, strict=True))
        return list(
            tqdm(self.stream(inputs), total=len(ids), desc=description, unit="input", disable=not show_progress)
        )
