"""Speculation history: consecutive frames of one stream tend to share their fate (thesis 4.3.2).

Inputs of one camera stream that arrive close together are usually the same scene. If the
previous input of the stream was escalated and the master *agreed* with the speculative answer,
the speculative model is right about this scene: the next input runs locally without asking the
detector. If the master *disagreed*, the speculative model is wrong about this scene: the next
input goes straight to the master, saving the local run and the detector. Inputs further apart
than ``window_s``, or after an input that was not escalated, get no advice.

A trusted answer is not escalated, so a run of trusted inputs never outlives one escalation:
the advice is re-earned every time, and the history cannot hide a scene change for long.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from enum import Enum

from specedge.errors import ConfigError

__all__ = ["Advice", "SpeculationHistory"]


class Advice(str, Enum):
    """What the previous input of the stream suggests for this one."""

    TRUST = "trust"  # run locally without detection: the master agreed a moment ago
    MASTER = "master"  # go straight to the master: it disagreed a moment ago


@dataclass(frozen=True)
class _Last:
    at_s: float
    advice: Advice | None


class SpeculationHistory:
    """The last outcome per stream, bounded to the ``max_streams`` most recently seen streams.

    Args:
        window_s: inputs closer in time than this share history (e.g. a 30 frame/s camera: 0.1 s).
        max_streams: how many streams to remember; the least recently seen are forgotten.
    """

    def __init__(self, *, window_s: float = 0.1, max_streams: int = 1024) -> None:
        if not window_s > 0:
            raise ConfigError(f"the history window must be > 0 seconds; got {window_s}")
        if max_streams < 1:
            raise ConfigError(f"max_streams must be >= 1; got {max_streams}")
        self.window_s = window_s
        self.max_streams = max_streams
        self._last: OrderedDict[str, _Last] = OrderedDict()

    def advice(self, stream: str, now_s: float) -> Advice | None:
        """The advice for an input of ``stream`` taken up at ``now_s``, or None."""
        last = self._last.get(stream)
        if last is None or now_s - last.at_s >= self.window_s:
            return None
        return last.advice

    def observe(self, stream: str, now_s: float, *, escalated: bool, master_agreed: bool | None) -> None:
        """What happened to the input of ``stream`` taken up at ``now_s``.

        ``master_agreed`` is None when the master did not answer (not escalated, or the cloud failed).
        """
        advice = None
        if escalated and master_agreed is not None:
            advice = Advice.TRUST if master_agreed else Advice.MASTER
        self._last[stream] = _Last(now_s, advice)
        self._last.move_to_end(stream)
        while len(self._last) > self.max_streams:
            self._last.popitem(last=False)

    def forget(self) -> None:
        """Drop every stream's history (e.g. after the user switches mode)."""
        self._last.clear()
