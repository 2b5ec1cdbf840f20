"""SIEVE's search for per-layer custom float formats, without retraining (thesis 4.4.1).

SIEVE derives a speculative CNN from a trained one by storing each layer's weights and input
activations in its own small float format T(w, t, bias) (:mod:`specedge.numerics.floats`);
compute stays fp32 (:mod:`specedge.models.layers`). The search, all on validation data:

1. Run the fp32 model once: its accuracy is the reference (normalised accuracy = accuracy of a
   variant / accuracy of fp32), and pre-hooks count the exponents ``floor(log2|x|)`` of every
   layer's nonzero input values; weights are counted from the tensors.
2. Per tensor (one layer's weights, or its input): ``e_max`` is the smallest ``w`` whose
   ``2**w - 2`` normal exponents span all observed exponents (8 if none does). ``w`` sweeps from
   ``e_max`` down to 2; at each, the bias maximises *coverage*, the fraction of nonzero values
   whose exponent lies in the format's normal range (ties: the higher range, keeping large
   values); the sweep stops at the first ``w`` whose coverage is below ``min_coverage``, which
   is not tried. For each ``w`` tried, ``t`` sweeps from ``max_mantissa_bits`` down to 0 with every
   other tensor fp32 and stops after the first config whose normalised accuracy is below
   ``min_normalized_accuracy`` (recorded as failing; lower ``t`` are not tried).
3. Variants combine one config per tensor and are re-verified as a whole, since losses add up:
   ``exact`` takes each tensor's most accurate passing config; ``accurate`` (``approximate``) the
   fewest-bit config scoring >= 1.0 (>= 0.999) alone. A tensor with no such config keeps its
   most accurate passing one, and one with no passing config at all stays fp32. If the combined
   ``accurate``/``approximate`` model misses the threshold, back-off repeatedly moves the tensor
   whose config scored lowest alone to its next more accurate qualifying config (after the last
   one, fp32) until it meets it; all-fp32 meets it trivially.

Trials are cheap thanks to a :class:`PrefixCache`: perturbing layer L leaves everything before L
unchanged, so that part runs once per layer and each trial runs only the rest of the network.
Models torch.fx cannot trace fall back to full passes (``SieveSearch.prefix_cache`` is False).
Preprocessing has no compressible layer, so it always runs once.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import torch
from torch import fx, nn
from tqdm.auto import tqdm

from specedge.errors import ConfigError
from specedge.models.classifier import ImageClassifier
from specedge.models.layers import (
    apply_activation_formats,
    apply_weight_formats,
    compressible_layers,
    float_tensor_names,
    uncompressed_parameters,
    with_formats,
)
from specedge.numerics.floats import FloatFormat

__all__ = [
    "KINDS",
    "VARIANT_THRESHOLDS",
    "PrefixCache",
    "SieveConfig",
    "SieveSearch",
    "SieveTrial",
    "SieveVariant",
    "best_bias",
    "compress_sieve",
    "exponent_bits_needed",
    "exponent_histogram",
    "sieve_search",
]

KINDS = ("weights", "activations")
# Per-tensor and whole-model normalised accuracy each variant must reach; exact has no threshold.
VARIANT_THRESHOLDS: dict[str, float | None] = {"exact": None, "accurate": 1.0, "approximate": 0.999}

_EXP_LOW, _EXP_HIGH = -149, 127  # exponents of nonzero finite float32 values (subnormals included)
_NORMAL_LOW = -126  # formats keep their normal range inside float32's, so every bias is valid
_MIN_EXPONENT_BITS, _MAX_EXPONENT_BITS = 2, 8
_BACKBONE = "backbone."

TensorKey = tuple[str, str]  # (layer name, kind)


# --- exponent statistics (thesis 4.4.1, Figure 4.7) -----------------------------------------


def exponent_histogram(values: torch.Tensor) -> npt.NDArray[np.int64]:
    """Counts of ``floor(log2|x|)`` over nonzero finite values; index ``i`` is exponent ``i - 149``."""
    flat = values.detach().flatten().float()
    flat = flat[(flat != 0) & torch.isfinite(flat)]
    _, exponents = torch.frexp(flat)  # mantissa in [0.5, 1): floor(log2|x|) = exponent - 1
    counts = torch.bincount(exponents.long() - 1 - _EXP_LOW, minlength=_EXP_HIGH - _EXP_LOW + 1)
    return counts.cpu().numpy().astype(np.int64)


def exponent_bits_needed(histogram: npt.NDArray[np.int64]) -> int:
    """``e_max``: the smallest ``w`` whose ``2**w - 2`` normal exponents span every observed one (8 if none)."""
    observed = np.flatnonzero(histogram)
    span = int(observed[-1] - observed[0]) + 1 if observed.size else 0
    fits = [w for w in range(_MIN_EXPONENT_BITS, _MAX_EXPONENT_BITS + 1) if 2**w - 2 >= span]
    return fits[0] if fits else _MAX_EXPONENT_BITS


def best_bias(histogram: npt.NDArray[np.int64], exponent_bits: int) -> tuple[int, float]:
    """The bias maximising coverage at ``exponent_bits``, and that coverage.

    Coverage is the fraction of counted values whose exponent lies in the normal range
    ``[1 - bias, 2**w - 2 - bias]``. Ties go to the higher range: large values matter more to a
    CNN than tiny ones, which still round to subnormals or zero. With nothing counted (an all-zero
    tensor, which every format stores exactly) the IEEE bias ``2**(w-1) - 1`` and coverage 1.0.
    """
    cumulative = np.concatenate([[0], np.cumsum(histogram)])
    total = int(cumulative[-1])
    if total == 0:
        return 2 ** (exponent_bits - 1) - 1, 1.0
    width = 2**exponent_bits - 2
    lows = np.arange(_NORMAL_LOW, _EXP_HIGH - width + 2)  # lowest normal exponent of each window
    covered = cumulative[lows - _EXP_LOW + width] - cumulative[lows - _EXP_LOW]
    best = len(covered) - 1 - int(np.argmax(covered[::-1]))  # last maximum: the highest window
    return 1 - int(lows[best]), float(covered[best]) / total


def _exponent_sweep(histogram: npt.NDArray[np.int64], min_coverage: float) -> list[tuple[int, int, float]]:
    """``(w, bias, coverage)`` from ``e_max`` down, stopping before the first ``w`` below ``min_coverage``."""
    sweep = []
    for w in range(exponent_bits_needed(histogram), _MIN_EXPONENT_BITS - 1, -1):
        bias, coverage = best_bias(histogram, w)
        if coverage < min_coverage:
            break
        sweep.append((w, bias, coverage))
    return sweep


class _ExponentCounter:
    """Forward pre-hook streaming the exponent histogram of a layer's input."""

    def __init__(self) -> None:
        self.histogram = np.zeros(_EXP_HIGH - _EXP_LOW + 1, dtype=np.int64)

    def __call__(self, module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        self.histogram += exponent_histogram(args[0])


# --- evaluating the network after a perturbed layer -----------------------------------------


class _LayerTracer(fx.Tracer):
    """Traces down to compressible layers only: modules without one inside are leaves.

    Resizes and shortcuts with shape-dependent Python then need not be traceable; only the
    dataflow between compressible layers matters for the cache.
    """

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        # isinstance only: reading ``.weight`` while tracing would record get_attr nodes.
        layers = (sub for sub in m.modules() if isinstance(sub, (nn.Conv2d, nn.Linear)))
        return super().is_leaf_module(m, module_qualified_name) or next(layers, None) is None


def _fresh(value: Any) -> Any:
    """A private copy of a cached tensor, so in-place ops in the suffix cannot corrupt the cache."""
    return value.clone() if isinstance(value, torch.Tensor) else value


class PrefixCache:
    """fp32 values that flow into one layer's suffix, for every validation batch (thesis 4.4.1).

    While layer L (or anything after it) is perturbed, everything computed before L's first call
    is unchanged: it is computed once, with the fp32 model, and each trial runs only the suffix
    (``torch.fx.Interpreter`` short-circuits nodes already in its environment). Only *live-in*
    values are kept, those computed before L and read from L on: one tensor for a chain, plus the
    skip tensor inside a residual block. The cache shares ``model``'s submodules, so perturbing a
    layer of ``model`` (weights or hooks) perturbs the suffix runs. Memory: one layer's live-in
    activations for the whole validation set.
    """

    def __init__(
        self, graph_module: fx.GraphModule, first_calls: Mapping[str, int], inputs: Sequence[torch.Tensor]
    ) -> None:
        self._nodes = list(graph_module.graph.nodes)
        self._placeholder = next(node for node in self._nodes if node.op == "placeholder")
        self._index = {node: i for i, node in enumerate(self._nodes)}
        self._first_call = dict(first_calls)
        self._inputs = list(inputs)
        self._interpreter = fx.Interpreter(graph_module)
        self.layers = sorted(first_calls, key=first_calls.__getitem__)  # forward order
        self._position = 0
        self._envs: list[dict[fx.Node, Any]] = []
        self._reset()

    @classmethod
    def trace(cls, model: nn.Module, inputs: Sequence[torch.Tensor]) -> PrefixCache | None:
        """A cache over ``model``'s compressible layers, or ``None`` if ``model`` cannot be cached.

        ``None`` when torch.fx cannot trace ``model`` (plugin models may fail in any way), when a
        layer is not called as a module, or when a layer's parameters are also read directly.
        """
        try:
            graph_module = fx.GraphModule(model, _LayerTracer().trace(model))
        except Exception:  # an untraceable forward means "no cache", whatever it raised
            return None
        nodes = list(graph_module.graph.nodes)
        names = [name for name, _ in compressible_layers(model)]
        first_calls: dict[str, int] = {}
        for i, node in enumerate(nodes):
            if node.op == "call_module" and node.target in names:
                first_calls.setdefault(str(node.target), i)
        reads_layer = any(
            node.op == "get_attr" and str(node.target).startswith(tuple(f"{name}." for name in names)) for node in nodes
        )
        cacheable = (
            sum(node.op == "placeholder" for node in nodes) == 1
            and len(first_calls) == len(names)
            and all(graph_module.get_submodule(name) is model.get_submodule(name) for name in names)
            and not reads_layer
        )
        return cls(graph_module, first_calls, inputs) if cacheable else None

    def _reset(self) -> None:
        self._envs = [{self._placeholder: x} for x in self._inputs]
        self._position = 0

    def move_to(self, layer: str) -> None:
        """Keep the live-in values of ``layer``'s suffix, advancing from the current layer if it is earlier."""
        stop = self._first_call[layer]
        if stop < self._position:
            self._reset()
        live = {node for node in self._nodes[:stop] if any(self._index[user] >= stop for user in node.users)}
        for env in self._envs:
            self._interpreter.env = env
            for node in self._nodes[self._position : stop]:
                if node not in env:  # the placeholder is seeded
                    env[node] = self._interpreter.run_node(node)
            for node in [node for node in env if node not in live]:
                del env[node]
        self._position = stop

    def logits(self) -> list[torch.Tensor]:
        """The network's output per batch, running only the suffix of the current layer."""
        dead = dict.fromkeys(self._nodes[: self._position])  # stand-ins, never read
        outputs = []
        for env in self._envs:
            output: torch.Tensor = self._interpreter.run(initial_env={**dead, **{k: _fresh(v) for k, v in env.items()}})
            outputs.append(output)
        return outputs


class _FullForward:
    """The fallback when :class:`PrefixCache` cannot trace the model: every trial runs it all."""

    def __init__(self, model: nn.Module, inputs: Sequence[torch.Tensor]) -> None:
        self._model = model
        self._inputs = list(inputs)
        self.layers = [name for name, _ in compressible_layers(model)]

    def move_to(self, layer: str) -> None:
        """Nothing to prepare: the whole network runs anyway."""

    def logits(self) -> list[torch.Tensor]:
        """The network's output per batch."""
        return [self._model(x) for x in self._inputs]


class _Evaluator(Protocol):
    layers: list[str]

    def move_to(self, layer: str) -> None: ...

    def logits(self) -> list[torch.Tensor]: ...


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SieveTrial:
    """One tried config: one tensor in ``format``, every other tensor fp32."""

    layer: str
    kind: str  # "weights" or "activations"
    format: FloatFormat
    coverage: float
    normalized_accuracy: float
    passed: bool

    @property
    def bits(self) -> int:
        """Bits per stored value."""
        return self.format.bits

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "layer": self.layer,
            "kind": self.kind,
            "format": self.format.to_dict(),
            "bits": self.bits,
            "coverage": self.coverage,
            "normalized_accuracy": self.normalized_accuracy,
            "passed": self.passed,
        }


