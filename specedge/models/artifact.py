"""Model artifacts: a directory that alone rebuilds a trained classifier.

Layout (format version 2)::

    my-model/
        manifest.json       {"format": "specedge-model", "format_version": 2,
                             "model_name": str, "model_version": str, "spec": {...},
                             "weights": {"encoding": "fp32" | "sieve" | "int8", "file": name,
                                         "sha256": hex, "nbytes": int, ...},
                             "activation_formats": {layer: format} | null,
                             "dataset": {...}, "metrics": {...}, "training": {...} | null,
                             "params": int, "macs": int, "specedge_version": str,
                             "created_utc": ISO-8601, ...sections a compression pass adds}
        model.safetensors | weights.sieve | model.int8.onnx

The manifest stores the :class:`ClassifierSpec` (architecture, options, preprocessing), so a
SIEVE device or cloud server rebuilds the exact network from the artifact alone (nanoGPT's
"the checkpoint stores the config"). How the weights are stored is the manifest's ``encoding``,
read through one registry (:mod:`specedge.models.encodings`): fp32 safetensors, SIEVE's
bit-packed custom floats, or an int8 ONNX graph. A SIEVE model also stores the format each
layer's input activations are rounded to (thesis 4.4.2); loading re-applies them, so the loaded
model computes exactly what was evaluated. Version-1 artifacts (fp32 only, ``weights_file`` and
``weights_sha256`` at the top level) still load. Loading never unpickles, so an artifact from
elsewhere cannot run code; the SHA-256 in the manifest catches truncated copies and edited
weights before they are served.

Every problem a user can cause raises :class:`~specedge.errors.ArtifactError` with one line
naming the path and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import specedge
from specedge.errors import ArtifactError, ConfigError
from specedge.models import registry
from specedge.models.classifier import ClassifierSpec, ImageClassifier
from specedge.models.encodings import Fp32Encoding, WeightsEncoding, read_weights
from specedge.models.layers import apply_activation_formats
from specedge.models.profiler import profile_classifier
from specedge.numerics.floats import FloatFormat

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "LoadedModel",
    "load_artifact",
    "save_artifact",
]

FORMAT = "specedge-model"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
MANIFEST_NAME = "manifest.json"
_MAX_LISTED_KEYS = 5
#: File names the encodings write; re-saving in another encoding removes the others.
_WEIGHT_FILES = frozenset({"model.safetensors", "weights.sieve", "model.int8.onnx"})
#: Manifest keys :func:`save_artifact` owns; ``sections`` may not overwrite them.
_RESERVED = frozenset(
    {"format", "format_version", "model_name", "model_version", "spec", "weights", "activation_formats", "dataset"}
    | {"metrics", "training", "params", "macs", "specedge_version", "created_utc"}
)


@dataclass(frozen=True)
class LoadedModel:
    """A model rebuilt from an artifact, with its manifest.

    fp32 and SIEVE artifacts rebuild a torch :class:`ImageClassifier` (in eval mode, activation
    formats applied); an int8 artifact is an ONNX Runtime graph (``onnx_model``) and has no
    torch form, so :attr:`classifier` refuses it with a clear error.
    """

    spec: ClassifierSpec
    manifest: dict[str, Any]
    path: Path  # the artifact directory
    torch_classifier: ImageClassifier | None = None
    onnx_model: bytes | None = None

    @property
    def classifier(self) -> ImageClassifier:
        """The torch model; :class:`ArtifactError` for an int8 artifact, which runs on ONNX Runtime only."""
        if self.torch_classifier is None:
            raise ArtifactError(
                f"{self.path} holds a {self.encoding} model, which runs on ONNX Runtime only "
                "(load it with specedge.backends.runner_for)"
            )
        return self.torch_classifier

    @property
    def encoding(self) -> str:
        """How the weights are stored: ``fp32``, ``sieve`` or ``int8``."""
        return str(self.manifest["weights"]["encoding"])

    @property
    def serving_name(self) -> str:
        """The name a server gives this model: the manifest's ``model_name``, else the artifact folder's name."""
        return str(self.manifest.get("model_name") or self.path.name)

    @property
    def dataset(self) -> dict[str, Any]:
        """What the caller of :func:`save_artifact` recorded about the data."""
        return dict(self.manifest.get("dataset") or {})

    @property
    def metrics(self) -> dict[str, Any]:
        """Recorded evaluation results, e.g. ``{"test_accuracy": 0.99}``."""
        return dict(self.manifest.get("metrics") or {})

    @property
    def training(self) -> dict[str, Any] | None:
        """Recorded training configuration, if any."""
        return self.manifest.get("training")

    @property
    def macs(self) -> int:
        """Multiply-accumulates of one input, as recorded at save time."""
        return int(self.manifest["macs"])


# --- saving ----------------------------------------------------------------------------


def _write_bytes_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        if tmp.is_file():
            tmp.unlink()


def _manifest_json(manifest: dict[str, Any]) -> str:
    try:  # fail before touching the disk if the caller's dicts are not JSON
        return json.dumps(manifest, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"dataset/metrics/training/sections must be JSON-serialisable (finite numbers): {exc}"
        ) from exc


def save_artifact(
    directory: Path | str,
    classifier: ImageClassifier,
    *,
    dataset: dict[str, Any],
    metrics: dict[str, Any],
    training: dict[str, Any] | None = None,
    model_name: str | None = None,
    model_version: str = "1",
    encoding: WeightsEncoding | None = None,
    activation_formats: Mapping[str, FloatFormat] | None = None,
    sections: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``classifier`` as an artifact directory (created if needed) and return it.

    Args:
        directory: the artifact folder (created if needed; an artifact already there is replaced).
        classifier: the model; for ``encoding=SieveEncoding(...)`` its fp32 weights, which the
            encoding rounds and packs; for an int8 encoding, the fp32 source of the graph.
        dataset: what the model was trained on (``DatasetSplits.describe()``).
        metrics: evaluation results, e.g. ``{"test_accuracy": 0.99}``.
        training: the training configuration and history, if any.
        model_name: the name a server gives the model (default: the directory's name).
        model_version: the version a server reports for it.
        encoding: how to store the weights (default fp32 safetensors).
        activation_formats: layer name -> the format its input is rounded to (SIEVE).
        sections: extra manifest sections, e.g. ``compression`` and ``tradeoff`` records.

    Weights go to a temporary name and are renamed into place, then the manifest is renamed
    into place last, so a crash leaves either the previous artifact (whose hash no longer
    matches, if only the weights were replaced) or no manifest at all, never a manifest that
    silently describes other weights.
    """
    directory = Path(directory)
    clashing = sorted(_RESERVED & set(sections or {}))
    if clashing:
        raise ConfigError(f"manifest sections {clashing} are written by save_artifact itself")
    # clone: safetensors refuses tensors that share storage (e.g. tied weights)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in classifier.state_dict().items()}
    files, weights_block = (encoding or Fp32Encoding()).encode(state)
    ((file_name, payload),) = files.items()
    weights_block.update(sha256=hashlib.sha256(payload).hexdigest(), nbytes=len(payload))
    profile = profile_classifier(classifier)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model_name": model_name or directory.resolve().name,
        "model_version": model_version,
        "spec": classifier.spec.to_dict(),
        "weights": weights_block,
        "activation_formats": (
            {layer: fmt.to_dict() for layer, fmt in activation_formats.items()} if activation_formats else None
        ),
        "dataset": dataset,
        "metrics": metrics,
        "training": training,
        "params": profile.total_params,
        "macs": profile.total_macs,
        "specedge_version": specedge.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **(sections or {}),
    }
    text = _manifest_json(manifest)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _write_bytes_atomically(directory / file_name, payload)
        _write_bytes_atomically(directory / MANIFEST_NAME, text.encode("utf-8"))
        for stale in _WEIGHT_FILES - {file_name}:  # an artifact re-saved in another encoding
            (directory / stale).unlink(missing_ok=True)
    except OSError as exc:
        raise ArtifactError(f"cannot write model artifact to {directory}: {exc.strerror or exc}") from exc
    return directory


