"""The per-input selector: speculate on the device, send straight to the cloud, or run the master here.

SIEVE's rule (thesis section 4.3.2) compares, for the current link, the cost of sending the input
to the cloud master, ``L_t``, with the cost of speculating, ``L_m + P_r x L_t``, where ``L_m`` is the
speculative model's time on the device and ``P_r`` the detector's escalation probability (energy
likewise). M&MNet (thesis 5.2) adds a minion pair, ``L_m1 + L_m2 + P_r x L_master``, and a master on
the device, so recoveries (and whole inputs) can also run here: the master is placed where it is
cheaper, ``L_t`` against ``L_master``, and the placement follows the link as ``L_t`` changes.

With several speculative variants the cheapest one wins per input, so when a variant loses on the
current link the selector moves to another (the thesis' topology swap). The objective is the
user's: latency, energy, or a weighted mix of both normalised by the dearest option, so the two
units can be added. A deadline (seed 000) reorders the choice: options whose master-level answer
fits the slack come first, by objective; if none fits, the fastest speculative model answers
alone and its doubtful answers are flagged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from specedge.errors import ConfigError

__all__ = ["Action", "Choice", "Costs", "LocalOption", "Objective", "choose"]


class Action(str, Enum):
    """What to do with one input."""

    SPECULATE = "speculate"  # a speculative model on the device, recovery if the detector doubts it
    CLOUD = "cloud"  # straight to the cloud master
    DEVICE_MASTER = "device-master"  # the master on the device


@dataclass(frozen=True)
class Costs:
    """Expected time and device energy of one option for one input."""

    latency_s: float
    energy_mj: float


@dataclass(frozen=True)
class LocalOption:
    """A model on the device, priced on the device model (simulator), with its detector's ``P_r``."""

    model_id: str
    latency_s: float
    energy_mj: float
    escalation_probability: float | None = None  # None for the master: it never escalates

    def __post_init__(self) -> None:
        values = (self.latency_s, self.energy_mj)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ConfigError(
                f"local model {self.model_id!r}: latency and energy must be finite and >= 0; got {values}"
            )
        p_r = self.escalation_probability
        if p_r is not None and not 0 <= p_r <= 1:
            raise ConfigError(f"local model {self.model_id!r}: P_r must lie in [0, 1]; got {p_r}")


@dataclass(frozen=True)
class Objective:
    """What the selector minimises: ``latency_weight`` x latency + (1 - weight) x energy, each normalised."""

    latency_weight: float

    def __post_init__(self) -> None:
        if not 0 <= self.latency_weight <= 1:
            raise ConfigError(f"an objective's latency weight must lie in [0, 1]; got {self.latency_weight}")

    @classmethod
    def parse(cls, text: str) -> Objective:
        """An objective from latency, energy or mix:W (W the latency weight, e.g. mix:0.5)."""
        if text == "latency":
            return cls(1.0)
        if text == "energy":
            return cls(0.0)
        if text.startswith("mix:"):
            try:
                return cls(float(text[4:]))
            except ValueError:
                pass
        raise ConfigError(f"unknown objective {text!r}; expected latency, energy or mix:W with W in [0, 1]")

    def describe(self) -> str:
        """The form :meth:`parse` reads."""
        if self.latency_weight == 1:
            return "latency"
        if self.latency_weight == 0:
            return "energy"
        return f"mix:{self.latency_weight:g}"


@dataclass(frozen=True)
class Choice:
    """The selector's decision for one input and what it expected of every alternative."""

    action: Action
    model_id: str | None  # the speculative model to run (SPECULATE only)
    recovery: Action | None  # where an escalation goes: CLOUD, DEVICE_MASTER, or None (none reachable)
    recovery_fits: bool  # the recovery is expected to finish within the deadline (True without one)
    expected: dict[str, Costs] = field(default_factory=dict)  # per alternative: "speculate:ID", "cloud", ...

    @property
    def label(self) -> str:
        """``speculate:ID``, ``cloud`` or ``device-master``."""
        return self.action.value if self.model_id is None else f"{self.action.value}:{self.model_id}"


