"""Per-layer cost profile of a model: shapes, MACs, parameters and activation bytes.

The SIEVE CNN selector (thesis section 4.3.2) predicts each layer's latency and energy on the
device and in the cloud with Neurosurgeon-style regression models keyed by layer type and
configuration (kernel, stride, channels, input and output sizes). This module measures those
features by running one batch-1 forward pass with hooks on every leaf module.

Convention: ``macs`` counts the multiply-accumulates of convolutions and fully connected
layers only, ``out_elements · (in_channels / groups) · kh · kw`` for a convolution and
``in_features · out_features`` per output row for a linear layer; bias additions, BN,
activations, pooling and resizing count 0. This is the convention of the thesis' Table 4.1
(LeNet-5: 2,293,000 MACs) and of the MobileNet paper's Mult-Adds.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from specedge.models.classifier import ImageClassifier

__all__ = ["LayerProfile", "ModelProfile", "profile_classifier", "profile_model"]

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)


@dataclass(frozen=True)
class LayerProfile:
    """One call of one leaf module. Shapes exclude the batch dimension."""

    name: str  # qualified module name, e.g. "features.0"
    type: str  # module class name, e.g. "Conv2d"
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    kernel: tuple[int, ...] | None  # convolutions and pooling; None elsewhere
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str | None  # a string for padding="same"/"valid" convolutions
    groups: int | None  # convolutions only
    macs: int
    params: int  # parameters owned by this module (counted at its first call only)
    param_bytes: int
    activation_bytes: int  # output elements x element size


@dataclass(frozen=True)
class ModelProfile:
    """All leaf calls of one forward pass, in execution order, with model-wide totals."""

    input_shape: tuple[int, ...]
    layers: tuple[LayerProfile, ...]
    total_params: int  # every parameter of the model, including those of non-leaf modules
    total_param_bytes: int

    @property
    def total_macs(self) -> int:
        """Multiply-accumulates of one input (conv and linear layers)."""
        return sum(layer.macs for layer in self.layers)

    @property
    def total_activation_bytes(self) -> int:
        """Bytes of all leaf outputs of one input, as if none were freed."""
        return sum(layer.activation_bytes for layer in self.layers)

    @property
    def peak_activation_bytes(self) -> int:
        """Largest single leaf output of one input."""
        return max((layer.activation_bytes for layer in self.layers), default=0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, totals included."""
        return {
            "input_shape": list(self.input_shape),
            "total_macs": self.total_macs,
            "total_params": self.total_params,
            "total_param_bytes": self.total_param_bytes,
            "total_activation_bytes": self.total_activation_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
            "layers": [_jsonable(asdict(layer)) for layer in self.layers],
        }

    def to_table(self) -> str:
        """Aligned text table, one row per layer call, totals last (``specedge profile``)."""
        header = ("layer", "type", "output", "kernel", "stride", "groups", "MACs", "params", "act bytes")
        rows = [
            (
                layer.name,
                layer.type,
                "x".join(map(str, layer.output_shape)),
                _fmt_tuple(layer.kernel),
                _fmt_tuple(layer.stride),
                "" if layer.groups is None else str(layer.groups),
                f"{layer.macs:,}",
                f"{layer.params:,}",
                f"{layer.activation_bytes:,}",
            )
            for layer in self.layers
        ]
        total = (
            "total",
            "",
            "",
            "",
            "",
            "",
            f"{self.total_macs:,}",
            f"{self.total_params:,}",
            f"{self.total_activation_bytes:,}",
        )
        table = [header, *rows, total]
        widths = [max(len(row[i]) for row in table) for i in range(len(header))]
        numeric = range(6, len(header))  # right-align the numbers

        def fmt(row: tuple[str, ...]) -> str:
            cells = [
                c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(cells).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([fmt(header), rule, *map(fmt, rows), rule, fmt(total)])


def _fmt_tuple(value: tuple[int, ...] | None) -> str:
    return "" if value is None else "x".join(map(str, value))


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _as_tuple(value: int | tuple[int, ...] | None, ndim: int) -> tuple[int, ...] | None:
    if value is None:
        return None
    if isinstance(value, int):
        return (value,) * ndim
    return tuple(int(v) for v in value)


def _first_tensor(value: Any) -> torch.Tensor | None:
    """The tensor a hook sees, or the first one inside a tuple/list output."""
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item)
            if found is not None:
                return found
    return None


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one batch-1 call (see module docstring for the convention)."""
    if isinstance(module, _CONVS):
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return output.numel() * per_output
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features  # = in x out for a (1, out) output
    return 0


def _geometry(module: nn.Module, ndim: int) -> dict[str, Any]:
    """kernel, stride, padding and groups of convolutions and pooling layers."""
    if isinstance(module, _CONVS):
        padding = module.padding if isinstance(module.padding, str) else _as_tuple(module.padding, ndim)
        return {
            "kernel": _as_tuple(module.kernel_size, ndim),
            "stride": _as_tuple(module.stride, ndim),
            "padding": padding,
            "groups": module.groups,
        }
    if isinstance(module, _POOLS):
        stride = module.stride if module.stride is not None else module.kernel_size
        return {
            "kernel": _as_tuple(module.kernel_size, ndim),
            "stride": _as_tuple(stride, ndim),
            "padding": _as_tuple(module.padding, ndim),
            "groups": None,
        }
    return {"kernel": None, "stride": None, "padding": None, "groups": None}


def _is_leaf(module: nn.Module) -> bool:
    return next(module.children(), None) is None


@torch.no_grad()
def profile_model(
    model: nn.Module, input_shape: tuple[int, ...], *, dtype: torch.dtype = torch.float32
) -> ModelProfile:
    """Profile ``model`` on one zero input of ``input_shape`` (no batch dimension).

    The model runs in eval mode (BN uses running statistics, dropout is off); every module's
    training flag is restored afterwards. A leaf called twice yields two rows; its parameters
    count on the first only, so the rows' params add up to those of the leaves.
    """
    layers: list[LayerProfile] = []
    seen: set[int] = set()

    def hook(name: str, module: nn.Module, inputs: tuple[Any, ...], output: Any) -> None:
        x, y = _first_tensor(inputs), _first_tensor(output)
        in_shape = tuple(x.shape[1:]) if x is not None else ()
        out_shape = tuple(y.shape[1:]) if y is not None else ()
        first_call = id(module) not in seen
        seen.add(id(module))
        own = list(module.parameters(recurse=False)) if first_call else []
        layers.append(
            LayerProfile(
                name=name,
                type=type(module).__name__,
                input_shape=in_shape,
                output_shape=out_shape,
                **_geometry(module, max(len(out_shape) - 1, 1)),
                macs=_macs(module, y) if y is not None else 0,
                params=sum(p.numel() for p in own),
                param_bytes=sum(p.numel() * p.element_size() for p in own),
                activation_bytes=y.numel() * y.element_size() if y is not None else 0,
            )
        )

    modes = {m: m.training for m in model.modules()}
    handles = [
        m.register_forward_hook(lambda mod, inp, out, name=name: hook(name, mod, inp, out))
        for name, m in model.named_modules()
        if _is_leaf(m)
    ]
    try:
        model.eval()
        reference = next(model.parameters(), None)
        device = reference.device if reference is not None else torch.device("cpu")
        model(torch.zeros((1, *input_shape), dtype=dtype, device=device))
    finally:
        for handle in handles:
            handle.remove()
        for m, training in modes.items():
            m.training = training

    params = list(model.parameters())
    return ModelProfile(
        input_shape=tuple(input_shape),
        layers=tuple(layers),
        total_params=sum(p.numel() for p in params),
        total_param_bytes=sum(p.numel() * p.element_size() for p in params),
    )


def profile_classifier(classifier: ImageClassifier) -> ModelProfile:
    """Profile a classifier's backbone at the size it runs at (preprocessing costs 0 MACs)."""
    return profile_model(classifier.backbone, classifier.backbone_input_shape)
