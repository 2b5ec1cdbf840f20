"""Wireless link profiles: bandwidth, round-trip time and data-transfer power.

Power while transferring follows Huang et al., "A close examination of performance and power
characteristics of 4G LTE networks" (MobiSys 2012): ``P[mW] = a_u * U + a_d * D + b`` with
``U``/``D`` the uplink/downlink throughput in Mbps. Coefficients and bandwidths are taken from
../shared/reference/anchors.md section 4; each value's source is noted beside it. Values marked
[R] are as commonly cited and kept in these named profiles, never hard-wired elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from specedge.errors import ConfigError

__all__ = ["LINK_PROFILES", "LinkProfile", "TransferPowerModel", "get_link_profile"]

#: A byte count or an array of them (the estimator works on whole runs at once).
Bytes = TypeVar("Bytes", float, np.ndarray)


@dataclass(frozen=True)
class TransferPowerModel:
    """Huang 2012 linear power model of a radio that is transferring data."""

    uplink_mw_per_mbps: float
    downlink_mw_per_mbps: float
    base_mw: float

    def power_mw(self, uplink_mbps: float, downlink_mbps: float) -> float:
        """Radio power while moving data at the given throughputs."""
        return self.uplink_mw_per_mbps * uplink_mbps + self.downlink_mw_per_mbps * downlink_mbps + self.base_mw


@dataclass(frozen=True)
class LinkProfile:
    """A link at fixed conditions (the trace-driven simulator replaces fixed with sampled)."""

    name: str
    uplink_mbps: float
    downlink_mbps: float
    rtt_ms: float
    power: TransferPowerModel
    source: str

    def __post_init__(self) -> None:
        if self.uplink_mbps <= 0 or self.downlink_mbps <= 0 or self.rtt_ms < 0:
            raise ConfigError(
                f"link {self.name!r}: bandwidths must be > 0 Mbps and RTT >= 0 ms; got up {self.uplink_mbps}, "
                f"down {self.downlink_mbps}, rtt {self.rtt_ms}"
            )

    def upload_s(self, num_bytes: Bytes) -> Bytes:
        """Seconds to push ``num_bytes`` through the uplink."""
        return num_bytes * 8 / (self.uplink_mbps * 1e6)

    def download_s(self, num_bytes: Bytes) -> Bytes:
        """Seconds to pull ``num_bytes`` through the downlink."""
        return num_bytes * 8 / (self.downlink_mbps * 1e6)


LINK_PROFILES: dict[str, LinkProfile] = {
    "3g": LinkProfile(
        name="3G",
        uplink_mbps=1.1,  # Neurosurgeon (ASPLOS 2017) typical 3G upload [R]
        downlink_mbps=2.02,  # Mahimahi TMobile-UMTS-driving mean downlink [V]
        rtt_ms=200.0,  # middle of the 120-300 ms range in public tools
        power=TransferPowerModel(868.98, 122.12, 817.88),  # Huang 2012 3G [R]
        source="Huang et al. MobiSys 2012 (power), Neurosurgeon (uplink), Mahimahi UMTS trace (downlink)",
    ),
    "lte": LinkProfile(
        name="LTE",
        uplink_mbps=5.85,  # Neurosurgeon typical LTE upload [R]
        downlink_mbps=13.0,  # Huang 2012 median LTE downlink [V]
        rtt_ms=60.0,  # middle of the 40-85 ms range in public tools
        power=TransferPowerModel(438.39, 51.97, 1288.04),  # Huang 2012 LTE: a [V], b [R]
        source="Huang et al. MobiSys 2012 (power, downlink), Neurosurgeon (uplink)",
    ),
    "wifi": LinkProfile(
        name="WiFi",
        uplink_mbps=18.88,  # Neurosurgeon typical WiFi upload [R]
        downlink_mbps=18.88,  # assumed symmetric: no downlink figure in the sources
        rtt_ms=20.0,  # a few ms on the LAN plus a WAN leg to the data centre
        power=TransferPowerModel(283.17, 137.01, 132.86),  # Huang 2012 WiFi [R]
        source="Huang et al. MobiSys 2012 (power), Neurosurgeon (bandwidth)",
    ),
}


def get_link_profile(name: str) -> LinkProfile:
    """The named profile; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return LINK_PROFILES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown link profile {name!r}; expected one of: {', '.join(LINK_PROFILES)}") from None