@dataclass(frozen=True)
class SieveConfig:
    """Formats by layer name; a layer absent from a mapping keeps that tensor fp32."""

    weight_formats: dict[str, FloatFormat]
    activation_formats: dict[str, FloatFormat]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "weight_formats": {name: fmt.to_dict() for name, fmt in self.weight_formats.items()},
            "activation_formats": {name: fmt.to_dict() for name, fmt in self.activation_formats.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SieveConfig:
        """Inverse of :meth:`to_dict`; :class:`ConfigError` on a malformed format."""
        return cls(
            weight_formats={name: FloatFormat.from_dict(d) for name, d in data["weight_formats"].items()},
            activation_formats={name: FloatFormat.from_dict(d) for name, d in data["activation_formats"].items()},
        )


@dataclass(frozen=True)
class SieveVariant:
    """A combined config, verified as a whole on validation."""

    name: str
    config: SieveConfig
    validation_accuracy: float
    normalized_validation_accuracy: float
    validation_agreement: float  # fraction of validation predictions equal to the fp32 model's
    backoff_steps: int

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "name": self.name,
            "config": self.config.to_dict(),
            "validation_accuracy": self.validation_accuracy,
            "normalized_validation_accuracy": self.normalized_validation_accuracy,
            "validation_agreement": self.validation_agreement,
            "backoff_steps": self.backoff_steps,
        }


