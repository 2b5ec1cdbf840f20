"""The edge policy: plans each input from the mode, the selector, the history, the cloud's health and the deadline.

Thesis 4.3.2 lists what SIEVE's CNN selector weighs per input, and this module is that list:

* **user modes**, switchable at run time: *normal*; *mission-critical* (every input to the master,
  no speculation); *private* (nothing leaves the device: the master on the device if present, else
  the speculative answer, with doubtful ones flagged); *power-saving* (the relaxed detector each
  local model may carry, e.g. a 99% target, so fewer recoveries);
* the **selector** (:mod:`.selector`): ``L_t``/``E_t`` from the live link estimate, ``L_m``/``E_m``
  from the device model, ``P_r`` from the detector;
* **speculation history** (:mod:`.history`);
* **server load** and failures (:mod:`.cloud_health`): when round trips run far above their
  prediction, or calls fail, recovery is suspended (SIEVE) or moved to the master on the device
  (M&MNet) until a probe succeeds;
* **deadlines** (seed 000): the most accurate option expected within the slack; recovery only if
  it fits; each cloud call's timeout comes from the estimate, capped by the slack.

The policy only decides; :class:`~specedge.edge.runtime.EdgeRuntime` executes the plan and
reports back what happened (:meth:`Policy.observe_input`, :meth:`Policy.observe_cloud`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from specedge.edge.cloud_health import CloudHealth, HealthState
from specedge.edge.history import Advice, SpeculationHistory
from specedge.edge.link_estimate import LinkEstimate
from specedge.edge.selector import Action, Costs, LocalOption, Objective, choose
from specedge.errors import ConfigError

__all__ = ["Mode", "Payload", "Plan", "Policy"]


class Mode(str, Enum):
    """The user's knob (thesis 4.3.2)."""

    NORMAL = "normal"
    MISSION_CRITICAL = "mission-critical"
    PRIVATE = "private"
    POWER_SAVING = "power-saving"


@dataclass(frozen=True)
class Payload:
    """One escalation's expected message sizes and server time, for ``L_t`` and ``E_t``."""

    request_bytes: int
    response_bytes: int
    server_s: float


@dataclass(frozen=True)
class Plan:
    """What to do with one input, decided before it runs."""

    action: Action
    model_id: str | None  # the speculative model to run (SPECULATE)
    detect: bool  # ask the detector (False: the history trusts this scene, or no master can be reached)
    recovery: Action | None  # where a doubtful answer goes: CLOUD, DEVICE_MASTER, or None
    blocked: str | None  # with recovery None: the flag a doubtful answer gets (a key of records.FLAGS);
    # without detection (mission-critical, master unreachable), the flag every answer gets
    reason: str  # for the record: why this plan


