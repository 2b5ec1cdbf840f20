"""Sweeps: one workload over many links, traces, frame rates and model kinds (thesis 4.5.2-4.5.8).

A :class:`Scenario` fixes everything but the workload: the link (a named profile, possibly with
trace-driven channels), the camera's frame rate and arrival process, and the model kind. The
"realistic" kind sends zstd-compressed inputs, as SIEVE's realistic model does (it assumed 4x;
we measure the ratio on the real images).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from specedge.errors import ConfigError
from specedge.simulator.arrivals import constant_rate_arrivals, poisson_arrivals
from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import LinkProfile, get_link_profile
from specedge.simulator.stream import ModelKind
from specedge.simulator.system import Objective, Selector, SystemEvaluation, Workload, evaluate_system
from specedge.simulator.traces import load_trace

__all__ = ["ARRIVALS", "Scenario", "run_scenarios", "scenarios", "with_bandwidth", "with_traces"]

ARRIVALS = ("constant", "poisson")
Arrivals = Literal["constant", "poisson"]


@dataclass(frozen=True)
class Scenario:
    """Where and how a workload is replayed."""

    link: LinkProfile
    fps: float
    kind: ModelKind
    arrivals: Arrivals = "constant"

    def arrival_s(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Arrival times of ``n`` frames."""
        if self.arrivals == "poisson":
            return poisson_arrivals(n, rate_hz=self.fps, rng=rng)
        return constant_rate_arrivals(n, rate_hz=self.fps)


def with_traces(
    link: LinkProfile, *, uplink: Path | None, downlink: Path | None, rng: np.random.Generator
) -> LinkProfile:
    """``link`` with trace-driven channels (a random contiguous segment of each trace), named after them."""
    up = None if uplink is None else load_trace(uplink).random_segment(rng)
    down = None if downlink is None else load_trace(downlink).random_segment(rng)
    names = "/".join(p.name for p in (uplink, downlink) if p is not None)
    if not names:
        return link
    return dataclasses.replace(
        link.with_channels(uplink=up, downlink=down),
        name=f"{link.name} ({names})",
        source=f"{link.source}; capacity from traces {names}",
    )


def with_bandwidth(link: LinkProfile, scale: float) -> LinkProfile:
    """``link`` with both constant-rate channels ``scale`` times as fast (a bandwidth sweep)."""
    if not (isinstance(link.uplink, ConstantRate) and isinstance(link.downlink, ConstantRate)):
        raise ConfigError(f"link {link.name!r}: only constant-rate channels can be scaled; traces set their own")
    if not scale > 0:
        raise ConfigError(f"bandwidth scale must be > 0; got {scale}")
    if scale == 1:
        return link
    scaled = link.with_channels(
        uplink=ConstantRate(link.uplink.rate_mbps * scale), downlink=ConstantRate(link.downlink.rate_mbps * scale)
    )
    return dataclasses.replace(scaled, name=f"{link.name} x{scale:g} bandwidth")


def scenarios(
    links: Iterable[str],
    *,
    fps: Iterable[float],
    kinds: Iterable[ModelKind],
    arrivals: Arrivals = "constant",
    bandwidth_scales: Iterable[float] = (1.0,),
) -> list[Scenario]:
    """Every combination of named links (at each bandwidth scale), frame rates and model kinds."""
    if arrivals not in ARRIVALS:
        raise ConfigError(f"unknown arrival process {arrivals!r}; expected one of: {', '.join(ARRIVALS)}")
    scales = tuple(bandwidth_scales)
    return [
        Scenario(with_bandwidth(get_link_profile(name), scale), rate, kind, arrivals)
        for kind in kinds
        for rate in fps
        for name in links
        for scale in scales
    ]


def run_scenarios(
    workload: Workload,
    cases: Sequence[Scenario],
    *,
    selector: Selector = "predictive",
    objective: Objective = "energy",
    seed: int = 0,
) -> list[SystemEvaluation]:
    """Evaluate ``workload`` in each scenario (seeded arrivals and selector draws)."""
    rng = np.random.default_rng(seed)
    return [
        evaluate_system(
            workload,
            case.link,
            arrival_s=case.arrival_s(len(workload), rng),
            kind=case.kind,
            compress=case.kind == "realistic" and workload.compressed_request_bytes is not None,
            selector=selector,
            objective=objective,
            rng=rng,
        )
        for case in cases
    ]
