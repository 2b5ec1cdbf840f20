"""Offline evaluation of SpecEdge against cloud-only and mobile-only under 3G, LTE and WiFi.

The foundation holds a first-order model: links with a fixed bandwidth and round-trip time, the
Huang et al. (MobiSys 2012) data-transfer power model without radio tails, and a device that
draws a fixed power while computing. The full simulator (radio power states, real traces,
device models) extends these modules.
"""

from specedge.simulator.device import DEVICE_PROFILES, DeviceProfile, get_device_profile
from specedge.simulator.estimate import CostEstimate, CostRecord, estimate_cost
from specedge.simulator.links import LINK_PROFILES, LinkProfile, TransferPowerModel, get_link_profile

__all__ = [
    "DEVICE_PROFILES",
    "LINK_PROFILES",
    "CostEstimate",
    "CostRecord",
    "DeviceProfile",
    "LinkProfile",
    "TransferPowerModel",
    "estimate_cost",
    "get_device_profile",
    "get_link_profile",
]