@dataclass(frozen=True)
class SieveSearch:
    """Everything the search tried and the variants it derived."""

    trials: tuple[SieveTrial, ...]
    baseline_validation_accuracy: float
    variants: dict[str, SieveVariant]
    kept_fp32: tuple[tuple[str, str, str], ...]  # (module, type, reason) of modules not searched
    prefix_cache: bool  # False: the model could not be traced and every trial ran it whole
    evaluations: int  # passes over the validation set (a suffix-only pass counts as one)
    search_s: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for manifests."""
        return {
            "pass": "sieve",
            "trials": [trial.to_dict() for trial in self.trials],
            "baseline_validation_accuracy": self.baseline_validation_accuracy,
            "variants": {name: variant.to_dict() for name, variant in self.variants.items()},
            "kept_fp32": [{"module": m, "type": t, "reason": r} for m, t, r in self.kept_fp32],
            "prefix_cache": self.prefix_cache,
            "evaluations": self.evaluations,
            "search_s": self.search_s,
        }


# --- the search --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Score:
    accuracy: float
    agreement: float


Assignment = Mapping[TensorKey, FloatFormat]


def _to_config(assignment: Assignment) -> SieveConfig:
    return SieveConfig(
        weight_formats={layer: fmt for (layer, kind), fmt in assignment.items() if kind == "weights"},
        activation_formats={layer: fmt for (layer, kind), fmt in assignment.items() if kind == "activations"},
    )


@contextmanager
def _perturbed(model: nn.Module, layer: str, kind: str, fmt: FloatFormat) -> Iterator[None]:
    """``model`` with one tensor in ``fmt`` for the duration of the block."""
    if kind == "activations":
        handles = apply_activation_formats(model, {layer: fmt})
        try:
            yield
        finally:
            handles[0].remove()
        return
    weight = dict(compressible_layers(model))[layer].weight
    original = weight.detach().clone()
    apply_weight_formats(model, {layer: fmt})
    try:
        yield
    finally:
        weight.detach().copy_(original)


class _Search:
    """Shared state of one search: the fp32 working copy, preprocessed inputs, memo and counter.

    One memo, keyed by the set of ``(tensor, format)`` pairs, serves trials and verifications:
    each trial config is run once, a variant compressing a single tensor reuses that tensor's
    trial, and the all-fp32 variant reuses the baseline.
    """

    def __init__(self, model: ImageClassifier, inputs: list[torch.Tensor], labels: npt.NDArray[np.int64]) -> None:
        self.model = model
        self.inputs = inputs
        self.labels = labels
        self.evaluations = 0
        self.baseline_predictions = np.empty(0, dtype=np.int64)
        self.baseline_accuracy = 0.0
        self._memo: dict[frozenset[tuple[TensorKey, FloatFormat]], _Score] = {}

    def set_baseline(self, logits: Sequence[torch.Tensor]) -> None:
        """Record the fp32 model's predictions and score; it is also the all-fp32 variant."""
        self.baseline_predictions = torch.cat([batch.argmax(dim=1) for batch in logits]).cpu().numpy()
        score = self.score(logits)
        self.baseline_accuracy = score.accuracy
        self._memo[frozenset()] = score

    def score(self, logits: Sequence[torch.Tensor]) -> _Score:
        """Accuracy and agreement with the fp32 predictions; counts one evaluation."""
        self.evaluations += 1
        predictions = torch.cat([batch.argmax(dim=1) for batch in logits]).cpu().numpy()
        return _Score(
            accuracy=float(np.mean(predictions == self.labels)),
            agreement=float(np.mean(predictions == self.baseline_predictions)),
        )

    def normalized(self, score: _Score) -> float:
        """Accuracy relative to fp32."""
        return score.accuracy / self.baseline_accuracy

    def trial(self, evaluator: _Evaluator, key: TensorKey, fmt: FloatFormat) -> _Score:
        """One tensor in ``fmt``, the rest fp32, via ``evaluator`` (positioned at the layer); memoised."""
        memo_key = frozenset({(key, fmt)})
        if memo_key not in self._memo:
            layer, kind = key
            with _perturbed(self.model, layer, kind, fmt):
                self._memo[memo_key] = self.score(evaluator.logits())
        return self._memo[memo_key]

    def verify(self, assignment: Assignment) -> _Score:
        """A whole combined config, run exactly as :func:`compress_sieve` would run it; memoised."""
        memo_key = frozenset(assignment.items())
        if memo_key not in self._memo:
            compressed = compress_sieve(self.model, _to_config(assignment))
            self._memo[memo_key] = self.score([compressed.backbone(x) for x in self.inputs])
        return self._memo[memo_key]


