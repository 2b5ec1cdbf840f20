"""Where SIEVE's float formats live on a model: layer weights and the inputs each layer reads.

SIEVE (thesis 4.4.1) gives every convolution and fully connected layer two formats: one for its
stored weights and one for the activation it reads, which the accelerator keeps compressed in
memory and decompresses before the fp32 multiply-accumulate (thesis 4.4.2). Here both are
"fake quantised": weights are rounded in place once, inputs are rounded by a forward pre-hook, and
the arithmetic stays fp32. ``torch.onnx.export(dynamo=True)`` captures forward pre-hooks, so an
exported model computes with the same formats.

Everything else that owns parameters or float buffers (BatchNorm, the preprocessing statistics)
stays fp32; :func:`uncompressed_parameters` lists it so reports can say so.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from specedge.errors import ConfigError
from specedge.numerics.floats import FloatFormat, quantize_tensor

__all__ = [
    "ActivationQuantizer",
    "CompressibleLayer",
    "activation_formats_of",
    "apply_activation_formats",
    "apply_weight_formats",
    "compressible_layers",
    "float_tensor_names",
    "uncompressed_parameters",
    "with_formats",
]

CompressibleLayer = nn.Conv2d | nn.Linear  # what SIEVE searches formats for (thesis 4.4.1)

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def compressible_layers(model: nn.Module) -> list[tuple[str, CompressibleLayer]]:
    """``(name, module)`` of every Conv2d and Linear with a weight, in ``named_modules()`` order.

    Module order is the forward order for the zoo's sequential models; finding the true forward
    order would need an input and a forward pass, and nothing here depends on the order.
    """
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, (nn.Conv2d, nn.Linear)) and isinstance(module.weight, torch.Tensor)
    ]


def float_tensor_names(module: nn.Module) -> list[str]:
    """Names of the floating-point parameters and buffers ``module`` itself owns (not its children)."""
    tensors = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    return [name for name, tensor in tensors if tensor.is_floating_point()]


def uncompressed_parameters(model: nn.Module) -> list[tuple[str, str]]:
    """``(module name, module type)`` of modules whose float tensors SIEVE leaves in fp32.

    Those are all modules other than :func:`compressible_layers` that own floating-point
    parameters or buffers: BatchNorm (folded into the fp32 compute), preprocessing statistics,
    custom layers. Compressible layers' biases also stay fp32 (see :func:`apply_weight_formats`).
    """
    compressible = {name for name, _ in compressible_layers(model)}
    return [
        (name, type(module).__name__)
        for name, module in model.named_modules()
        if name not in compressible and float_tensor_names(module)
    ]


def _layers_by_name(model: nn.Module, names: Mapping[str, FloatFormat]) -> dict[str, CompressibleLayer]:
    """The compressible layers named in ``names``; :class:`ConfigError` for an unknown name."""
    layers = dict(compressible_layers(model))
    unknown = [name for name in names if name not in layers]
    if unknown:
        raise ConfigError(
            f"no compressible (Conv2d/Linear) layer named {unknown[0]!r}; expected one of: {', '.join(layers)}"
        )
    return {name: layers[name] for name in names}


@torch.no_grad()
def apply_weight_formats(model: nn.Module, formats: Mapping[str, FloatFormat]) -> None:
    """Round the weights of each named layer to its format, in place (thesis 4.4.1).

    Biases stay fp32: there is one per output channel, a negligible share of the storage, and
    they are added straight into the fp32 accumulator, where rounding them would only cost accuracy.

    Raises:
        ConfigError: A name is not a compressible layer of ``model``.
    """
    for name, layer in _layers_by_name(model, formats).items():
        weight = layer.weight
        weight.copy_(quantize_tensor(weight.detach(), formats[name]))


class ActivationQuantizer:
    """Forward pre-hook that rounds a layer's input to ``format`` (thesis 4.4.2).

    A class rather than a closure so that hooked models pickle and deep-copy, and so that
    :func:`activation_formats_of` can find the hooks and read their formats back.
    """

    def __init__(self, fmt: FloatFormat) -> None:
        self.format = fmt

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The layer's positional inputs with the first (the activation) rounded."""
        return (quantize_tensor(args[0], self.format), *args[1:])

    def __repr__(self) -> str:
        return f"ActivationQuantizer({self.format.name})"


def _quantizers(layer: nn.Module) -> list[ActivationQuantizer]:
    return [hook for hook in layer._forward_pre_hooks.values() if isinstance(hook, ActivationQuantizer)]


def apply_activation_formats(model: nn.Module, formats: Mapping[str, FloatFormat]) -> list[RemovableHandle]:
    """Round each named layer's input to its format with a forward pre-hook (thesis 4.4.2).

    The rounded value is the activation as stored in compressed form and read back by the layer;
    other consumers of the same tensor (e.g. a residual shortcut) still see the fp32 value.
    Returns the hooks' handles; ``handle.remove()`` undoes one.

    Raises:
        ConfigError: A name is not a compressible layer, or the layer already rounds its input
            (rounding twice would silently use the coarser of two formats).
    """
    layers = _layers_by_name(model, formats)
    for name, layer in layers.items():
        if _quantizers(layer):
            raise ConfigError(
                f"layer {name!r} already rounds its input to {_quantizers(layer)[0].format.name}; "
                "remove that hook (or start from the fp32 model) before applying another format"
            )
    return [layer.register_forward_pre_hook(ActivationQuantizer(formats[name])) for name, layer in layers.items()]


def activation_formats_of(model: nn.Module) -> dict[str, FloatFormat]:
    """The input formats currently hooked onto ``model``'s layers, by layer name."""
    return {name: hooks[0].format for name, layer in compressible_layers(model) if (hooks := _quantizers(layer))}


def with_formats(
    model: ModuleT,
    weight_formats: Mapping[str, FloatFormat],
    activation_formats: Mapping[str, FloatFormat],
) -> ModuleT:
    """A copy of ``model`` in eval mode with both kinds of formats applied; ``model`` is untouched."""
    compressed = copy.deepcopy(model).eval()
    apply_weight_formats(compressed, weight_formats)
    apply_activation_formats(compressed, activation_formats)
    return compressed
