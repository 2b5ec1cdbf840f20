"""Edge device power while computing.

The foundation uses a single active-power figure per device; compute *time* is measured by
running the models on the machine at hand. The device simulator adds idle/active states and
per-layer latency models from the profiler.
"""

from __future__ import annotations

from dataclasses import dataclass

from specedge.errors import ConfigError

__all__ = ["DEVICE_PROFILES", "DeviceProfile", "get_device_profile"]


@dataclass(frozen=True)
class DeviceProfile:
    """A device that draws ``compute_power_mw`` while running a model."""

    name: str
    compute_power_mw: float
    source: str

    def compute_energy_mj(self, seconds: float) -> float:
        """Energy of computing for ``seconds`` (mW x s = mJ)."""
        return self.compute_power_mw * seconds


DEVICE_PROFILES: dict[str, DeviceProfile] = {
    # Thesis section 4.4.2: the SIEVE (de)compressor's 0.23 W is 2.06% of the Tegra K1's active
    # power, i.e. about 11.2 W for the Jetson TK1 that SIEVE was evaluated on.
    "tegra-k1": DeviceProfile("tegra-k1", compute_power_mw=0.23 / 0.0206 * 1000, source="thesis 4.4.2 (derived)"),
    # A smartphone big-core cluster under sustained load: an assumption, not a measurement.
    "phone": DeviceProfile("phone", compute_power_mw=2500.0, source="assumption: typical phone SoC CPU load"),
}


def get_device_profile(name: str) -> DeviceProfile:
    """The named profile; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return DEVICE_PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown device profile {name!r}; expected one of: {', '.join(DEVICE_PROFILES)}") from None