def _ladder(passing: Sequence[SieveTrial], threshold: float | None) -> list[SieveTrial | None]:
    """The configs a variant may give one tensor, first choice first, ending in fp32 (``None``).

    With qualifying configs (alone >= ``threshold``): the fewest-bit one, then ever more accurate
    ones. Without (always for ``exact``): the most accurate passing config. Without passing ones: fp32.
    """
    if not passing:
        return [None]
    qualifying = [t for t in passing if threshold is not None and t.normalized_accuracy >= threshold]
    if not qualifying:
        return [min(passing, key=lambda t: (-t.normalized_accuracy, t.bits)), None]
    ladder = [min(qualifying, key=lambda t: (t.bits, -t.normalized_accuracy))]
    while better := [t for t in qualifying if t.normalized_accuracy > ladder[-1].normalized_accuracy]:
        ladder.append(min(better, key=lambda t: (t.normalized_accuracy, t.bits)))
    return [*ladder, None]


def _bits(trial: SieveTrial | None) -> int:
    return 32 if trial is None else trial.bits


def _variant(
    search: _Search, name: str, threshold: float | None, ladders: Mapping[TensorKey, list[SieveTrial | None]]
) -> SieveVariant:
    """Each tensor's first choice, backed off until the whole model meets ``threshold``.

    Back-off is steepest ascent: each step tries moving every still-compressed tensor one rung up
    its ladder, verifies each whole model, and keeps the move with the best validation accuracy
    (ties: fewest bits added, then model order). Losses add up across layers (thesis 4.4.1), so
    the tensor that hurts most alone is often not the one whose release helps the whole most.
    """
    rungs = dict.fromkeys(ladders, 0)

    def assignment(at: Mapping[TensorKey, int]) -> dict[TensorKey, FloatFormat]:
        chosen = {key: ladders[key][rung] for key, rung in at.items()}
        return {key: trial.format for key, trial in chosen.items() if trial is not None}

    score, steps = search.verify(assignment(rungs)), 0
    # Terminates: each step moves one tensor up its finite ladder, and all-fp32 scores exactly 1.0.
    while threshold is not None and search.normalized(score) < threshold:
        moves = []
        for order, (key, rung) in enumerate(rungs.items()):
            if ladders[key][rung] is None:
                continue
            moved = {**rungs, key: rung + 1}
            added_bits = _bits(ladders[key][rung + 1]) - _bits(ladders[key][rung])
            moves.append((-search.verify(assignment(moved)).accuracy, added_bits, order, moved))
        _, _, _, rungs = min(moves, key=lambda move: move[:3])
        score, steps = search.verify(assignment(rungs)), steps + 1
    return SieveVariant(
        name=name,
        config=_to_config(assignment(rungs)),
        validation_accuracy=score.accuracy,
        normalized_validation_accuracy=search.normalized(score),
        validation_agreement=score.agreement,
        backoff_steps=steps,
    )


