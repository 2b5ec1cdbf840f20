"""The misspeculation detector: per speculative answer, keep it or replay the input on the master.

:class:`MisspeculationDetector` is a scikit-learn estimator that orchestrates the pieces of
this package (thesis sections 4.3.3, 5.2.3 and 6.4):

1. a *score* of each speculative answer from its logits (:mod:`.scores`), optionally after
   temperature scaling (:mod:`.temperature`);
2. a *policy* that turns scores into a keep score with learned offsets: one threshold, one per
   predicted class (Dynamic Duo's heuristic or the exact optimum) or M&MNet's minion-pair rule
   (:mod:`.policies`);
3. the threshold on that keep score, either fitted to meet the target on the calibration data
   (``delta=None``, what SIEVE and Dynamic Duo do) or certified by Learn-then-Test so that the
   target holds with probability at least ``1 - delta`` on exchangeable inputs
   (:mod:`.guarantee`).

The target is a *quality*: ``accuracy`` (system accuracy >= ``target`` x master accuracy; needs
labels) or ``agreement`` (the final answer equals the master's on at least ``target`` of the
inputs; needs no labels, so traffic the master answered can (re)calibrate it).

When a certified policy learns anything from data (a temperature, per-class or per-minion
offsets), it learns it on a seeded ``learn_fraction`` of the calibration inputs and certifies
on the rest, so that the test sees data its hypotheses were not fitted to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from specedge.detector import policies
from specedge.detector.guarantee import NotCertifiable, certify_accuracy, certify_agreement
from specedge.detector.outcomes import OutcomeStats, outcome_masks
from specedge.detector.outputs import ModelOutputs
from specedge.detector.scores import SCORE_LIMIT, SCORES, probability_from_score, score_logits
from specedge.detector.temperature import TemperatureScaler
from specedge.errors import ConfigError

__all__ = [
    "DETECTOR_KIND",
    "POLICIES",
    "QUALITIES",
    "Decisions",
    "MisspeculationDetector",
    "check_target",
    "load_detector",
]

DETECTOR_KIND = "misspeculation-detector"
POLICIES = ("threshold", "per-class-heuristic", "per-class-optimal", "pair")
QUALITIES = ("accuracy", "agreement")
#: Keep score of an input the minions disagree on: always escalated.
_DISAGREE = -SCORE_LIMIT


def check_target(quality: str, target: float) -> None:
    """:class:`ConfigError` unless ``target`` makes sense for ``quality`` (callers check early with it)."""
    if quality == "agreement" and not 0 < target < 1:
        raise ConfigError(f"an agreement target must lie in (0, 1); got {target}")
    if quality == "accuracy" and not 0 < target <= 1.5:
        raise ConfigError(f"an accuracy target (fraction of the master's accuracy) must lie in (0, 1.5]; got {target}")


@dataclass(frozen=True, eq=False)
class Decisions:
    """A detector's verdict on a batch: arrays of length N."""

    predictions: np.ndarray  # the speculative answer
    confidence: np.ndarray  # its score on the [0, 1] scale users read
    keep_scores: np.ndarray
    escalate: np.ndarray  # True: replay the input on the master


