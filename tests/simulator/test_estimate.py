from dataclasses import dataclass, replace

import pytest

from specedge.errors import ConfigError
from specedge.simulator import (
    ConstantRate,
    LinkProfile,
    TransferPowerModel,
    estimate_cost,
    get_device_profile,
    get_link_profile,
    get_radio_profile,
)


@dataclass
class _Record:
    reached_cloud: bool
    local_us: int = 0
    cloud_queue_us: int = 0
    cloud_compute_us: int = 0
    request_bytes: int = 0
    response_bytes: int = 0


LINK = LinkProfile(
    "test",
    uplink=ConstantRate(8.0),
    downlink=ConstantRate(16.0),
    rtt_ms=50.0,
    radio=replace(get_radio_profile("huang2012-lte"), transfer=TransferPowerModel(100.0, 10.0, 1000.0)),
)
DEVICE = replace(get_device_profile("rpi4"), name="test", active_power_mw=2000.0, idle_power_mw=0.0)


def test_huang_power_model_lte_coefficients():
    lte = get_link_profile("LTE").radio.transfer
    assert lte.power_mw(5.85, 0.0) == pytest.approx(438.39 * 5.85 + 1288.04)
    assert lte.power_mw(0.0, 13.0) == pytest.approx(51.97 * 13.0 + 1288.04)


def test_local_only_costs_compute_energy_only():
    est = estimate_cost([_Record(False, local_us=3000)], strategy="local", link=LINK, device=DEVICE)
    assert est.latency_ms == pytest.approx(3.0)
    assert est.energy_mj == pytest.approx(2000.0 * 0.003)
    assert est.radio_energy_mj == 0.0 and est.cloud_fraction == 0.0


def test_cloud_request_by_hand():
    # 10,000 bytes up at 8 Mbps = 10 ms; 2,000 bytes down at 16 Mbps = 1 ms; rtt 50 ms; server 4 ms.
    record = _Record(
        True,
        local_us=1000,
        cloud_queue_us=1000,
        cloud_compute_us=3000,
        request_bytes=10_000,
        response_bytes=2_000,
    )
    est = estimate_cost([record], strategy="s", link=LINK, device=DEVICE)
    assert est.latency_ms == pytest.approx(1 + 50 + 10 + 4 + 1)
    radio = (100 * 8 + 1000) * 0.010 + (10 * 16 + 1000) * 0.001 + 1000 * (0.050 + 0.004)
    assert est.radio_energy_mj == pytest.approx(radio)
    assert est.energy_mj == pytest.approx(radio + 2000 * 0.001)


def test_means_over_records():
    records = [_Record(False, local_us=1000), _Record(True, request_bytes=0)]
    est = estimate_cost(records, strategy="s", link=LINK, device=DEVICE)
    assert est.cloud_fraction == 0.5
    assert est.latency_ms == pytest.approx((1 + 50) / 2)


def test_profiles_and_errors():
    assert {get_link_profile(n).name for n in ("3g", "lte", "wifi")} == {"3G", "LTE", "WiFi"}
    assert get_device_profile("tegra-k1").active_power_mw == pytest.approx(11165.05, rel=1e-4)
    with pytest.raises(ConfigError, match="expected one of: 3g, lte, wifi"):
        get_link_profile("lte5")
    with pytest.raises(ConfigError, match="unknown device profile"):
        get_device_profile("toaster")
    with pytest.raises(ValueError, match="empty"):
        estimate_cost([], strategy="s", link=LINK, device=DEVICE)