def _check_inputs(classifier: ImageClassifier, images: np.ndarray, labels: np.ndarray) -> None:
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[1:] != classifier.spec.image_shape:
        raise ConfigError(
            f"validation images must be uint8 (N, {', '.join(map(str, classifier.spec.image_shape))}); "
            f"got {images.dtype} {images.shape}"
        )
    if len(images) == 0:
        raise ConfigError("the validation set is empty; SIEVE needs validation images to measure accuracy")
    if labels.ndim != 1 or len(labels) != len(images) or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"need one integer label per validation image ({len(images)}); got {labels.dtype} {labels.shape}"
        )
    if not compressible_layers(classifier.backbone):
        raise ConfigError(f"{classifier.spec.label} has no Conv2d or Linear layer for SIEVE to compress")


def _check_options(
    min_normalized_accuracy: float, min_coverage: float, max_mantissa_bits: int, batch_size: int
) -> None:
    if not 0 < min_normalized_accuracy <= 1:
        raise ConfigError(f"min_normalized_accuracy must lie in (0, 1]; got {min_normalized_accuracy}")
    if not 0 <= min_coverage <= 1:
        raise ConfigError(f"min_coverage must lie in [0, 1]; got {min_coverage}")
    if not 0 <= max_mantissa_bits <= 23:
        raise ConfigError(f"max_mantissa_bits must lie in 0..23; got {max_mantissa_bits}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1; got {batch_size}")


