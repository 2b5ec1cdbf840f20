"""The model zoo registry: architectures by name, with reference costs.

Builders are keyword-only functions ``builder(*, num_classes, in_channels, input_size, **kw)``
returning a backbone ``nn.Module`` that takes normalised float input ``(N, C, S, S)``. Each
entry records the parameter and multiply-accumulate counts of one reference configuration;
``tests/models/test_registry.py`` rebuilds every model and checks them, so the documented
numbers cannot drift from the code.

Your own architectures join the zoo with :func:`register_model` in a module of yours, imported
with :func:`import_plugin` (CLI: ``--plugin your.module``) or advertised through the
``specedge.models`` entry-point group of your package (see docs/MODELS.md).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from torch import nn

from specedge.errors import ConfigError

__all__ = [
    "ModelEntry",
    "get_model",
    "import_plugin",
    "list_models",
    "model_entry",
    "register_model",
]

Builder = Callable[..., nn.Module]
ENTRY_POINT_GROUP = "specedge.models"


@dataclass(frozen=True)
class ModelEntry:
    """A registered architecture and its documented reference cost."""

    name: str
    builder: Builder
    description: str
    min_input_size: int  # smallest square input the backbone accepts
    default_input_size: int  # used when a dataset's images are smaller than min_input_size
    reference_input: tuple[int, int, int]  # (C, S, S) at which the reference counts hold
    reference_num_classes: int
    reference_params: int
    reference_macs: int


_REGISTRY: dict[str, ModelEntry] = {}
_entry_points_loaded: list[bool] = []  # non-empty once the entry points were imported


def register_model(
    name: str,
    *,
    description: str,
    min_input_size: int,
    default_input_size: int,
    reference_input: tuple[int, int, int],
    reference_params: int,
    reference_macs: int,
    reference_num_classes: int = 10,
) -> Callable[[Builder], Builder]:
    """Decorator adding a builder to the zoo under ``name``."""

    def decorate(builder: Builder) -> Builder:
        if name in _REGISTRY and _REGISTRY[name].builder is not builder:
            raise ConfigError(f"model name {name!r} is already registered by {_REGISTRY[name].builder!r}")
        _REGISTRY[name] = ModelEntry(
            name=name,
            builder=builder,
            description=description,
            min_input_size=min_input_size,
            default_input_size=default_input_size,
            reference_input=reference_input,
            reference_num_classes=reference_num_classes,
            reference_params=reference_params,
            reference_macs=reference_macs,
        )
        return builder

    return decorate


def _ensure_zoo_loaded() -> None:
    """Import the built-in zoo and any installed ``specedge.models`` entry points once."""
    importlib.import_module("specedge.models.zoo")
    if not _entry_points_loaded:
        _entry_points_loaded.append(True)
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            ep.load()


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; :class:`ConfigError` naming the known models otherwise."""
    _ensure_zoo_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY))
        raise ConfigError(
            f"unknown model {name!r}; expected one of: {known} (register your own with --plugin MODULE)"
        ) from None


def list_models() -> list[str]:
    """Names of all registered architectures, sorted."""
    _ensure_zoo_loaded()
    return sorted(_REGISTRY)


def get_model(name: str, /, *, num_classes: int, in_channels: int, input_size: int, **kwargs: Any) -> nn.Module:
    """Build the backbone ``name``; options the builder does not take become a :class:`ConfigError`.

    Only the call's binding is checked (unknown or missing keywords): a ``TypeError`` raised
    inside the builder is a bug and propagates unchanged (foundation review item 8). ``name`` is
    positional-only, so an architecture may have an option called ``name``.
    """
    entry = model_entry(name)
    arguments = {"num_classes": num_classes, "in_channels": in_channels, "input_size": input_size, **kwargs}
    signature = inspect.signature(entry.builder)
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        raise ConfigError(
            f"cannot build {name!r} with options {kwargs}: {exc}; its options are: {_options(signature)}"
        ) from exc
    return entry.builder(**arguments)


def _options(signature: inspect.Signature) -> str:
    """``width=1.0, ...``: a builder's parameters beyond those every builder takes."""
    common = ("num_classes", "in_channels", "input_size")
    options = [
        p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
        for p in signature.parameters.values()
        if p.name not in common and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return ", ".join(options) or "none"


def import_plugin(module: str) -> None:
    """Import ``module`` so the architectures it registers join the zoo."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(f"cannot import plugin module {module!r}: {exc}") from exc
