"""The foundation's first-order estimate of per-input latency and energy (kept for the demo).

Input is the list of measured per-input records of one real run (local compute time on this
machine, which inputs reached the cloud, the real request/response sizes and the server's
reported queue+compute time). Each cloud request is priced on a :class:`LinkProfile`'s channels
(from time 0) and its radio's Huang transfer power:

    latency  = local + [cloud] * (rtt + upload + server + download)
    energy   = P_active * local
             + [cloud] * (P(U,0) * upload + P(0,D) * download + b * (rtt + server))

No notion of time, radio promotion or tails, and ``local`` is this machine's time priced at the
device profile's power: the time-ordered replay (:func:`specedge.simulator.replay.replay`) with a
device model (:mod:`specedge.simulator.device`) replaces this estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from specedge.simulator.device import DeviceProfile
from specedge.simulator.links import LinkProfile

__all__ = ["CostEstimate", "CostRecord", "estimate_cost"]


class CostRecord(Protocol):
    """What the estimator needs from one measured input (``edge.runtime.InferenceRecord`` fits)."""

    @property
    def reached_cloud(self) -> bool: ...  # noqa: D102
    @property
    def local_us(self) -> int: ...  # noqa: D102
    @property
    def cloud_queue_us(self) -> int: ...  # noqa: D102
    @property
    def cloud_compute_us(self) -> int: ...  # noqa: D102
    @property
    def request_bytes(self) -> int: ...  # noqa: D102
    @property
    def response_bytes(self) -> int: ...  # noqa: D102


@dataclass(frozen=True)
class CostEstimate:
    """Mean per-input latency and energy of one strategy on one link."""

    strategy: str
    link: str
    latency_ms: float
    energy_mj: float
    compute_energy_mj: float
    radio_energy_mj: float
    cloud_fraction: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


def estimate_cost(
    records: Sequence[CostRecord], *, strategy: str, link: LinkProfile, device: DeviceProfile
) -> CostEstimate:
    """Average the per-input model above over ``records``."""
    if not records:
        raise ValueError("cannot estimate the cost of an empty run")
    local_s = np.array([r.local_us for r in records], dtype=np.float64) / 1e6
    cloud = np.array([r.reached_cloud for r in records], dtype=bool)
    server_s = np.array([r.cloud_queue_us + r.cloud_compute_us for r in records], dtype=np.float64) / 1e6
    up_bytes = np.array([r.request_bytes for r in records], dtype=np.float64)
    down_bytes = np.array([r.response_bytes for r in records], dtype=np.float64)

    upload_s = link.uplink.transfer_many(up_bytes, np.zeros_like(up_bytes))
    download_s = link.downlink.transfer_many(down_bytes, np.zeros_like(down_bytes))
    wait_s = link.rtt_s + server_s
    cloud_latency_s = np.where(cloud, wait_s + upload_s + download_s, 0.0)
    latency_s = local_s + cloud_latency_s

    compute_mj = device.active_power_mw * local_s
    p = link.radio.transfer
    radio_mj = np.where(
        cloud,
        p.energy_mj(up_bytes, np.zeros_like(up_bytes), upload_s)
        + p.energy_mj(np.zeros_like(down_bytes), down_bytes, download_s)
        + p.base_mw * wait_s,
        0.0,
    )
    return CostEstimate(
        strategy=strategy,
        link=link.name,
        latency_ms=float(latency_s.mean() * 1e3),
        energy_mj=float((compute_mj + radio_mj).mean()),
        compute_energy_mj=float(compute_mj.mean()),
        radio_energy_mj=float(radio_mj.mean()),
        cloud_fraction=float(cloud.mean()),
    )