def _baseline(search: _Search) -> tuple[list[torch.Tensor], dict[TensorKey, npt.NDArray[np.int64]]]:
    """Score the fp32 model and count every tensor's exponents; returns its logits and the histograms."""
    backbone = search.model.backbone
    counters = {name: _ExponentCounter() for name, _ in compressible_layers(backbone)}
    handles = [backbone.get_submodule(name).register_forward_pre_hook(c) for name, c in counters.items()]
    try:
        logits = [backbone(x) for x in search.inputs]
    finally:
        for handle in handles:
            handle.remove()
    search.set_baseline(logits)
    if search.baseline_accuracy == 0:
        raise ConfigError("the fp32 model gets no validation image right; normalised accuracy is undefined")
    histograms = {}
    for name, layer in compressible_layers(backbone):
        histograms[_BACKBONE + name, "weights"] = exponent_histogram(layer.weight)
        histograms[_BACKBONE + name, "activations"] = counters[name].histogram
    return logits, histograms


def _evaluator(search: _Search, use_cache: bool, reference: Sequence[torch.Tensor]) -> tuple[_Evaluator, bool]:
    """A :class:`PrefixCache` if the backbone traces and reproduces the fp32 ``reference``, else full passes."""
    backbone = search.model.backbone
    cache = PrefixCache.trace(backbone, search.inputs) if use_cache else None
    if cache is not None:
        cache.move_to(cache.layers[0])
        search.evaluations += 1
        if all(torch.allclose(a, b, rtol=1e-5, atol=1e-5) for a, b in zip(cache.logits(), reference, strict=True)):
            return cache, True
    return _FullForward(backbone, search.inputs), False


