"""How many requests per second the vectorised replay simulates on this machine.

A synthetic stream stands in for a camera: frames at a fixed rate, local compute on each, a given
fraction escalated with a LeNet-sized request. The replay is timed (median of ``repeats``) on a
named link with both model kinds. This reads the clock because it measures the simulator; the
simulation itself never does. Run ``python -m specedge.simulator.speed`` to print the figures.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from specedge.simulator.arrivals import constant_rate_arrivals
from specedge.simulator.links import get_link_profile
from specedge.simulator.replay_fast import replay_vectorised
from specedge.simulator.stream import ModelKind, RequestStream

__all__ = ["ReplaySpeed", "replay_speed"]


@dataclass(frozen=True)
class ReplaySpeed:
    """Median simulation throughput of one configuration."""

    link: str
    kind: ModelKind
    num_requests: int
    seconds: float

    @property
    def requests_per_s(self) -> float:
        """Simulated requests per wall-clock second."""
        return self.num_requests / self.seconds


def replay_speed(
    num_requests: int = 1_000_000,
    *,
    link: str = "lte",
    kind: ModelKind = "realistic",
    escalation_rate: float = 0.05,
    frame_rate_hz: float = 30.0,
    repeats: int = 3,
    seed: int = 0,
) -> ReplaySpeed:
    """Time :func:`~specedge.simulator.replay_fast.replay_vectorised` on a synthetic camera stream."""
    rng = np.random.default_rng(seed)
    stream = RequestStream.build(
        constant_rate_arrivals(num_requests, rate_hz=frame_rate_hz),
        local_s=rng.uniform(0.001, 0.004, num_requests),
        local_mj=5.0,
        to_cloud=rng.random(num_requests) < escalation_rate,
        request_bytes=1100,  # a 28x28 uint8 ModelInfer with framing (specedge.simulator.wire)
        response_bytes=300,
        server_s=0.003,
    )
    profile = get_link_profile(link)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        replay_vectorised(stream, profile, kind=kind)
        seconds.append(time.perf_counter() - start)
    return ReplaySpeed(link=profile.name, kind=kind, num_requests=num_requests, seconds=statistics.median(seconds))


def main() -> None:
    """Print the simulation throughput on each named link, for both model kinds."""
    kinds: tuple[ModelKind, ...] = ("simple", "realistic")
    for link in ("3g", "lte", "wifi"):
        for kind in kinds:
            speed = replay_speed(link=link, kind=kind)
            print(f"{speed.link:<5} {speed.kind:<10} {speed.requests_per_s:>14,.0f} requests/s")


if __name__ == "__main__":
    main()