# --- loading ---------------------------------------------------------------------------


def _locate(path: Path) -> tuple[Path, Path]:
    """(artifact directory, manifest path) for a directory or a manifest.json path."""
    if not path.exists():
        raise ArtifactError(f"model artifact {path} does not exist; pass a directory written by save_artifact")
    if path.is_dir():
        manifest = path / MANIFEST_NAME
        if not manifest.is_file():
            raise ArtifactError(f"{path} is not a model artifact: it has no {MANIFEST_NAME}")
        return path, manifest
    if path.name != MANIFEST_NAME:
        raise ArtifactError(f"{path} is not a model artifact; pass its directory or its {MANIFEST_NAME}")
    return path.parent, path


def _read_manifest(manifest_path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"manifest {manifest_path} is not valid JSON: {exc}") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise ArtifactError(f"cannot read manifest {manifest_path}: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ArtifactError(f"manifest {manifest_path} must hold a JSON object; got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise ArtifactError(
            f"{manifest_path} is not a specedge model manifest: format {manifest.get('format')!r}, expected {FORMAT!r}"
        )
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS or isinstance(version, bool):
        raise ArtifactError(
            f"{manifest_path} has unsupported format_version {version!r}; "
            f"this specedge {specedge.__version__} reads versions {list(READABLE_VERSIONS)} (upgrade specedge)"
        )
    if version == 1:  # fp32 only, weights described at the top level
        for key in ("weights_file", "weights_sha256"):
            if not isinstance(manifest.get(key), str):
                raise ArtifactError(f"manifest {manifest_path} lacks the string field {key!r}; re-save the artifact")
        manifest["weights"] = {
            "encoding": "fp32",
            "file": manifest["weights_file"],
            "sha256": manifest["weights_sha256"],
        }
    elif not isinstance(manifest.get("weights"), dict):
        raise ArtifactError(f"manifest {manifest_path} lacks the 'weights' object; re-save the artifact")
    return manifest


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:_MAX_LISTED_KEYS])
    more = len(keys) - _MAX_LISTED_KEYS
    return f"[{shown}{f', ... {more} more' if more > 0 else ''}]"


