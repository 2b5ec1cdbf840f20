"""Device profiles and the analytic roofline time/energy model."""

import subprocess
import sys
from dataclasses import replace

import pytest

from specedge.errors import ConfigError
from specedge.models.profiler import LayerProfile, profile_model
from specedge.models.registry import get_model
from specedge.simulator.device import DEVICE_PROFILES, get_device_profile, layer_cost, model_cost


def _conv(macs: int = 1_000_000, params: int = 10_000) -> LayerProfile:
    return LayerProfile(
        name="c",
        type="Conv2d",
        input_shape=(8, 16, 16),
        output_shape=(16, 16, 16),
        kernel=(3, 3),
        stride=(1, 1),
        padding=(1, 1),
        groups=1,
        macs=macs,
        params=params,
        param_bytes=params * 4,
        activation_bytes=16 * 16 * 16 * 4,
    )


def test_named_devices_with_sources() -> None:
    assert set(DEVICE_PROFILES) == {"tegra-k1", "pixel-class", "rpi4", "host-x86"}
    for device in DEVICE_PROFILES.values():
        assert device.source and len(device.provenance) >= 6
        assert device.static_power_mw >= 0
        assert device.int8_mac_pj < device.fp32_mac_pj
    assert get_device_profile("tegra-k1").active_power_mw == pytest.approx(11165.05, rel=1e-4)
    assert get_device_profile("host-x86").fp32_gflops == 250.0  # anchors.md section 8
    with pytest.raises(ConfigError, match="unknown device profile 'toaster'; expected one of: tegra-k1, pixel-class"):
        get_device_profile("toaster")


def test_roofline_layer_by_hand() -> None:
    device = get_device_profile("tegra-k1")
    cost = layer_cost(_conv(), device)
    assert cost.bytes_moved == 10_000 * 4 + (8 + 16) * 256 * 4
    assert cost.compute_s == pytest.approx(2e6 / 327e9)
    assert cost.memory_s == pytest.approx(cost.bytes_moved / 14.9e9)
    assert cost.time_s == pytest.approx(max(cost.compute_s, cost.memory_s) + 20e-6)
    expected_mj = 1e6 * device.fp32_mac_pj * 1e-9 + cost.bytes_moved * device.dram_byte_pj * 1e-9
    assert cost.energy_mj == pytest.approx(expected_mj + device.static_power_mw * cost.time_s)


def test_fewer_bits_move_fewer_bytes_and_int8_macs_are_cheaper() -> None:
    device = get_device_profile("pixel-class")
    full = layer_cost(_conv(macs=10, params=2_000_000), device)  # memory bound
    sieve = layer_cost(_conv(macs=10, params=2_000_000), device, weight_bits=8, activation_bits=8)
    assert sieve.bytes_moved == pytest.approx(full.bytes_moved / 4)
    assert sieve.time_s < full.time_s and sieve.energy_mj < full.energy_mj
    heavy = _conv(macs=500_000_000, params=100)  # compute bound
    fp32 = layer_cost(heavy, device)
    int8 = layer_cost(heavy, device, weight_bits=8, activation_bits=8, compute="int8")
    assert int8.compute_s == pytest.approx(fp32.compute_s / 4)
    assert int8.mac_mj == pytest.approx(fp32.mac_mj * device.int8_mac_pj / device.fp32_mac_pj)


def test_model_cost_sums_layers_on_one_device() -> None:
    model = get_model("lenet5", num_classes=10, in_channels=1, input_size=28)
    profile = profile_model(model, (1, 28, 28))
    k1, host = get_device_profile("tegra-k1"), get_device_profile("host-x86")
    cost = model_cost(profile, k1)
    assert cost.device == "tegra-k1" and len(cost.layers) == len(profile.layers)
    assert cost.time_s == pytest.approx(sum(layer.time_s for layer in cost.layers))
    assert cost.energy_mj == pytest.approx(sum(layer.energy_mj for layer in cost.layers))
    # Energy follows from the same device's time: a faster device with lower power costs less here.
    assert model_cost(profile, host).energy_mj != cost.energy_mj
    per_layer = model_cost(profile, k1, weight_bits=[8] * len(profile.layers), activation_bits=16)
    assert per_layer.energy_mj < cost.energy_mj
    with pytest.raises(ConfigError, match="weight_bits has 2 entries"):
        model_cost(profile, k1, weight_bits=[8, 8])


def test_device_and_layer_validation() -> None:
    with pytest.raises(ConfigError, match="below idle"):
        replace(get_device_profile("rpi4"), active_power_mw=1000.0)
    with pytest.raises(ConfigError, match="peaks > 0"):
        replace(get_device_profile("rpi4"), memory_gbps=0.0)
    with pytest.raises(ConfigError, match="unknown compute dtype 'fp16'"):
        layer_cost(_conv(), get_device_profile("rpi4"), compute="fp16")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="bit widths"):
        layer_cost(_conv(), get_device_profile("rpi4"), weight_bits=0)


def test_importing_the_simulator_loads_neither_torch_nor_sklearn() -> None:
    # Pricing takes profiler rows; only measuring (torch) and the regression (scikit-learn) need them.
    code = "import sys, specedge.simulator; print('torch' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