def _variants(search: _Search, keys: Sequence[TensorKey], trials: Sequence[SieveTrial]) -> dict[str, SieveVariant]:
    """The three variants of :data:`VARIANT_THRESHOLDS`, each verified as a whole."""
    passing = {key: [t for t in trials if (t.layer, t.kind) == key and t.passed] for key in keys}
    return {
        name: _variant(search, name, threshold, {key: _ladder(p, threshold) for key, p in passing.items()})
        for name, threshold in VARIANT_THRESHOLDS.items()
    }


def _kept_fp32(model: nn.Module) -> tuple[tuple[str, str, str], ...]:
    """``(module, type, reason)`` for every module whose float tensors the search leaves alone."""
    return tuple(
        (
            name,
            type_name,
            f"not a Conv2d/Linear layer: its {', '.join(float_tensor_names(model.get_submodule(name)))} stay fp32",
        )
        for name, type_name in uncompressed_parameters(model)
    )


@torch.no_grad()
def sieve_search(
    classifier: ImageClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    min_normalized_accuracy: float = 0.998,
    min_coverage: float = 0.5,
    max_mantissa_bits: int = 6,
    batch_size: int = 512,
    progress: bool = False,
    prefix_cache: bool = True,
) -> SieveSearch:
    """Search per-layer float formats for ``classifier`` on validation data (thesis 4.4.1).

    Args:
        classifier: The trained fp32 model; it is not modified (the search works on a copy).
        images: Validation images, uint8 ``(N, C, H, W)`` as the classifier reads them.
        labels: Their integer labels ``(N,)``.
        min_normalized_accuracy: A trial passes at this accuracy relative to fp32 or above.
        min_coverage: Exponent widths covering fewer nonzero values than this end the sweep.
        max_mantissa_bits: Where each mantissa sweep starts.
        batch_size: Validation images per forward pass.
        progress: Show a tqdm bar over the trials.
        prefix_cache: Run only the suffix after the perturbed layer (see :class:`PrefixCache`);
            ``False`` forces full passes, e.g. to check the cache.

    Raises:
        ConfigError: Empty or malformed validation data, an option out of range, no compressible
            layer, or an fp32 model that classifies no validation image correctly.
    """
    start = time.perf_counter()
    _check_options(min_normalized_accuracy, min_coverage, max_mantissa_bits, batch_size)
    _check_inputs(classifier, images, labels)
    model = copy.deepcopy(classifier).eval()
    device = next(model.parameters()).device
    inputs = [
        model.preprocess(torch.from_numpy(images[i : i + batch_size]).to(device))
        for i in range(0, len(images), batch_size)
    ]
    search = _Search(model, inputs, labels.astype(np.int64))
    reference, histograms = _baseline(search)
    evaluator, cached = _evaluator(search, prefix_cache, reference)
    keys = [(_BACKBONE + layer, kind) for layer in evaluator.layers for kind in KINDS]

    trials: list[SieveTrial] = []
    with tqdm(desc="sieve", unit="trial", disable=not progress) as bar:
        for layer, kind in keys:
            evaluator.move_to(layer.removeprefix(_BACKBONE))  # no-op for the activations after the weights
            for w, bias, coverage in _exponent_sweep(histograms[layer, kind], min_coverage):
                for t in range(max_mantissa_bits, -1, -1):
                    fmt = FloatFormat(w, t, bias, overflow="saturate")
                    normalized = search.normalized(search.trial(evaluator, (layer, kind), fmt))
                    trials.append(
                        SieveTrial(layer, kind, fmt, coverage, normalized, normalized >= min_normalized_accuracy)
                    )
                    bar.update()
                    if not trials[-1].passed:
                        break

    return SieveSearch(
        trials=tuple(trials),
        baseline_validation_accuracy=search.baseline_accuracy,
        variants=_variants(search, keys, trials),
        kept_fp32=_kept_fp32(classifier),
        prefix_cache=cached,
        evaluations=search.evaluations,
        search_s=time.perf_counter() - start,
    )


def compress_sieve(classifier: ImageClassifier, config: SieveConfig) -> ImageClassifier:
    """A copy of ``classifier`` storing weights and reading inputs in ``config``'s formats."""
    return with_formats(classifier, config.weight_formats, config.activation_formats)
