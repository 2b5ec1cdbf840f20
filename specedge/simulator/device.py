"""Named edge devices and an analytic per-layer time and energy model on one of them.

SIEVE's gains come from cheaper computation *and* from less data moved (thesis 4.4.2: weights and
activations stay compressed in the memory hierarchy; Horowitz's numbers in anchors.md section 7 say
why: a DRAM byte costs far more than a MAC). So a layer is priced on both (a roofline):

    time   = max(2 * MACs / peak ops, bytes moved / memory bandwidth) + per-layer overhead
    bytes  = weights * weight_bits/8 + (input + output activations) * activation_bits/8
    energy = MACs * energy per MAC(compute dtype) + bytes * energy per DRAM byte + static power * time

``weight_bits`` / ``activation_bits`` per layer make SIEVE's custom floats move fewer bytes (its
arithmetic stays fp32, decompressed in front of the register file), and ``compute="int8"`` makes
int8 MACs cheaper and faster. ``fuse_elementwise`` prices a deployment runtime (ONNX Runtime,
TFLite, TensorRT) that folds batch norm and activations into the preceding convolution: those rows
then cost nothing; without it every profiled row is a separate call, as in torch eager. Every
number comes from one :class:`DeviceProfile`: a time on one device is never priced with another
device's power.

Energies are above idle (like the radio's): ``static_power_mw`` is what the busy device draws
beyond idle that per-operation energies do not explain (clocks, leakage, the rest of the SoC),
derived so that running at the roofline peak draws the profile's ``active_power_mw``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from specedge.errors import ConfigError

if TYPE_CHECKING:  # the profiler imports torch; pricing a profile does not need it
    from specedge.models.profiler import LayerProfile, ModelProfile

__all__ = [
    "DEVICE_PROFILES",
    "FUSED_TYPES",
    "ComputeDtype",
    "DeviceProfile",
    "LayerCost",
    "ModelCost",
    "get_device_profile",
    "layer_cost",
    "model_cost",
]

ComputeDtype = Literal["fp32", "int8"]

#: Layer types a deployment runtime folds into the preceding convolution or linear layer (or drops).
FUSED_TYPES = frozenset({"BatchNorm1d", "BatchNorm2d", "ReLU", "ReLU6", "Dropout", "Identity", "Flatten"})

# Horowitz, ISSCC 2014, 45 nm [R] (anchors.md section 7): a MAC is a multiply plus an add.
_FP32_MAC_PJ_45NM = 3.7 + 0.9
_INT8_MAC_PJ_45NM = 0.2 + 0.03
_DRAM_BYTE_PJ_DDR3 = 640.0 / 4  # a 32-bit DRAM read


def _at_node(pj_45nm: float, node_nm: float) -> float:
    """Horowitz's 45 nm energy scaled linearly with feature size (an assumption: C ~ L at fixed voltage)."""
    return pj_45nm * node_nm / 45.0