class MisspeculationDetector(BaseEstimator):  # type: ignore[misc]
    """Decides per input whether the speculative answer stands or the master must answer.

    Args:
        policy: one of :data:`POLICIES`. ``pair`` takes logits of two minions, ``(N, 2, K)``.
        score: confidence score, one of ``max_softmax``, ``margin``, ``entropy``.
        quality: ``accuracy`` (needs labels) or ``agreement`` with the master (label-free).
        target: for accuracy, the fraction of the master's accuracy to keep (1.0 = match it,
            0.99 = SIEVE's relaxed mode); for agreement, the fraction of answers equal to the
            master's (below 1).
        delta: failure probability of the guarantee; None fits the threshold to the calibration
            data without a guarantee (the seeds' method).
        temperature: fit a temperature to the logits before scoring (a certified detector then has
            something learned, so it splits its calibration inputs; see ``learn_fraction``).
        learn_fraction: share of the calibration inputs that fit a certified policy's learned
            parts; the rest certifies. Unused when nothing is learned or ``delta`` is None.
        n_starts: fixed-sequence starts of the test (``delta`` is split between them); None
            picks 1 where the risk falls monotonically towards escalating more (agreement,
            accuracy below 100%) and 8 otherwise.
        random_state: seed of the learn/certify split and of the sequential test's input order.
    """

    temperature_: np.ndarray
    offsets_: np.ndarray
    threshold_: float
    num_classes_: int
    p_value_: float | None
    n_starts_: int | None
    n_learn_: int
    n_certify_: int
    escalation_rate_: float
    escalation_rate_per_class_: np.ndarray
    agreement_: float
    master_accuracy_: float | None
    speculative_accuracy_: float | None
    system_accuracy_: float | None
    outcomes_: OutcomeStats

    def __init__(
        self,
        *,
        policy: str = "threshold",
        score: str = "max_softmax",
        quality: str = "accuracy",
        target: float = 1.0,
        delta: float | None = 0.05,
        temperature: bool = False,
        learn_fraction: float = 0.5,
        n_starts: int | None = None,
        random_state: int = 0,
    ) -> None:
        self.policy = policy
        self.score = score
        self.quality = quality
        self.target = target
        self.delta = delta
        self.temperature = temperature
        self.learn_fraction = learn_fraction
        self.n_starts = n_starts
        self.random_state = random_state

    # --- parameters ------------------------------------------------------------------------------

    def _validate_params(self, outputs: ModelOutputs) -> None:
        choices = {
            "policy": (self.policy, POLICIES),
            "score": (self.score, tuple(SCORES)),
            "quality": (self.quality, QUALITIES),
        }
        for name, (value, valid) in choices.items():
            if value not in valid:
                raise ConfigError(f"unknown {name} {value!r}; expected one of: {', '.join(valid)}")
        check_target(self.quality, self.target)
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"delta must lie in (0, 1); got {self.delta}")
        if not 0 < self.learn_fraction < 1:
            raise ConfigError(f"learn_fraction must lie in (0, 1); got {self.learn_fraction}")
        if self.n_starts is not None and self.n_starts < 1:
            raise ConfigError(f"n_starts must be >= 1; got {self.n_starts}")
        if self.quality == "accuracy" and outputs.labels is None:
            raise ConfigError("quality 'accuracy' needs labels; without them calibrate for 'agreement' with the master")
        if (self.policy == "pair") != outputs.is_pair:
            shape = outputs.speculative_logits.shape
            raise ConfigError(
                f"policy {self.policy!r} needs "
                + ("the logits of two minions, (N, 2, K)" if self.policy == "pair" else "one model's logits, (N, K)")
                + f"; got {shape}"
            )
        if outputs.is_pair and outputs.speculative_logits.shape[1] != 2:
            raise ConfigError(f"the pair policy takes exactly two minions; got {outputs.speculative_logits.shape[1]}")
        if len(outputs) == 0:
            raise ConfigError("cannot calibrate a detector on no inputs")

    @property
    def _learns(self) -> bool:
        return self.temperature or self.policy != "threshold"

    # --- scoring ---------------------------------------------------------------------------------

    def _raw_scores(self, logits: np.ndarray, temperature: np.ndarray) -> np.ndarray:
        """``(N,)`` for one model, ``(N, 2)`` for a pair."""
        if logits.ndim == 2:
            return score_logits(logits, self.score, temperature=float(temperature[0]))
        return np.stack(
            [score_logits(logits[:, j], self.score, temperature=float(temperature[j])) for j in range(2)], axis=1
        )

    @staticmethod
    def _predictions(logits: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The speculative answer: the model's argmax; for a pair, the more confident minion's."""
        if logits.ndim == 2:
            out: np.ndarray = logits.argmax(axis=1)
            return out
        votes = logits.argmax(axis=2)
        chosen: np.ndarray = votes[np.arange(len(votes)), raw.argmax(axis=1)]
        return chosen

    def _keep(self, logits: np.ndarray, raw: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        if self.policy == "threshold":
            return raw
        if self.policy == "pair":
            votes = logits.argmax(axis=2)
            out: np.ndarray = np.where(votes[:, 0] == votes[:, 1], (raw - offsets).min(axis=1), _DISAGREE)
            return out
        shifted: np.ndarray = raw - offsets[logits.argmax(axis=1)]
        return shifted

    # --- fitting ---------------------------------------------------------------------------------

    def _gain(self, predictions: np.ndarray, outputs: ModelOutputs) -> tuple[np.ndarray, int]:
        """Per-input gain of escalating and the total gain the target requires (see :mod:`.policies`)."""
        master = outputs.master_predictions
        if self.quality == "agreement":
            gain = (predictions != master).astype(np.int64)
            required = gain.sum() - (1 - self.target) * len(gain)
        else:
            assert outputs.labels is not None
            master_right = (master == outputs.labels).astype(np.int64)
            speculative_right = (predictions == outputs.labels).astype(np.int64)
            gain = master_right - speculative_right
            required = self.target * master_right.sum() - speculative_right.sum()
        return gain, math.ceil(required - 1e-9)

    def _solve(self, logits: np.ndarray, raw: np.ndarray, outputs: ModelOutputs) -> tuple[np.ndarray, float]:
        """Offsets and threshold meeting the target on ``outputs`` (no guarantee)."""
        predictions = self._predictions(logits, raw)
        gain, required = self._gain(predictions, outputs)
        k = outputs.num_classes
        try:
            if self.policy == "threshold":
                return np.zeros(1), policies.single_threshold(raw, gain, required)
            if self.policy == "pair":
                agree = logits.argmax(axis=2)[:, 0] == logits.argmax(axis=2)[:, 1]
                t1, t2 = policies.pair_thresholds(raw[:, 0], raw[:, 1], agree, gain, required)
                return np.array([t1, t2]), 0.0
            solver = policies.per_class_optimal if self.policy == "per-class-optimal" else policies.per_class_heuristic
            offsets = solver(raw, logits.argmax(axis=1), k, gain, required)
            return np.clip(offsets, -SCORE_LIMIT, SCORE_LIMIT), 0.0
        except policies.UnreachableTarget as exc:
            raise ConfigError(self._unreachable_message(exc.best_gain, predictions, outputs)) from None

    def _unreachable_message(self, best_gain: int, predictions: np.ndarray, outputs: ModelOutputs) -> str:
        """Escalating with gain ``best_gain`` is the policy's best: say what that reaches against the target."""
        n = len(outputs)
        if self.quality == "agreement":
            best = float((predictions == outputs.master_predictions).mean()) + best_gain / n
            return f"agreement target {self.target:.4%} is out of reach for policy {self.policy!r}: at best {best:.4%}"
        assert outputs.labels is not None
        master = float((outputs.master_predictions == outputs.labels).mean())
        best = float((predictions == outputs.labels).mean()) + best_gain / n
        return (
            f"accuracy target {self.target:g} x master accuracy ({self.target * master:.4%}) is out of reach for "
            f"policy {self.policy!r}: at best {best:.4%} on {n:,} calibration inputs"
        )

    def _split(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if self.delta is None or not self._learns:
            everything = np.arange(n)
            return everything, everything
        order = rng.permutation(n)
        n_learn = round(self.learn_fraction * n)
        if n_learn < 1 or n_learn >= n:
            raise ConfigError(f"{n} calibration inputs are too few to split into learn and certify parts")
        return np.sort(order[:n_learn]), np.sort(order[n_learn:])

    def _fit_temperature(self, outputs: ModelOutputs) -> np.ndarray:
        if not self.temperature:
            return np.ones(2 if outputs.is_pair else 1)
        targets = (
            outputs.master_predictions if outputs.labels is None or self.quality == "agreement" else outputs.labels
        )
        logits = outputs.speculative_logits
        if logits.ndim == 2:
            return np.array([TemperatureScaler().fit(logits, targets).temperature_])
        return np.array([TemperatureScaler().fit(logits[:, j], targets).temperature_ for j in range(logits.shape[1])])

    def _certify(
        self, keep: np.ndarray, predictions: np.ndarray, outputs: ModelOutputs, rng: np.random.Generator
    ) -> float:
        assert self.delta is not None
        master = outputs.master_predictions
        try:
            if self.quality == "agreement":
                certificate = certify_agreement(
                    keep, predictions != master, self.target, self.delta, n_starts=self.n_starts or 1
                )
            else:
                assert outputs.labels is not None
                starts = self.n_starts or (1 if self.target < 1 else 8)
                certificate = certify_accuracy(
                    keep,
                    master == outputs.labels,
                    predictions == outputs.labels,
                    self.target,
                    self.delta,
                    rng=rng,
                    n_starts=starts,
                )
        except NotCertifiable as exc:
            what = (
                f"agreement with the master >= {self.target:.2%}"
                if self.quality == "agreement"
                else f"accuracy >= {self.target:g} x master accuracy"
            )
            needs = f"; it would take about {exc.needed:,} calibration inputs" if exc.needed else ""
            raise ConfigError(
                f"cannot certify {what} at delta {self.delta:g} (policy {self.policy!r}, {len(keep):,} calibration "
                f"inputs): {exc.reason}{needs}"
            ) from None
        self.p_value_ = certificate.p_value
        self.n_starts_ = certificate.n_starts
        return certificate.threshold

    def fit(
        self, speculative_logits: np.ndarray, master_predictions: np.ndarray, labels: np.ndarray | None = None
    ) -> MisspeculationDetector:
        """Calibrate on validation (or master-answered) inputs.

        Args:
            speculative_logits: ``(N, K)``, or ``(N, 2, K)`` for the pair policy.
            master_predictions: ``(N,)`` the master's answers.
            labels: ``(N,)`` true classes; needed for the accuracy quality only.
        """
        outputs = ModelOutputs(
            np.asarray(speculative_logits),
            np.asarray(master_predictions),
            None if labels is None else np.asarray(labels),
        )
        self._validate_params(outputs)
        rng = np.random.default_rng(self.random_state)
        learn_index, certify_index = self._split(len(outputs), rng)
        learn, certify = outputs.subset(learn_index), outputs.subset(certify_index)

        self.temperature_ = self._fit_temperature(learn)
        raw = self._raw_scores(learn.speculative_logits, self.temperature_)
        if self.delta is None or self._learns:
            self.offsets_, threshold = self._solve(learn.speculative_logits, raw, learn)
        else:
            self.offsets_, threshold = np.zeros(1), 0.0
        self.num_classes_ = outputs.num_classes
        if self.delta is None:
            self.threshold_ = threshold
            self.p_value_ = None
            self.n_starts_ = None
        else:
            raw = self._raw_scores(certify.speculative_logits, self.temperature_)
            keep = self._keep(certify.speculative_logits, raw, self.offsets_)
            self.threshold_ = self._certify(keep, self._predictions(certify.speculative_logits, raw), certify, rng)
        self.n_learn_ = len(learn_index)
        self.n_certify_ = len(certify_index)
        self._summarise(certify)
        return self

    def _summarise(self, outputs: ModelOutputs) -> None:
        """What the fitted detector does on the data its threshold was chosen on."""
        decisions = self.decide(outputs.speculative_logits)
        escalate, predictions = decisions.escalate, decisions.predictions
        final = np.where(escalate, outputs.master_predictions, predictions)
        self.escalation_rate_ = float(escalate.mean())
        classes = np.bincount(predictions, minlength=self.num_classes_)
        self.escalation_rate_per_class_ = np.divide(
            np.bincount(predictions, weights=escalate, minlength=self.num_classes_),
            classes,
            out=np.full(self.num_classes_, np.nan),
            where=classes > 0,
        )
        self.agreement_ = float((final == outputs.master_predictions).mean())
        if outputs.labels is not None:
            self.master_accuracy_ = float((outputs.master_predictions == outputs.labels).mean())
            self.speculative_accuracy_ = float((predictions == outputs.labels).mean())
            self.system_accuracy_ = float((final == outputs.labels).mean())
        else:
            self.master_accuracy_ = self.speculative_accuracy_ = self.system_accuracy_ = None
        self.outcomes_ = OutcomeStats.from_scores(
            decisions.keep_scores, outcome_masks(predictions, outputs.master_predictions, outputs.labels)
        )

    # --- inference -------------------------------------------------------------------------------

    def _scored(self, speculative_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The logits as float64, checked against this detector, and their raw scores (computed once)."""
        check_is_fitted(self, "threshold_")
        logits = np.asarray(speculative_logits, dtype=np.float64)
        if logits.ndim != (3 if self.policy == "pair" else 2) or logits.shape[-1] != self.num_classes_:
            raise ConfigError(
                f"this detector takes logits of shape {'(N, 2, K)' if self.policy == 'pair' else '(N, K)'} with "
                f"K = {self.num_classes_}; got {logits.shape}"
            )
        return logits, self._raw_scores(logits, self.temperature_)

    def decide(self, speculative_logits: np.ndarray) -> Decisions:
        """Everything the edge needs per input, from one pass over the scores (the runtime's hot path)."""
        logits, raw = self._scored(speculative_logits)
        keep = self._keep(logits, raw, self.offsets_)
        return Decisions(
            predictions=self._predictions(logits, raw),
            confidence=probability_from_score(self.score, raw if raw.ndim == 1 else raw.min(axis=1)),
            keep_scores=keep,
            escalate=keep < self.threshold_,
        )

    def keep_scores(self, speculative_logits: np.ndarray) -> np.ndarray:
        """``(N,)``: inputs scoring below ``threshold_`` are escalated."""
        logits, raw = self._scored(speculative_logits)
        return self._keep(logits, raw, self.offsets_)

    def escalate(self, speculative_logits: np.ndarray) -> np.ndarray:
        """Boolean ``(N,)``: True where the input must be replayed on the master."""
        out: np.ndarray = self.keep_scores(speculative_logits) < self.threshold_
        return out

    def predict_speculative(self, speculative_logits: np.ndarray) -> np.ndarray:
        """The speculative answer per input (for a pair, the more confident minion's)."""
        logits, raw = self._scored(speculative_logits)
        return self._predictions(logits, raw)

    def confidence(self, speculative_logits: np.ndarray) -> np.ndarray:
        """The score on its familiar [0, 1] scale (e.g. top softmax probability), for records and plots."""
        return self.decide(speculative_logits).confidence

    @property
    def certified(self) -> bool:
        """Whether the threshold carries the Learn-then-Test guarantee."""
        return self.delta is not None

    def describe(self) -> str:
        """One line: policy, target, guarantee."""
        check_is_fitted(self, "threshold_")
        target = (
            f"agreement with the master >= {self.target:.2%}"
            if self.quality == "agreement"
            else f"accuracy >= {self.target:g} x master accuracy"
        )
        if self.delta is not None:
            confidence = f"probability >= {1 - self.delta:.0%} (delta {self.delta:g})"
            return f"{self.policy} on {self.score}: {target} with {confidence}"
        return f"{self.policy} on {self.score}: {target} on the calibration data (no guarantee)"

    # --- persistence -----------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Fitted state, JSON-ready; :func:`specedge.detector.load_detector` reloads it by ``kind``."""
        check_is_fitted(self, "threshold_")
        return {
            "kind": DETECTOR_KIND,
            "params": self.get_params(),
            "temperature": self.temperature_.tolist(),
            "offsets": self.offsets_.tolist(),
            "threshold": self.threshold_,
            "num_classes": self.num_classes_,
            "p_value": self.p_value_,
            "n_starts": self.n_starts_,
            "n_learn": self.n_learn_,
            "n_certify": self.n_certify_,
            "escalation_rate": self.escalation_rate_,
            "escalation_rate_per_class": [None if math.isnan(x) else x for x in self.escalation_rate_per_class_],
            "agreement": self.agreement_,
            "master_accuracy": self.master_accuracy_,
            "speculative_accuracy": self.speculative_accuracy_,
            "system_accuracy": self.system_accuracy_,
            "outcomes": self.outcomes_.to_dict(),
        }

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> MisspeculationDetector:
        """Inverse of :meth:`to_dict`; :class:`ConfigError` on a malformed state."""
        if state.get("kind") != DETECTOR_KIND:
            raise ConfigError(f"not a {DETECTOR_KIND} state: kind={state.get('kind')!r}")
        try:
            detector = cls(**state["params"])
            detector.temperature_ = np.asarray(state["temperature"], dtype=np.float64)
            detector.offsets_ = np.asarray(state["offsets"], dtype=np.float64)
            detector.threshold_ = float(state["threshold"])
            detector.num_classes_ = int(state["num_classes"])
            detector.p_value_ = None if state["p_value"] is None else float(state["p_value"])
            detector.n_starts_ = None if state["n_starts"] is None else int(state["n_starts"])
            detector.n_learn_ = int(state["n_learn"])
            detector.n_certify_ = int(state["n_certify"])
            detector.escalation_rate_ = float(state["escalation_rate"])
            detector.escalation_rate_per_class_ = np.array(
                [np.nan if x is None else float(x) for x in state["escalation_rate_per_class"]]
            )
            detector.agreement_ = float(state["agreement"])
            for name in ("master_accuracy", "speculative_accuracy", "system_accuracy"):
                value = state[name]
                setattr(detector, f"{name}_", None if value is None else float(value))
            detector.outcomes_ = OutcomeStats.from_dict(state["outcomes"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"malformed detector state: {exc!r}") from exc
        expected_offsets = {"threshold": 1, "pair": 2}.get(detector.policy, detector.num_classes_)
        if detector.offsets_.shape != (expected_offsets,) or detector.temperature_.shape != (
            (2,) if detector.policy == "pair" else (1,)
        ):
            raise ConfigError("malformed detector state: offsets or temperatures do not match the policy")
        detector._validate_stored_params()
        return detector

    def _validate_stored_params(self) -> None:
        for name, (value, valid) in {
            "policy": (self.policy, POLICIES),
            "score": (self.score, tuple(SCORES)),
            "quality": (self.quality, QUALITIES),
        }.items():
            if value not in valid:
                raise ConfigError(f"malformed detector state: unknown {name} {value!r}")


def load_detector(state: dict[str, Any]) -> MisspeculationDetector:
    """Rebuild a detector from :meth:`MisspeculationDetector.to_dict` output, dispatching on ``kind``."""
    if not isinstance(state, dict):
        raise ConfigError(f"a detector state is a JSON object; got {type(state).__name__}")
    if state.get("detector") == "confidence-threshold":
        raise ConfigError(
            "this detector state was written by SpecEdge 0.1 (one uncertified threshold); "
            "re-calibrate with `specedge calibrate` or re-run `specedge demo`"
        )
    loaders = {DETECTOR_KIND: MisspeculationDetector.from_dict}
    kind = state.get("kind")
    if kind not in loaders:
        raise ConfigError(f"unknown detector kind {kind!r}; expected one of: {', '.join(loaders)}")
    return loaders[kind](state)
