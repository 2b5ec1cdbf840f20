"""Audit in operation: is the detector still as good as its calibration said?

The guarantee of :mod:`specedge.detector.guarantee` assumes operating inputs are exchangeable
with the calibration inputs. Drift (a new camera, noise, another mix of classes) breaks that
silently: kept answers start to disagree with the master and nothing escalates them. The audit
sends a small random share of the *kept* answers to the master as well, and tests, block by
block, whether the system's agreement with the master has fallen below the target:

    system agreement = 1 - keep rate x (1 - agreement of kept answers)

The keep rate is counted exactly; the agreement of kept answers is estimated from the audited
ones. Each block of ``block_size`` audits is tested once with a Clopper-Pearson bound at level
``delta / (b (b + 1))`` for block ``b``, so that over any number of blocks the chance of a false
alarm stays below ``delta`` (a union bound; sum of 1 / (b (b + 1)) = 1). Testing whole blocks
rather than a running mean means an old good record cannot mask a recent drop.

On an alarm the caller can re-calibrate on unlabelled traffic the master has answered
(:class:`RecalibrationBuffer`): agreement needs no labels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from specedge.detector.detector import MisspeculationDetector
from specedge.detector.outputs import ModelOutputs
from specedge.errors import ConfigError

__all__ = ["AgreementAudit", "AuditStatus", "RecalibrationBuffer", "clopper_pearson"]


def clopper_pearson(successes: int, trials: int, delta: float) -> tuple[float, float]:
    """Two one-sided ``1 - delta`` bounds (lower, upper) on a binomial proportion."""
    if trials == 0:
        return 0.0, 1.0
    lower = 0.0 if successes == 0 else float(beta.ppf(delta, successes, trials - successes + 1))
    upper = 1.0 if successes == trials else float(beta.ppf(1 - delta, successes + 1, trials - successes))
    return lower, upper


@dataclass(frozen=True)
class AuditStatus:
    """Where the audit stands after the latest observation."""

    seen: int  # inputs the audit was told about
    kept: int  # of which answered on the device
    audited: int  # kept answers also sent to the master
    audited_agree: int  # of which the master agreed with
    agreement: float  # running estimate of the system's agreement with the master (all audits)
    agreement_lower: float  # its (1 - delta) lower bound (informational, not for alarms)
    blocks_tested: int
    alarm: bool  # a block showed, at level delta overall, agreement below the target

    @property
    def audit_share(self) -> float:
        """Kept answers that were audited."""
        return self.audited / self.kept if self.kept else 0.0


class AgreementAudit:
    """Random audits of kept answers and a drift alarm.

    Args:
        target: system agreement with the master that operation must keep (e.g. the detector's
            certified agreement, see :meth:`for_detector`).
        share: probability that a kept answer is also sent to the master.
        delta: false-alarm probability over the whole run.
        block_size: audits per tested block.
        seed: of the audit draws.
    """

    def __init__(
        self, *, target: float, share: float = 0.02, delta: float = 0.05, block_size: int = 200, seed: int = 0
    ) -> None:
        if not 0 < target < 1:
            raise ConfigError(f"audit target agreement must lie in (0, 1); got {target}")
        if not 0 < share <= 1:
            raise ConfigError(f"audit share must lie in (0, 1]; got {share}")
        if not 0 < delta < 1:
            raise ConfigError(f"audit delta must lie in (0, 1); got {delta}")
        if block_size < 1:
            raise ConfigError(f"audit block size must be >= 1; got {block_size}")
        self.target = target
        self.share = share
        self.delta = delta
        self.block_size = block_size
        self._rng = np.random.default_rng(seed)
        self._seen = self._kept = self._audited = self._agree = 0
        self._block_audits = self._block_agree = self._block_kept = self._block_seen = 0
        self._blocks = 0
        self._alarm = False

    @classmethod
    def for_detector(
        cls, detector: MisspeculationDetector, *, share: float = 0.02, delta: float = 0.05, seed: int = 0
    ) -> AgreementAudit:
        """An audit whose target is what ``detector``'s calibration promised.

        For an agreement detector that is its certified target; for an accuracy detector it is
        the ``1 - delta`` lower bound of the agreement it showed on its calibration inputs.
        """
        if detector.quality == "agreement":
            target = float(detector.target)
        else:
            agreeing = round(detector.agreement_ * detector.n_certify_)
            target = min(clopper_pearson(agreeing, detector.n_certify_, delta)[0], 1 - 1e-9)
        return cls(target=target, share=share, delta=delta, seed=seed)

    def should_audit(self) -> bool:
        """Draw whether the next kept answer is audited."""
        return bool(self._rng.random() < self.share)

    def observe(self, *, kept: bool, speculative: int | None = None, master: int | None = None) -> bool:
        """Record one input (``kept`` or escalated; both predictions for an audited kept answer); True on alarm."""
        self._seen += 1
        self._block_seen += 1
        if kept:
            self._kept += 1
            self._block_kept += 1
        if speculative is not None and master is not None:
            if not kept:
                raise ConfigError("only kept answers are audited; an escalated input already has the master's answer")
            agree = int(speculative == master)
            self._audited += 1
            self._agree += agree
            self._block_audits += 1
            self._block_agree += agree
            if self._block_audits == self.block_size:
                self._test_block()
        return self._alarm

    @staticmethod
    def _system_agreement(kept_agreement: float, kept: int, seen: int) -> float:
        """Agreement of all answers when kept ones agree at ``kept_agreement`` (escalated ones always do)."""
        return 1.0 - (kept / seen if seen else 0.0) * (1.0 - kept_agreement)

    def _test_block(self) -> None:
        self._blocks += 1
        level = self.delta / (self._blocks * (self._blocks + 1))
        upper = clopper_pearson(self._block_agree, self._block_audits, level)[1]
        if self._system_agreement(upper, self._block_kept, self._block_seen) < self.target:
            self._alarm = True
        self._block_audits = self._block_agree = self._block_kept = self._block_seen = 0

    def status(self) -> AuditStatus:
        """The running picture."""
        rate = self._agree / self._audited if self._audited else 1.0
        lower = clopper_pearson(self._agree, self._audited, self.delta)[0]
        return AuditStatus(
            seen=self._seen,
            kept=self._kept,
            audited=self._audited,
            audited_agree=self._agree,
            agreement=self._system_agreement(rate, self._kept, self._seen),
            agreement_lower=self._system_agreement(lower if self._audited else 0.0, self._kept, self._seen),
            blocks_tested=self._blocks,
            alarm=self._alarm,
        )

    def reset(self) -> None:
        """Start afresh (after a re-calibration); the random stream continues."""
        self._seen = self._kept = self._audited = self._agree = 0
        self._block_audits = self._block_agree = self._block_kept = self._block_seen = 0
        self._blocks = 0
        self._alarm = False


class RecalibrationBuffer:
    """Collects master-answered inputs (no labels) and refits a detector on them for agreement.

    After an alarm, every input is also sent to the master until ``size`` have been collected:
    an unbiased sample of current traffic with the master's answers, which is all a
    label-free calibration needs.
    """

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ConfigError(f"re-calibration size must be >= 1; got {size}")
        self.size = size
        self._logits: list[np.ndarray] = []
        self._master: list[int] = []

    def add(self, speculative_logits: np.ndarray, master_prediction: int) -> None:
        """One input's speculative logits and the master's answer."""
        self._logits.append(np.asarray(speculative_logits))
        self._master.append(int(master_prediction))

    @property
    def full(self) -> bool:
        """Whether enough inputs are in to refit."""
        return len(self._master) >= self.size

    def refit(self, detector: MisspeculationDetector, *, target: float) -> MisspeculationDetector:
        """A detector with ``detector``'s policy, fitted for agreement ``target`` on the buffer."""
        outputs = ModelOutputs(np.stack(self._logits), np.array(self._master), None)
        params = {**detector.get_params(), "quality": "agreement", "target": target}
        fresh = MisspeculationDetector(**params).fit(outputs.speculative_logits, outputs.master_predictions)
        self._logits.clear()
        self._master.clear()
        return fresh
