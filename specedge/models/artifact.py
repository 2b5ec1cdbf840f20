"""Model artifacts: a directory that alone rebuilds a trained classifier.

Layout::

    my-model/
        model.safetensors   full ImageClassifier state dict (preprocess buffers + backbone)
        manifest.json       {"format": "specedge-model", "format_version": 1, "spec": {...},
                             "dataset": {...}, "metrics": {...}, "training": {...} | null,
                             "params": int, "macs": int, "weights_file": "model.safetensors",
                             "weights_sha256": hex, "specedge_version": str, "created_utc": ISO-8601}

The manifest stores the :class:`ClassifierSpec` (architecture, options, preprocessing), so a
SIEVE device or cloud server rebuilds the exact network from the artifact alone (nanoGPT's
"the checkpoint stores the config"). Weights are safetensors and the manifest is JSON: loading
never unpickles, so an artifact from elsewhere cannot run code. The SHA-256 in the manifest
catches truncated copies and edited weights before they are served.

Every problem a user can cause raises :class:`~specedge.errors.ArtifactError` with one line
naming the path and the fix.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save_file

import specedge
from specedge.errors import ArtifactError, ConfigError
from specedge.models import registry
from specedge.models.classifier import ClassifierSpec, ImageClassifier
from specedge.models.profiler import profile_classifier

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MANIFEST_NAME",
    "WEIGHTS_NAME",
    "LoadedModel",
    "load_artifact",
    "save_artifact",
]

FORMAT = "specedge-model"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
WEIGHTS_NAME = "model.safetensors"
_MAX_LISTED_KEYS = 5


@dataclass(frozen=True)
class LoadedModel:
    """A classifier rebuilt from an artifact (in eval mode), with its manifest."""

    classifier: ImageClassifier
    manifest: dict[str, Any]
    path: Path  # the artifact directory

    @property
    def spec(self) -> ClassifierSpec:
        """How the classifier was built (architecture, options, preprocessing)."""
        return self.classifier.spec

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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_text_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def save_artifact(
    directory: Path | str,
    classifier: ImageClassifier,
    *,
    dataset: dict[str, Any],
    metrics: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``classifier`` as an artifact directory (created if needed) and return it.

    Weights go to a temporary name and are renamed into place, then the manifest is renamed
    into place last, so a crash leaves either the previous artifact (whose hash no longer
    matches, if only the weights were replaced) or no manifest at all, never a manifest that
    silently describes other weights.
    """
    directory = Path(directory)
    profile = profile_classifier(classifier)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "spec": classifier.spec.to_dict(),
        "dataset": dataset,
        "metrics": metrics,
        "training": training,
        "params": profile.total_params,
        "macs": profile.total_macs,
        "weights_file": WEIGHTS_NAME,
        "weights_sha256": "",
        "specedge_version": specedge.__version__,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    try:  # fail before touching the disk if the caller's dicts are not JSON
        json.dumps(manifest, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"dataset/metrics/training must be JSON-serialisable (finite numbers): {exc}") from exc

    # clone: safetensors refuses tensors that share storage (e.g. tied weights)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in classifier.state_dict().items()}
    weights = directory / WEIGHTS_NAME
    tmp = weights.with_name(f".{WEIGHTS_NAME}.tmp-{os.getpid()}")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        save_file(state, str(tmp), metadata={"format": FORMAT})
        manifest["weights_sha256"] = _sha256(tmp)
        tmp.replace(weights)
        _write_text_atomically(directory / MANIFEST_NAME, json.dumps(manifest, indent=2, allow_nan=False) + "\n")
    except OSError as exc:
        if tmp.is_file():
            tmp.unlink()
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
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{manifest_path} has unsupported format_version {manifest.get('format_version')!r}; "
            f"this specedge {specedge.__version__} reads version {FORMAT_VERSION} (upgrade specedge)"
        )
    for key in ("weights_file", "weights_sha256"):
        if not isinstance(manifest.get(key), str):
            raise ArtifactError(f"manifest {manifest_path} lacks the string field {key!r}; re-save the artifact")
    return manifest


def _read_weights(directory: Path, manifest: dict[str, Any]) -> dict[str, torch.Tensor]:
    name = manifest["weights_file"]
    if Path(name).name != name or name in ("", ".", ".."):  # never follow a manifest out of its directory
        raise ArtifactError(f"{directory / MANIFEST_NAME}: weights_file {name!r} must be a file name in {directory}")
    weights = directory / name
    if not weights.is_file():
        raise ArtifactError(f"weights file {weights} is missing; copy the whole artifact directory")
    data = weights.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest["weights_sha256"]:
        raise ArtifactError(
            f"weights file {weights} is corrupt or modified: sha256 {actual[:16]}... does not match "
            f"the manifest's {manifest['weights_sha256'][:16]}...; re-copy or re-save the artifact"
        )
    try:
        tensors: dict[str, torch.Tensor] = load_safetensors(data)
        return tensors
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise ArtifactError(f"weights file {weights} is not a readable safetensors file: {exc}") from exc


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


def load_artifact(path: Path | str) -> LoadedModel:
    """Rebuild the classifier stored at ``path`` (artifact directory or its manifest.json)."""
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
    state = _read_weights(directory, manifest)
    try:
        classifier = ImageClassifier(spec)
    except ConfigError as exc:
        raise ArtifactError(f"cannot rebuild the model of {manifest_path}: {exc}") from exc
    _check_state_dict(classifier, state, directory / manifest["weights_file"])
    classifier.load_state_dict(state)
    classifier.eval()
    return LoadedModel(classifier=classifier, manifest=manifest, path=directory)