@dataclass(frozen=True)
class DeviceProfile:
    """A device that runs the edge models, with where each number comes from.

    Args:
        name: profile name, e.g. ``"tegra-k1"``.
        fp32_gflops: peak fp32 throughput (2 FLOPs per MAC).
        int8_gops: peak int8 throughput (2 ops per MAC).
        memory_gbps: DRAM bandwidth in GB/s.
        active_power_mw: board power running flat out (compute and memory at peak).
        idle_power_mw: board power doing nothing; energies here are above it.
        fp32_mac_pj: energy of one fp32 MAC.
        int8_mac_pj: energy of one int8 MAC.
        dram_byte_pj: energy of moving one byte from DRAM.
        layer_overhead_us: fixed cost of each layer call (kernel launch, framework dispatch).
        source: the device and the documents the numbers come from.
        provenance: per number, its mark ([V], [R] or assumed) and origin; not part of equality.
    """

    name: str
    fp32_gflops: float
    int8_gops: float
    memory_gbps: float
    active_power_mw: float
    idle_power_mw: float
    fp32_mac_pj: float
    int8_mac_pj: float
    dram_byte_pj: float
    layer_overhead_us: float
    source: str
    provenance: Mapping[str, str] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        numbers = {k: v for k, v in vars(self).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        bad = {k: v for k, v in numbers.items() if not (math.isfinite(v) and v >= 0)}
        if bad or min(self.fp32_gflops, self.int8_gops, self.memory_gbps) <= 0:
            raise ConfigError(
                f"device profile {self.name!r}: numbers must be finite and >= 0, peaks > 0; got {numbers}"
            )
        if self.static_power_mw < 0:
            raise ConfigError(
                f"device profile {self.name!r}: active power {self.active_power_mw} mW is below idle "
                f"{self.idle_power_mw} mW plus the peak dynamic power {self.peak_dynamic_mw:.0f} mW of its "
                "per-operation energies; lower the energies or raise the active power"
            )

    @property
    def peak_dynamic_mw(self) -> float:
        """Power of fp32 MACs and DRAM traffic both at their peak rates."""
        macs_per_s = self.fp32_gflops * 1e9 / 2
        return (macs_per_s * self.fp32_mac_pj + self.memory_gbps * 1e9 * self.dram_byte_pj) * 1e-9

    @property
    def static_power_mw(self) -> float:
        """Busy power beyond idle not explained by per-operation energies."""
        return self.active_power_mw - self.idle_power_mw - self.peak_dynamic_mw

    def peak_ops_per_s(self, compute: ComputeDtype) -> float:
        """Peak arithmetic throughput (2 ops per MAC) in the given compute dtype."""
        return (self.fp32_gflops if compute == "fp32" else self.int8_gops) * 1e9

    def mac_pj(self, compute: ComputeDtype) -> float:
        """Energy of one MAC in the given compute dtype."""
        return self.fp32_mac_pj if compute == "fp32" else self.int8_mac_pj


@dataclass(frozen=True)
class LayerCost:
    """Analytic time (s) and energy (mJ) of one layer call on one device."""

    name: str
    type: str
    bytes_moved: float
    compute_s: float
    memory_s: float
    overhead_s: float
    mac_mj: float
    memory_mj: float
    static_mj: float

    @property
    def time_s(self) -> float:
        """Roofline time: the slower of compute and memory, plus the fixed overhead."""
        return max(self.compute_s, self.memory_s) + self.overhead_s

    @property
    def energy_mj(self) -> float:
        """MACs + DRAM traffic + static power over the layer's time."""
        return self.mac_mj + self.memory_mj + self.static_mj


@dataclass(frozen=True)
class ModelCost:
    """A model's per-layer costs on one device, and their sums."""

    device: str
    layers: tuple[LayerCost, ...]

    @property
    def time_s(self) -> float:
        """Sum of the layers' times (layers run one after another at batch 1)."""
        return sum(layer.time_s for layer in self.layers)

    @property
    def energy_mj(self) -> float:
        """Sum of the layers' energies."""
        return sum(layer.energy_mj for layer in self.layers)


def layer_cost(
    layer: LayerProfile,
    device: DeviceProfile,
    *,
    weight_bits: int = 32,
    activation_bits: int = 32,
    compute: ComputeDtype = "fp32",
) -> LayerCost:
    """Roofline time and energy of one profiled layer call (see the module docstring)."""
    if compute not in ("fp32", "int8"):
        raise ConfigError(f"unknown compute dtype {compute!r}; expected one of: fp32, int8")
    if not (1 <= weight_bits <= 64 and 1 <= activation_bits <= 64):
        raise ConfigError(f"bit widths must lie in 1..64; got weights {weight_bits}, activations {activation_bits}")
    activations = math.prod(layer.input_shape) + math.prod(layer.output_shape)
    bytes_moved = layer.params * weight_bits / 8 + activations * activation_bits / 8
    compute_s = 2 * layer.macs / device.peak_ops_per_s(compute)
    memory_s = bytes_moved / (device.memory_gbps * 1e9)
    overhead_s = device.layer_overhead_us / 1e6
    time_s = max(compute_s, memory_s) + overhead_s
    return LayerCost(
        name=layer.name,
        type=layer.type,
        bytes_moved=bytes_moved,
        compute_s=compute_s,
        memory_s=memory_s,
        overhead_s=overhead_s,
        mac_mj=layer.macs * device.mac_pj(compute) * 1e-9,
        memory_mj=bytes_moved * device.dram_byte_pj * 1e-9,
        static_mj=device.static_power_mw * time_s,
    )


def model_cost(
    profile: ModelProfile,
    device: DeviceProfile,
    *,
    weight_bits: int | Sequence[int] = 32,
    activation_bits: int | Sequence[int] = 32,
    compute: ComputeDtype = "fp32",
    fuse_elementwise: bool = False,
) -> ModelCost:
    """Per-layer costs of a profiled model; bit widths are one int or one per layer row.

    With ``fuse_elementwise`` the rows of :data:`FUSED_TYPES` cost nothing (folded into their producer).
    """

    def per_layer(bits: int | Sequence[int], what: str) -> Sequence[int]:
        if isinstance(bits, int):
            return [bits] * len(profile.layers)
        if len(bits) != len(profile.layers):
            raise ConfigError(f"{what} has {len(bits)} entries; the profile has {len(profile.layers)} layer rows")
        return bits

    weights, activations = per_layer(weight_bits, "weight_bits"), per_layer(activation_bits, "activation_bits")
    return ModelCost(
        device=device.name,
        layers=tuple(
            _free(layer)
            if fuse_elementwise and layer.type in FUSED_TYPES
            else layer_cost(layer, device, weight_bits=w, activation_bits=a, compute=compute)
            for layer, w, a in zip(profile.layers, weights, activations, strict=True)
        ),
    )


def _free(layer: LayerProfile) -> LayerCost:
    """A fused layer: no traffic, no arithmetic, no call of its own."""
    return LayerCost(layer.name, layer.type, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


_LPDDR4_BYTE_PJ = _DRAM_BYTE_PJ_DDR3 / 4  # assumed: LPDDR4/4X at ~5 pJ/bit against DDR3's ~20

DEVICE_PROFILES: dict[str, DeviceProfile] = {
    "tegra-k1": DeviceProfile(
        name="tegra-k1",
        fp32_gflops=327.0,
        int8_gops=327.0,
        memory_gbps=14.9,
        active_power_mw=0.23 / 0.0206 * 1000,
        idle_power_mw=1500.0,
        fp32_mac_pj=_at_node(_FP32_MAC_PJ_45NM, 28),
        int8_mac_pj=_at_node(_INT8_MAC_PJ_45NM, 28),
        dram_byte_pj=_DRAM_BYTE_PJ_DDR3,
        layer_overhead_us=20.0,
        source="NVIDIA Jetson TK1 (Tegra K1, Kepler GPU, 28 nm): the device SIEVE was evaluated on (thesis 4.5.1)",
        provenance={
            "fp32_gflops": "[R] NVIDIA spec: 192 CUDA cores x 2 FLOPs x 852 MHz",
            "int8_gops": "assumed: Kepler has no int8 dot-product instructions, so int8 is no faster than fp32",
            "memory_gbps": "[R] NVIDIA spec: 64-bit DDR3L-1866",
            "active_power_mw": "derived from thesis 4.4.2: the 0.23 W (de)compressor is 2.06% of active power",
            "idle_power_mw": "assumed: typical reported Jetson TK1 idle board power",
            "mac_pj": "[R] Horowitz 45 nm scaled linearly to 28 nm (assumed scaling)",
            "dram_byte_pj": "[R] Horowitz: 640 pJ per 32-bit DRAM read (DDR3-class, as the TK1's DDR3L)",
            "layer_overhead_us": "assumed: GPU kernel launch and framework dispatch per layer",
        },
    ),
    "pixel-class": DeviceProfile(
        name="pixel-class",
        fp32_gflops=16 * (2.84 + 3 * 2.42),
        int8_gops=64 * (2.84 + 3 * 2.42),
        memory_gbps=34.1,
        active_power_mw=5000.0,
        idle_power_mw=600.0,
        fp32_mac_pj=_at_node(_FP32_MAC_PJ_45NM, 7),
        int8_mac_pj=_at_node(_INT8_MAC_PJ_45NM, 7),
        dram_byte_pj=_LPDDR4_BYTE_PJ,
        layer_overhead_us=10.0,
        source="a Pixel-4-class phone (Snapdragon 855, 7 nm) running on its four Cortex-A76 cores",
        provenance={
            "fp32_gflops": "[R] Arm Cortex-A76: two 128-bit FMA pipes = 16 FLOPs/cycle; 1 x 2.84 + 3 x 2.42 GHz",
            "int8_gops": "[R] SDOT: 16 int8 MACs per 128-bit pipe = 64 ops/cycle/core, same clocks",
            "memory_gbps": "[R] Qualcomm spec: LPDDR4X-2133, 4 x 16 bit",
            "active_power_mw": "assumed: four big cores flat out plus memory",
            "idle_power_mw": "assumed: phone awake with the screen on",
            "mac_pj": "[R] Horowitz 45 nm scaled linearly to 7 nm (assumed scaling)",
            "dram_byte_pj": "assumed: LPDDR4X ~5 pJ/bit, a quarter of Horowitz's DDR3-class 20 pJ/bit",
            "layer_overhead_us": "assumed: CPU runtime dispatch per operator (TFLite/ONNX Runtime class)",
        },
    ),
    "rpi4": DeviceProfile(
        name="rpi4",
        fp32_gflops=16 * 4 * 1.5,
        int8_gops=32 * 4 * 1.5,
        memory_gbps=12.8,
        active_power_mw=6400.0,
        idle_power_mw=2700.0,
        fp32_mac_pj=_at_node(_FP32_MAC_PJ_45NM, 28),
        int8_mac_pj=_at_node(_INT8_MAC_PJ_45NM, 28),
        dram_byte_pj=_LPDDR4_BYTE_PJ,
        layer_overhead_us=20.0,
        source="a Raspberry-Pi-4-like board (BCM2711: 4 x Cortex-A72 at 1.5 GHz, 28 nm, LPDDR4)",
        provenance={
            "fp32_gflops": "[R] Arm Cortex-A72: two 128-bit FP pipes with FMA = 16 FLOPs/cycle x 4 cores x 1.5 GHz",
            "int8_gops": "assumed: no SDOT on A72; widening 16-bit multiply-accumulates give ~2x fp32",
            "memory_gbps": "[R] Raspberry Pi 4 spec: 32-bit LPDDR4-3200",
            "active_power_mw": "[R] commonly reported board power under full CPU load (not re-measured)",
            "idle_power_mw": "[R] commonly reported idle board power (not re-measured)",
            "mac_pj": "[R] Horowitz 45 nm scaled linearly to 28 nm (assumed scaling)",
            "dram_byte_pj": "assumed: LPDDR4 ~5 pJ/bit, a quarter of Horowitz's DDR3-class 20 pJ/bit",
            "layer_overhead_us": "assumed: CPU runtime dispatch per operator on a slower core",
        },
    ),
    "host-x86": DeviceProfile(
        name="host-x86",
        fp32_gflops=250.0,
        int8_gops=1000.0,
        memory_gbps=29.0,
        active_power_mw=10000.0,
        idle_power_mw=2000.0,
        fp32_mac_pj=_at_node(_FP32_MAC_PJ_45NM, 4),
        int8_mac_pj=_at_node(_INT8_MAC_PJ_45NM, 4),
        dram_byte_pj=60.0,
        layer_overhead_us=3.2,
        source="this machine, one thread: AMD EPYC (Zen 5, AVX-512), torch eager at batch 1",
        provenance={
            "fp32_gflops": "[V] anchors.md section 8: ~250 GFLOPS single-thread fp32 GEMM (oneDNN/ORT/OpenBLAS)",
            "int8_gops": "assumed: AVX-512 VNNI does 4 int8 MACs per fp32 FMA lane, so 4x fp32",
            "memory_gbps": "[V] measured here: single-thread numpy copy of 256 MB, read + write",
            "active_power_mw": "assumed: one busy Zen 5 core under AVX-512 load with its share of the uncore",
            "idle_power_mw": "assumed: that core's share when idle",
            "mac_pj": "[R] Horowitz 45 nm scaled linearly to 4 nm (TSMC N4; assumed scaling)",
            "dram_byte_pj": "assumed: DDR5 ~7.5 pJ/bit",
            "layer_overhead_us": "[V] measured here: median torch eager call of a ReLU, BN, 1x1 conv, pool, "
            "linear and flatten on a 1-element tensor (1.8-7.3 us)",
        },
    ),
}


def get_device_profile(name: str) -> DeviceProfile:
    """The named profile; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return DEVICE_PROFILES[name]
    except KeyError:
        raise ConfigError(f"unknown device profile {name!r}; expected one of: {', '.join(DEVICE_PROFILES)}") from None