def _score(costs: Costs, objective: Objective, scale: Costs) -> float:
    w = objective.latency_weight
    return w * costs.latency_s / scale.latency_s + (1 - w) * costs.energy_mj / scale.energy_mj


def choose(
    speculative: Sequence[LocalOption],
    *,
    master: LocalOption | None,
    cloud: Costs | None,
    objective: Objective,
    slack_s: float | None = None,
    allow_speculate: bool = True,
) -> Choice:
    """The cheapest option for one input.

    Args:
        speculative: the speculative models (or pairs) on the device.
        master: the master on the device, if it is there.
        cloud: ``L_t`` / ``E_t`` of one request to the cloud master now, None if the cloud may not be used.
        objective: what to minimise.
        slack_s: time left before the input's deadline (None: no deadline).
        allow_speculate: False when the master must answer (mission-critical mode).
    """
    recoveries: dict[Action, Costs] = {}
    if cloud is not None:
        recoveries[Action.CLOUD] = cloud
    if master is not None:
        recoveries[Action.DEVICE_MASTER] = Costs(master.latency_s, master.energy_mj)
    options = {
        action.value: _Option(action, None, None, costs, costs.latency_s) for action, costs in recoveries.items()
    }
    if allow_speculate:
        for local in speculative:
            options[f"speculate:{local.model_id}"] = _speculation(local, recoveries, objective, slack_s)
    if not options:
        raise ConfigError("the selector has nothing to choose from: no local model, no master on the device, no cloud")
    expected = {label: option.expected for label, option in options.items()}
    scale = Costs(
        max(c.latency_s for c in expected.values()) or 1.0,
        max(c.energy_mj for c in expected.values()) or 1.0,
    )
    fitting = [label for label, option in options.items() if slack_s is None or option.master_answer_s <= slack_s]
    if fitting:
        label = min(fitting, key=lambda k: (_score(expected[k], objective, scale), options[k].local is None))
    else:  # no master-level answer fits the deadline: the fastest model answers, doubtful answers flagged
        pool = [k for k, option in options.items() if option.local is not None] or list(options)
        label = min(pool, key=lambda k: options[k].first_answer_s)
    chosen = options[label]
    return Choice(
        action=chosen.action,
        model_id=None if chosen.local is None else chosen.local.model_id,
        recovery=chosen.recovery,
        recovery_fits=bool(fitting),
        expected=expected,
    )


@dataclass(frozen=True)
class _Option:
    action: Action
    local: LocalOption | None  # the speculative model it runs
    recovery: Action | None
    expected: Costs
    master_answer_s: float  # worst case until a master-level answer (recovery included)

    @property
    def first_answer_s(self) -> float:
        """Time until any answer: the local model's, or the master's for a master option."""
        return self.expected.latency_s if self.local is None else self.local.latency_s


def _speculation(
    local: LocalOption, recoveries: dict[Action, Costs], objective: Objective, slack_s: float | None
) -> _Option:
    """Speculating with ``local``; recoveries go where the objective prefers among placements that fit.

    If no placement fits the deadline, the preferred one is kept (and the option does not fit).
    """
    p_r = local.escalation_probability or 0.0
    if not recoveries:  # no master to recover on: doubtful answers stay local (flagged), no master-level answer
        return _Option(Action.SPECULATE, local, None, Costs(local.latency_s, local.energy_mj), math.inf)
    scale = Costs(
        max(c.latency_s for c in recoveries.values()) or 1.0,
        max(c.energy_mj for c in recoveries.values()) or 1.0,
    )
    ranked = sorted(recoveries, key=lambda a: (_score(recoveries[a], objective, scale), a is not Action.CLOUD))
    fitting = [a for a in ranked if slack_s is None or local.latency_s + recoveries[a].latency_s <= slack_s]
    placement = (fitting or ranked)[0]
    recovery = recoveries[placement]
    return _Option(
        Action.SPECULATE,
        local,
        placement,
        Costs(local.latency_s + p_r * recovery.latency_s, local.energy_mj + p_r * recovery.energy_mj),
        local.latency_s + recovery.latency_s,
    )
