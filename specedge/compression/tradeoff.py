"""The trade-off record of a speculative variant: what it costs to store, move and run, and what it gives up.

SIEVE's saving is memory traffic (thesis 4.4.2: weights and activations stay compressed in the
memory hierarchy and are decompressed in front of fp32 arithmetic), so beside bytes on disk the
record states the bytes one inference moves with every tensor at its stored width:

    traffic = sum over conv/linear layers of
                  weights x weight_bits/8 + bias x 4 + input activations x activation_bits/8
              + every other layer's parameters x 4 (batch norm and the like stay fp32)

The per-layer bits are listed in the profiler's row order, so the simulator's device model
(:func:`specedge.simulator.device.model_cost`) prices the same variant from the same record.
Stored in the variant's manifest (section ``tradeoff``) and printed by ``specedge eval``/``profile``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from specedge.models.classifier import ImageClassifier
from specedge.models.profiler import profile_classifier
from specedge.numerics.floats import FloatFormat

__all__ = ["LayerBits", "fp32_state_bytes", "layer_bits", "tradeoff_record", "tradeoff_table", "traffic_bytes"]

_FP32_BITS = 32
_INT8_BITS = 8
_COMPUTE_TYPES = ("Conv2d", "Linear")


@dataclass(frozen=True)
class LayerBits:
    """One profiled layer row: its size and the widths its weights and input activations are stored at."""

    name: str  # the classifier's module name, e.g. "backbone.features.0"
    type: str
    macs: int
    weight_elements: int
    bias_elements: int
    other_params: int  # parameters of a layer kind stored fp32 (batch norm, ...)
    input_elements: int
    weight_bits: int
    activation_bits: int

    @property
    def traffic_bytes(self) -> float:
        """Bytes this row moves per inference at its stored widths (module docstring)."""
        if self.type not in _COMPUTE_TYPES:
            return self.other_params * _FP32_BITS / 8
        return (
            self.weight_elements * self.weight_bits / 8
            + self.bias_elements * _FP32_BITS / 8
            + self.input_elements * self.activation_bits / 8
        )


def layer_bits(
    classifier: ImageClassifier,
    *,
    weight_formats: Mapping[str, FloatFormat] | None = None,
    activation_formats: Mapping[str, FloatFormat] | None = None,
    int8: bool = False,
) -> list[LayerBits]:
    """Per profiled row, the stored widths: SIEVE formats by layer name, int8 for every conv/linear, else fp32."""
    weight_formats, activation_formats = weight_formats or {}, activation_formats or {}
    modules = dict(classifier.named_modules())
    rows = []
    for row in profile_classifier(classifier).layers:
        name = f"backbone.{row.name}"
        module = modules.get(name)
        weight = getattr(module, "weight", None)
        bias = getattr(module, "bias", None)
        compute = row.type in _COMPUTE_TYPES and weight is not None
        default_bits = _INT8_BITS if (int8 and compute) else _FP32_BITS
        w_fmt, a_fmt = weight_formats.get(name), activation_formats.get(name)
        rows.append(
            LayerBits(
                name=name,
                type=row.type,
                macs=row.macs,
                weight_elements=weight.numel() if compute and weight is not None else 0,
                bias_elements=bias.numel() if compute and bias is not None else 0,
                other_params=0 if compute else row.params,
                input_elements=math.prod(row.input_shape),
                weight_bits=w_fmt.bits if w_fmt is not None else default_bits,
                activation_bits=a_fmt.bits if a_fmt is not None else default_bits,
            )
        )
    return rows


def traffic_bytes(rows: list[LayerBits]) -> float:
    """Bytes one inference moves with every tensor at its stored width."""
    return sum(row.traffic_bytes for row in rows)


def fp32_state_bytes(classifier: ImageClassifier) -> int:
    """Bytes of the classifier's state dict at its own dtypes (4 per float): the fp32 reference for bytes on disk."""
    return sum(t.numel() * t.element_size() for t in classifier.state_dict().values())


def tradeoff_record(
    classifier: ImageClassifier,
    *,
    encoding: str,
    stored_bytes: int,
    rows: list[LayerBits],
    metrics: Mapping[str, float],
    latency_us: Mapping[str, Mapping[str, float]],
    backend: str,
) -> dict[str, Any]:
    """The manifest's ``tradeoff`` section.

    Args:
        classifier: the fp32 structure of the variant (for the fp32 references).
        encoding: how the weights are stored (``fp32``, ``sieve``, ``int8``).
        stored_bytes: the weights file's size on disk.
        rows: :func:`layer_bits` of the variant.
        metrics: validation/test accuracy and agreement with the master, as fractions.
        latency_us: backend -> {"b1": median batch-1 latency, ...} measured on this host.
        backend: the backend the edge runs this variant on.
    """
    fp32_rows = layer_bits(classifier)
    fp32_bytes = fp32_state_bytes(classifier)
    traffic, fp32_traffic = traffic_bytes(rows), traffic_bytes(fp32_rows)
    return {
        "encoding": encoding,
        "bytes_on_disk": stored_bytes,
        "fp32_bytes": fp32_bytes,
        "bytes_ratio": stored_bytes / fp32_bytes,
        "macs": sum(row.macs for row in rows),
        "traffic_bytes": traffic,
        "fp32_traffic_bytes": fp32_traffic,
        "traffic_ratio": traffic / fp32_traffic,
        "layers": [asdict(row) for row in rows if row.type in _COMPUTE_TYPES],
        "weight_bits": [row.weight_bits for row in rows],
        "activation_bits": [row.activation_bits for row in rows],
        "metrics": dict(metrics),
        "latency_us": {backend_name: dict(v) for backend_name, v in latency_us.items()},
        "backend": backend,
    }


def _layer_cells(r: Mapping[str, Any]) -> tuple[str, ...]:
    weights, inputs = f"{r['weight_elements']:,}", f"{r['input_elements']:,}"
    return (r["name"], r["type"], weights, str(r["weight_bits"]), inputs, str(r["activation_bits"]))


def tradeoff_table(record: Mapping[str, Any]) -> str:
    """Aligned text for ``specedge eval``/``profile``: totals, then one row per conv/linear layer."""
    metrics = record.get("metrics", {})
    lines = [
        f"encoding {record['encoding']}: {record['bytes_on_disk']:,} bytes on disk "
        f"({record['bytes_ratio']:.3f} of fp32 {record['fp32_bytes']:,})",
        f"memory traffic per inference {record['traffic_bytes']:,.0f} bytes "
        f"({record['traffic_ratio']:.3f} of fp32 {record['fp32_traffic_bytes']:,.0f}); {record['macs']:,} MACs",
        "accuracy "
        + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if isinstance(v, int | float))
        + f"; edge backend {record['backend']}",
        "batch-1 latency "
        + ", ".join(f"{b} {v.get('b1', float('nan')):.0f} us" for b, v in record.get("latency_us", {}).items()),
    ]
    header = ("layer", "type", "weights", "w bits", "inputs", "a bits")
    rows = [_layer_cells(r) for r in record.get("layers", [])]
    table = [header, *rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    return "\n".join(lines)