class Policy:
    """Decides, per input, where it runs and where its recovery would go.

    Args:
        speculative: the speculative models on the device (cost and ``P_r`` each), in preference order.
        master: the master on the device, if it is there.
        cloud: whether a cloud master is configured at all.
        mode: the user's mode (settable later through :attr:`mode`).
        objective: what the selector minimises.
        selector: False to always speculate with the first model (recovering in the cloud when it can):
            the fixed SpecEdge of the thesis' measurements, and what the demo's simulator inputs use.
        link: the live link estimate (needed by the selector and for per-call timeouts).
        payload: expected sizes and server time of one escalation.
        health: the cloud's health (load detection and failure back-off).
        history: speculation history (None: off).
        relaxed: ``P_r`` per speculative model under its relaxed (power-saving) detector.
        timeout_factor: a cloud call may take this many times its predicted round trip ...
        timeout_margin_s: ... plus this (scheduling noise, first-call costs) ...
        max_timeout_s: ... but never longer than this, nor than the deadline's slack.
    """

    def __init__(
        self,
        *,
        speculative: Sequence[LocalOption],
        master: LocalOption | None,
        cloud: bool,
        mode: Mode = Mode.NORMAL,
        objective: Objective | None = None,
        selector: bool = True,
        link: LinkEstimate | None = None,
        payload: Payload | None = None,
        health: CloudHealth | None = None,
        history: SpeculationHistory | None = None,
        relaxed: dict[str, float] | None = None,
        timeout_factor: float = 4.0,
        timeout_margin_s: float = 0.25,
        max_timeout_s: float = 10.0,
    ) -> None:
        if selector and cloud and link is None:
            raise ConfigError("the selector needs a link estimate to price the cloud")
        if timeout_factor < 1 or timeout_margin_s < 0 or not max_timeout_s > 0:
            raise ConfigError(
                f"cloud timeouts need factor >= 1, margin >= 0 s, max > 0 s; got {timeout_factor}, "
                f"{timeout_margin_s}, {max_timeout_s}"
            )
        self.speculative = list(speculative)
        self.master = master
        self.cloud = cloud
        self.objective = objective or Objective(0.0)
        self.selector = selector
        self.link = link
        self.payload = payload
        self.health = health or CloudHealth()
        self.history = history
        self.relaxed = dict(relaxed or {})
        self.timeout_factor = timeout_factor
        self.timeout_margin_s = timeout_margin_s
        self.max_timeout_s = max_timeout_s
        # The hot path: consecutive inputs usually see the same link state and get the same plan.
        self._costs_cache: tuple[object, Costs] | None = None
        self._plan_cache: tuple[object, Plan] | None = None
        self.mode = mode  # checked against the models, through the setter

    # --- the mode --------------------------------------------------------------------------------

    @property
    def mode(self) -> Mode:
        """The user's mode; switching it takes effect with the next input."""
        return self._mode

    @mode.setter
    def mode(self, mode: Mode) -> None:
        self._check_mode(Mode(mode))
        self._mode = Mode(mode)

    def _check_mode(self, mode: Mode) -> None:
        if mode is Mode.MISSION_CRITICAL and not self.cloud and self.master is None:
            raise ConfigError("mission-critical mode sends every input to the master: give a cloud or a device master")
        if mode is not Mode.MISSION_CRITICAL and not self.speculative and self.master is None:
            raise ConfigError(f"mode {mode.value!r} runs on the device: give a local model or the master")
        if mode is Mode.POWER_SAVING and any(o.model_id not in self.relaxed for o in self.speculative):
            missing = [o.model_id for o in self.speculative if o.model_id not in self.relaxed]
            raise ConfigError(f"power-saving mode needs a relaxed detector for every local model; missing: {missing}")

    # --- planning ------------------------------------------------------------------------------

    def _cloud_state(self, now_s: float) -> str | None:
        """None if the cloud may be called now, else the flag that says why not."""
        if self.mode is Mode.PRIVATE:
            return "private"
        if not self.cloud:
            return "no-recovery"
        if self.health.allow(now_s):
            return None
        return "cloud-slow" if self.health.state is HealthState.SLOW else "cloud-down"

    def cloud_costs(self, now_s: float) -> Costs | None:
        """``L_t`` and ``E_t`` of one escalation now, from the live link estimate (None without one)."""
        if self.link is None or self.payload is None:
            return None
        key = (self.link.state_key(now_s), self.payload)
        if self._costs_cache is not None and self._costs_cache[0] == key:
            return self._costs_cache[1]
        p = self.payload
        costs = Costs(
            self.link.round_trip_s(p.request_bytes, p.response_bytes, p.server_s, at_s=now_s),
            self.link.transfer_energy_mj(p.request_bytes, p.response_bytes, at_s=now_s, server_s=p.server_s),
        )
        self._costs_cache = (key, costs)
        return costs

    def _options(self) -> list[LocalOption]:
        if self.mode is not Mode.POWER_SAVING:
            return self.speculative
        return [LocalOption(o.model_id, o.latency_s, o.energy_mj, self.relaxed[o.model_id]) for o in self.speculative]

    def plan(self, *, stream: str, now_s: float, deadline_at_s: float | None = None) -> Plan:
        """The plan for one input of ``stream`` taken up at ``now_s``."""
        blocked = self._cloud_state(now_s)
        slack_s = None if deadline_at_s is None else deadline_at_s - now_s
        advice = None if self.history is None else self.history.advice(stream, now_s)
        options = self._options()
        mission = self.mode is Mode.MISSION_CRITICAL
        if advice is Advice.TRUST and options and not mission:
            best = choose(options, master=None, cloud=None, objective=self.objective)
            reason = self._reason(best.label, advice, None, None, True)
            return Plan(Action.SPECULATE, best.model_id, detect=False, recovery=None, blocked=None, reason=reason)
        master_only = mission or advice is Advice.MASTER
        reachable = blocked is None or self.master is not None
        allow_speculate = bool(options) and (not master_only or not reachable)
        if self.selector and blocked is None and self.payload is None:
            raise ConfigError("the selector prices escalations from their payload: give one, or warm the runtime up")
        cloud = None
        if blocked is None:
            cloud = self.cloud_costs(now_s) or Costs(0.0, 0.0)  # without an estimate the cloud counts as free
        if not self.selector and allow_speculate and not master_only:
            recovery = Action.CLOUD if cloud is not None else (Action.DEVICE_MASTER if self.master else None)
            return Plan(
                Action.SPECULATE,
                options[0].model_id,
                detect=True,
                recovery=recovery,
                blocked=None if recovery else blocked,
                reason=f"{self.mode.value}: speculate:{options[0].model_id} (selector off)"
                + ("" if blocked in (None, "private", "no-recovery") else f"; {blocked}"),
            )
        key = (self._mode, advice, blocked, cloud, allow_speculate, self.objective)
        if slack_s is None and self._plan_cache is not None and self._plan_cache[0] == key:
            return self._plan_cache[1]
        plan = self._choose(options, cloud, blocked, advice, slack_s, allow_speculate=allow_speculate)
        if slack_s is None:
            self._plan_cache = (key, plan)
        return plan

    def _choose(
        self,
        options: list[LocalOption],
        cloud: Costs | None,
        blocked: str | None,
        advice: Advice | None,
        slack_s: float | None,
        *,
        allow_speculate: bool,
    ) -> Plan:
        """The selector's choice as a plan."""
        mission = self.mode is Mode.MISSION_CRITICAL
        choice = choose(
            options,
            master=self.master,
            cloud=cloud,
            objective=self.objective,
            slack_s=slack_s,
            allow_speculate=allow_speculate,
        )
        reason = self._reason(choice.label, advice, blocked, slack_s, choice.recovery_fits)
        if choice.action is not Action.SPECULATE:
            return Plan(choice.action, None, detect=False, recovery=None, blocked=None, reason=reason)
        if mission:  # the master cannot be reached: every answer is the speculative model's, all flagged
            return Plan(Action.SPECULATE, choice.model_id, detect=False, recovery=None, blocked=blocked, reason=reason)
        recovery = choice.recovery if choice.recovery_fits else None
        return Plan(
            Action.SPECULATE,
            choice.model_id,
            detect=True,
            recovery=recovery,
            blocked=None if recovery else ("deadline" if choice.recovery is not None else blocked or "no-recovery"),
            reason=reason,
        )

    def _reason(self, label: str, advice: Advice | None, blocked: str | None, slack_s: float | None, fits: bool) -> str:
        parts = [f"{self.mode.value}: {label}"]
        if advice is Advice.TRUST:
            parts.append("history: master agreed on the previous frame, no detection")
        elif advice is Advice.MASTER:
            parts.append("history: master disagreed on the previous frame")
        if blocked not in (None, "private", "no-recovery"):
            parts.append(blocked or "")
        if slack_s is not None and not fits:
            parts.append(f"deadline: no master-level answer fits {slack_s * 1e3:.1f} ms")
        return "; ".join(parts)

    def recovery(self, plan: Plan, *, now_s: float, deadline_at_s: float | None) -> tuple[Action | None, str | None]:
        """Where a doubtful answer goes now (after the local run), or None and the flag it gets."""
        if plan.recovery is None:
            return None, plan.blocked or "no-recovery"
        slack_s = math.inf if deadline_at_s is None else deadline_at_s - now_s
        if plan.recovery is Action.CLOUD:
            blocked = self._cloud_state(now_s)
            if blocked is None:
                costs = self.cloud_costs(now_s)
                if costs is None or costs.latency_s <= slack_s:
                    return Action.CLOUD, None
                blocked = "deadline"
            if self.master is not None and self.master.latency_s <= slack_s:
                return Action.DEVICE_MASTER, None
            return None, blocked
        if self.master is not None and self.master.latency_s <= slack_s:
            return Action.DEVICE_MASTER, None
        return None, "deadline"

    def cloud_timeout_s(self, *, now_s: float, deadline_at_s: float | None, reserve_s: float = 0.0) -> float:
        """The deadline of one cloud call: its predicted round trip x factor + margin, capped by the slack.

        ``reserve_s`` is kept back from the slack for what must still happen if the call fails (the
        local fallback), so a failed call still leaves an answer within the input's deadline.
        """
        timeout = self.max_timeout_s
        costs = self.cloud_costs(now_s)
        if costs is not None:
            timeout = min(timeout, costs.latency_s * self.timeout_factor + self.timeout_margin_s)
        if deadline_at_s is not None:
            timeout = min(timeout, deadline_at_s - now_s - reserve_s)
        return max(timeout, 1e-3)

    # --- feedback ------------------------------------------------------------------------------

    def observe_cloud(
        self,
        *,
        started_s: float,
        ended_s: float,
        request_bytes: int,
        response_bytes: int,
        server_s: float,
    ) -> None:
        """A successful cloud call: teach the link estimate, check the load."""
        round_trip_s = ended_s - started_s
        predicted = None
        if self.link is not None:
            predicted = self.link.round_trip_s(request_bytes, response_bytes, server_s, at_s=started_s)
            self.link.observe(request_bytes, response_bytes, round_trip_s, server_s, at_s=started_s)
            self.link.mark_transfer(started_s, ended_s, request_bytes=request_bytes, response_bytes=response_bytes)
        self.health.record_success(ended_s, round_trip_s, predicted if predicted is not None else round_trip_s)

    def observe_failure(self, *, now_s: float, kind: str) -> None:
        """A failed cloud call of ``kind`` (errors.CloudError.kind)."""
        self.health.record_failure(now_s, kind)

    def observe_input(self, stream: str, start_s: float, *, escalated: bool, master_agreed: bool | None) -> None:
        """What happened to an input, for the speculation history."""
        if self.history is not None:
            self.history.observe(stream, start_s, escalated=escalated, master_agreed=master_agreed)