def _check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], source: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ArtifactError(
            f"weights in {source} do not fit the manifest's model: missing keys {_listed(missing)}, "
            f"unexpected keys {_listed(unexpected)}"
        )
    for key, tensor in expected.items():
        if state[key].shape != tensor.shape:
            raise ArtifactError(
                f"weights in {source} do not fit the manifest's model: {key} has shape "
                f"{tuple(state[key].shape)} in the file but {tuple(tensor.shape)} in the model "
                "(does the manifest's spec, e.g. num_classes, match the weights?)"
            )


def _activation_formats(manifest: dict[str, Any], where: Path) -> dict[str, FloatFormat]:
    stored = manifest.get("activation_formats") or {}
    if not isinstance(stored, dict):
        raise ArtifactError(f"{where}: activation_formats must be an object of layer -> format")
    try:
        return {str(layer): FloatFormat.from_dict(fmt) for layer, fmt in stored.items()}
    except ConfigError as exc:
        raise ArtifactError(f"{where}: invalid activation format: {exc}") from exc


def _rebuild(
    spec: ClassifierSpec, state: dict[str, torch.Tensor], manifest: dict[str, Any], where: Path
) -> ImageClassifier:
    try:
        classifier = ImageClassifier(spec)
    except ConfigError as exc:
        raise ArtifactError(f"cannot rebuild the model of {where}: {exc}") from exc
    _check_state_dict(classifier, state, where.parent / str(manifest["weights"].get("file")))
    classifier.load_state_dict(state)
    classifier.eval()
    try:
        apply_activation_formats(classifier, _activation_formats(manifest, where))
    except ConfigError as exc:
        raise ArtifactError(f"{where}: activation formats do not fit the model: {exc}") from exc
    return classifier


def load_artifact(path: Path | str) -> LoadedModel:
    """Rebuild the model stored at ``path`` (artifact directory or its manifest.json)."""
    directory, manifest_path = _locate(Path(path))
    manifest = _read_manifest(manifest_path)
    try:
        spec = ClassifierSpec.from_dict(manifest["spec"])
    except (ArtifactError, KeyError) as exc:
        raise ArtifactError(f"{manifest_path}: malformed model spec ({exc}); re-save the artifact") from exc
    if spec.architecture not in registry.list_models():
        raise ArtifactError(
            f"{manifest_path} needs architecture {spec.architecture!r}, which is not registered; "
            "import the module that registers it with --plugin MODULE"
        )
    decoded = read_weights(directory, manifest["weights"], where=str(manifest_path))
    classifier = _rebuild(spec, decoded.state, manifest, manifest_path) if decoded.state is not None else None
    return LoadedModel(
        spec=spec, manifest=manifest, path=directory, torch_classifier=classifier, onnx_model=decoded.onnx_model
    )
