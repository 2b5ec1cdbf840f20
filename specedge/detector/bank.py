"""A file of calibrated detectors: one per policy and target, for the selector and the user modes.

The edge picks its detector by what the user asks for (thesis section 4.3.2: normal mode at
100% of the master's accuracy, power-saving mode at a relaxed 99%), and the selector reads each
one's escalation probability ``P_r``. ``specedge calibrate`` and ``specedge demo`` write such a
file; its ``calibration`` entry keeps the report they printed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from specedge.detector.detector import MisspeculationDetector, load_detector
from specedge.errors import ConfigError

__all__ = ["BANK_KIND", "choose_detector", "read_detectors", "write_detectors"]

BANK_KIND = "detector-bank"


def write_detectors(
    path: Path, detectors: Sequence[MisspeculationDetector], *, calibration: dict[str, Any] | None = None
) -> Path:
    """Write ``detectors`` (and an optional report) as one JSON file."""
    state = {"kind": BANK_KIND, "detectors": [d.to_dict() for d in detectors], "calibration": calibration or {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(state, indent=2) + "\n")
    return path


def read_detectors(path: Path) -> list[MisspeculationDetector]:
    """The detectors in a bank file, or the one in a single detector's state file."""
    try:
        state = json.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read detector file {path}: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"detector file {path} is not JSON: {exc}") from exc
    if isinstance(state, dict) and state.get("kind") == BANK_KIND:
        if not isinstance(state.get("detectors"), list) or not state["detectors"]:
            raise ConfigError(f"detector file {path} holds no detectors")
        return [load_detector(entry) for entry in state["detectors"]]
    return [load_detector(state)]


def choose_detector(
    detectors: Sequence[MisspeculationDetector], *, policy: str | None = None, target: float | None = None
) -> MisspeculationDetector:
    """The first detector matching ``policy`` and ``target`` (None matches any)."""
    for detector in detectors:
        if (policy is None or detector.policy == policy) and (target is None or abs(detector.target - target) < 1e-12):
            return detector
    available = ", ".join(f"{d.policy}@{d.target:g}" for d in detectors)
    raise ConfigError(f"no detector for policy {policy or 'any'} and target {target or 'any'}; available: {available}")
