"""The edge bundle: one folder with everything a device needs, written by the offline steps (issue 9, item 11).

Layout (format version 1)::

    bundle/
        bundle.json             {"format": "specedge-edge-bundle", "version": 1, "device": "tegra-k1",
                                 "classes": K, "input_shape": [C, H, W],
                                 "cloud_model": {"name": str, "version": str}, "link": "lte",
                                 "payload": {"request_bytes": int, "response_bytes": int, "server_s": float},
                                 "local_models": [{"id": str, "role": "speculative" | "pair" | "master",
                                                   "artifacts": [relative folder, ...],
                                                   "manifest_sha256": [hex, ...],
                                                   "detector": "detectors/<id>.json" | null,
                                                   "latency_s": float, "energy_mj": float,
                                                   "escalation_probability": float | null}, ...]}
        models/<id>/            a model artifact (a minion pair: models/<id>/first and models/<id>/second)
        detectors/<id>.json     the detector bank from ``specedge calibrate`` (first detector = the default)

The selector (thesis 4.3) needs per local model its compute time and energy on the device and its
escalation probability ``P_r``, and per escalation the bytes on the wire and the server's time;
the bundle records them once, offline, so a device never profiles or calibrates. Compute costs
come from the device model (:func:`specedge.simulator.workloads.local_cost`) on the named profile,
message sizes from the real protobuf messages (:func:`specedge.simulator.wire.infer_message_sizes`).

:func:`read_bundle` checks everything a copy can get wrong and says so in one line naming the file:
``bundle.json`` keeps the SHA-256 of every copied ``manifest.json`` (whose own hash covers the
weights), and every detector must fit its model (class count, pair policy for a pair only). Only
JSON is read; models load lazily, on :meth:`Bundle.load_runners`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

import specedge
from specedge.backends import ModelRunner, OnnxRunner, PairRunner, TorchRunner, measure_latency_us, runner_for
from specedge.detector import MisspeculationDetector
from specedge.detector.bank import read_detectors
from specedge.edge.policy import Payload
from specedge.errors import ArtifactError, ConfigError, SpecEdgeError
from specedge.models import ImageClassifier, LoadedModel, load_artifact
from specedge.models.artifact import MANIFEST_NAME
from specedge.models.classifier import ClassifierSpec
from specedge.simulator.device import DEVICE_PROFILES
from specedge.simulator.links import LINK_PROFILES
from specedge.simulator.wire import infer_message_sizes
from specedge.simulator.workloads import StoredWidths, local_cost

__all__ = [
    "BUNDLE_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "MASTER_ID",
    "ROLES",
    "Bundle",
    "BundledModel",
    "CloudModel",
    "SpeculativeEntry",
    "measure_server_s",
    "read_bundle",
    "write_bundle",
]

FORMAT = "specedge-edge-bundle"
FORMAT_VERSION = 1
BUNDLE_NAME = "bundle.json"
ROLES = ("speculative", "pair", "master")
MASTER_ID = "master"
_PAIR_MEMBERS = ("first", "second")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SAMPLE_IMAGES = 8  # random inputs for timing the master and, without validation images, the backend choice


# --- the record --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpeculativeEntry:
    """What :func:`write_bundle` copies for one speculative model: one artifact folder, or two for a minion pair."""

    id: str
    artifacts: tuple[Path, ...]
    detector: Path  # a detectors.json from ``specedge calibrate`` ("pair" policy for a pair)


@dataclass(frozen=True)
class CloudModel:
    """The name (and version) the cloud serves the master under."""

    name: str
    version: str


@dataclass(frozen=True)
class BundledModel:
    """One model the device can run, with its per-input cost on the bundle's device profile."""

    id: str
    role: str  # "speculative" | "pair" | "master"
    artifacts: tuple[str, ...]  # relative to the bundle folder; two for a pair
    manifest_sha256: tuple[str, ...]
    detector: str | None  # relative path of a detectors.json; None for the master
    latency_s: float  # both minions' runs for a pair
    energy_mj: float
    escalation_probability: float | None  # the default detector's P_r on calibration data; None for the master


@dataclass(frozen=True)
class Bundle:
    """A validated edge bundle (see the module docstring); models and detectors load on demand."""

    path: Path  # the bundle folder
    device: str
    classes: int
    input_shape: tuple[int, int, int]
    cloud_model: CloudModel
    link: str
    payload: Payload
    local_models: tuple[BundledModel, ...]

    @property
    def master(self) -> BundledModel | None:
        """The master, if it can run on the device."""
        return next((m for m in self.local_models if m.role == "master"), None)

    def model(self, model_id: str) -> BundledModel:
        """The local model ``model_id``; :class:`ConfigError` listing the ids otherwise."""
        for entry in self.local_models:
            if entry.id == model_id:
                return entry
        ids = ", ".join(m.id for m in self.local_models)
        raise ConfigError(f"bundle {self.path} has no local model {model_id!r}; expected one of: {ids}")

    def to_dict(self) -> dict[str, Any]:
        """The ``bundle.json`` content."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "device": self.device,
            "classes": self.classes,
            "input_shape": list(self.input_shape),
            "cloud_model": asdict(self.cloud_model),
            "link": self.link,
            "payload": asdict(self.payload),
            "local_models": [
                {**asdict(m), "artifacts": list(m.artifacts), "manifest_sha256": list(m.manifest_sha256)}
                for m in self.local_models
            ],
        }

    def load_runners(
        self, *, threads: int = 1, val_images: np.ndarray | None = None, only: Collection[str] | None = None
    ) -> dict[str, ModelRunner]:
        """Runners by model id, each on its device backend (``runner_for``; a pair gives a :class:`PairRunner`).

        ``val_images`` (uint8 ``(N, C, H, W)``) feed the backend's parity check and timing; without
        them a few seeded random images do. ``only`` loads just those ids (ONNX export takes seconds).
        """
        images = _sample_images(self.input_shape) if val_images is None else val_images
        runners: dict[str, ModelRunner] = {}
        for entry in self.local_models if only is None else [self.model(i) for i in only]:
            members = [runner_for(load_artifact(self.path / a), images, threads=threads)[0] for a in entry.artifacts]
            runners[entry.id] = PairRunner(*members) if entry.role == "pair" else members[0]
        return runners

    def detectors(self) -> dict[str, MisspeculationDetector]:
        """The default (first) detector of each speculative model and pair, by model id."""
        return {m.id: read_detectors(self.path / m.detector)[0] for m in self.local_models if m.detector is not None}

    def relaxed_detectors(self) -> dict[str, MisspeculationDetector]:
        """Per model, the power-saving detector: the lowest target below the default's (thesis 4.3.2).

        Only detectors whose target means the same thing as the default's (same ``quality``) are
        compared. A model whose file holds no such detector is left out (possibly every model).
        """
        relaxed = {}
        for entry in self.local_models:
            if entry.detector is None:
                continue
            default, *others = read_detectors(self.path / entry.detector)
            lower = [d for d in others if d.quality == default.quality and d.target < default.target]
            if lower:
                relaxed[entry.id] = min(lower, key=lambda d: d.target)
        return relaxed


# --- writing -----------------------------------------------------------------------------------


def write_bundle(
    out: Path,
    *,
    speculative: Sequence[SpeculativeEntry],
    master: Path | None,
    cloud_model: Path | str,
    device: str = "tegra-k1",
    link: str = "lte",
    server_s: float | None = None,
) -> Bundle:
    """Copy models and detectors into ``out``, price them on ``device`` and write ``bundle.json``.

    Args:
        out: the bundle folder; an existing bundle there is replaced, any other non-empty folder is refused.
        speculative: the local speculative models and pairs, each with its detectors.
        master: the master artifact to put on the device too (mobile-only runs), or None.
        cloud_model: the master artifact the cloud serves (its name, version and timing), or just its name.
        device: a device profile from :data:`~specedge.simulator.device.DEVICE_PROFILES`.
        link: the default link profile from :data:`~specedge.simulator.links.LINK_PROFILES`.
        server_s: the server's time per request; measured on this host with the master if None.

    The bundle is assembled beside ``out`` and renamed into place, then read back with
    :func:`read_bundle`, so what this returns is exactly what a device will see.
    """
    out = Path(out)
    _check_choice(device, DEVICE_PROFILES, "device profile")
    _check_choice(link, LINK_PROFILES, "link profile")
    if not speculative:
        raise ConfigError("a bundle needs at least one speculative model (or minion pair)")
    ids = [e.id for e in speculative]
    _check_ids(ids, ConfigError, "")
    if MASTER_ID in ids:
        raise ConfigError(f"model id {MASTER_ID!r} is reserved for the master; rename that speculative model")
    for entry in speculative:
        _check_members(len(entry.artifacts), f"speculative model {entry.id!r}", ConfigError)
    sources = {e.id: [load_artifact(p) for p in e.artifacts] for e in speculative}
    master_loaded = load_artifact(master) if master is not None else None
    served = master_loaded if isinstance(cloud_model, str) else _same_or_load(Path(cloud_model), master_loaded)
    named = [(str(m.path), m.spec) for ms in sources.values() for m in ms]
    masters = [master_loaded] + ([served] if served is not master_loaded else [])
    named += [(f"master {m.path}", m.spec) for m in masters if m is not None]
    classes, input_shape = _common_shape(named, ConfigError, "")
    for entry in speculative:
        role = "pair" if len(entry.artifacts) == 2 else "speculative"
        _check_detectors(read_detectors(Path(entry.detector)), role, classes, f"detector {entry.detector}", ConfigError)
    cloud = _cloud_model(cloud_model, served)
    if server_s is None:
        if served is None:
            raise ConfigError("cannot measure the server's time without the master artifact; pass server_s or master")
        server_s = measure_server_s(served)
    sizes = infer_message_sizes(input_shape, classes, model_name=cloud.name, model_version=cloud.version or "1")

    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        models = [_copy_speculative(staging, e, sources[e.id], device) for e in speculative]
        if master_loaded is not None:
            models.append(_copy_model(staging, MASTER_ID, "master", [master_loaded], device=device))
        bundle = Bundle(
            path=staging,
            device=device.lower(),
            classes=classes,
            input_shape=input_shape,
            cloud_model=cloud,
            link=link.lower(),
            payload=Payload(sizes.request_bytes, sizes.response_bytes, float(server_s)),
            local_models=tuple(models),
        )
        record = {**bundle.to_dict(), "specedge_version": specedge.__version__}
        record["created_utc"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        (staging / BUNDLE_NAME).write_text(json.dumps(record, indent=2, allow_nan=False) + "\n")
        read_bundle(staging)  # the same checks a device runs
        _replace(out, staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return read_bundle(out)


def measure_server_s(master: LoadedModel, *, repeats: int = 20) -> float:
    """Median seconds of one batch-1 request on this host, run as the server runs it (torch eager; int8 on ORT)."""
    images = _sample_images(master.spec.image_shape)
    runner: ModelRunner = OnnxRunner(master.onnx_model) if master.onnx_model else TorchRunner(master.classifier)
    return measure_latency_us(runner, images, batch=1, repeats=repeats, warmup=3) / 1e6


def _same_or_load(path: Path, master: LoadedModel | None) -> LoadedModel:
    if master is not None and path.resolve() == master.path.resolve():
        return master
    return load_artifact(path)


def _cloud_model(cloud_model: Path | str, served: LoadedModel | None) -> CloudModel:
    version = str(served.manifest.get("model_version") or "1") if served is not None else ""
    if isinstance(cloud_model, str):
        if not cloud_model.strip():
            raise ConfigError("the cloud model name is empty; pass the name the server serves the master under")
        return CloudModel(cloud_model, version)
    assert served is not None
    return CloudModel(served.serving_name, version)


def _copy_speculative(root: Path, entry: SpeculativeEntry, loaded: list[LoadedModel], device: str) -> BundledModel:
    role = "pair" if len(loaded) == 2 else "speculative"
    detector = f"detectors/{entry.id}.json"
    (root / "detectors").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(entry.detector, root / detector)
    p_r = read_detectors(root / detector)[0].escalation_rate_
    return _copy_model(root, entry.id, role, loaded, device=device, detector=detector, p_r=p_r)


def _copy_model(
    root: Path,
    model_id: str,
    role: str,
    loaded: list[LoadedModel],
    *,
    device: str,
    detector: str | None = None,
    p_r: float | None = None,
) -> BundledModel:
    folders = [f"models/{model_id}"] if len(loaded) == 1 else [f"models/{model_id}/{m}" for m in _PAIR_MEMBERS]
    for folder, model in zip(folders, loaded, strict=True):
        shutil.copytree(model.path, root / folder)
    costs = [_cost(m, device) for m in loaded]
    return BundledModel(
        id=model_id,
        role=role,
        artifacts=tuple(folders),
        manifest_sha256=tuple(_sha256(root / f / MANIFEST_NAME) for f in folders),
        detector=detector,
        latency_s=sum(c[0] for c in costs),
        energy_mj=sum(c[1] for c in costs),
        escalation_probability=p_r,
    )


def _cost(loaded: LoadedModel, device: str) -> tuple[float, float]:
    """(seconds, millijoules) per input on ``device``: the fp32 structure priced at its stored widths."""
    structure = loaded.torch_classifier or ImageClassifier(loaded.spec)  # an int8 graph has no torch form
    record = loaded.manifest.get("tradeoff")
    widths = StoredWidths.from_tradeoff(record) if record is not None else None
    cost = local_cost(structure, device, widths=widths)
    return cost.latency_s, cost.energy_mj


def _replace(out: Path, staging: Path) -> None:
    if out.exists():
        if not out.is_dir() or (any(out.iterdir()) and not (out / BUNDLE_NAME).is_file()):
            raise ArtifactError(f"{out} exists and is not an edge bundle; choose another --out or remove it")
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging.rename(out)


# --- reading -----------------------------------------------------------------------------------


def read_bundle(path: Path) -> Bundle:
    """The bundle at ``path`` (its folder or its bundle.json), checked against its models and detectors."""
    root = Path(path)
    root = root.parent if root.name == BUNDLE_NAME and root.is_file() else root
    file = root / BUNDLE_NAME
    if root.is_file():
        raise ArtifactError(f"{root} is not an edge bundle; pass its folder or its {BUNDLE_NAME}")
    if not root.is_dir():
        raise ArtifactError(f"edge bundle {root} does not exist; write one with 'specedge bundle'")
    record = _read_json(file, "edge bundle")
    if record.get("format") != FORMAT:
        raise ArtifactError(f"{file} is not an edge bundle: format {record.get('format')!r}, expected {FORMAT!r}")
    if record.get("version") != FORMAT_VERSION or isinstance(record.get("version"), bool):
        raise ArtifactError(
            f"{file} has unsupported version {record.get('version')!r}; this specedge {specedge.__version__} "
            f"reads version {FORMAT_VERSION} (rewrite it with 'specedge bundle')"
        )
    shape = _field(record, "input_shape", list, file)
    if len(shape) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape):
        raise ArtifactError(f"{file}: input_shape must be [C, H, W] of positive integers; got {shape}")
    cloud = _field(record, "cloud_model", dict, file)
    payload = _field(record, "payload", dict, file)
    entries = _field(record, "local_models", list, file)
    bundle = Bundle(
        path=root,
        device=_choice(_field(record, "device", str, file), DEVICE_PROFILES, "device profile", file),
        classes=_count(_field(record, "classes", int, file), "classes", file),
        input_shape=(shape[0], shape[1], shape[2]),
        cloud_model=CloudModel(_field(cloud, "name", str, file), _field(cloud, "version", str, file)),
        link=_choice(_field(record, "link", str, file), LINK_PROFILES, "link profile", file),
        payload=Payload(
            request_bytes=_count(_field(payload, "request_bytes", int, file), "payload.request_bytes", file),
            response_bytes=_count(_field(payload, "response_bytes", int, file), "payload.response_bytes", file),
            server_s=_cost_value(_field(payload, "server_s", (int, float), file), "payload.server_s", file),
        ),
        local_models=tuple(_local_model(e, i, file) for i, e in enumerate(entries)),
    )
    _check_ids([m.id for m in bundle.local_models], ArtifactError, f"{file}: ")
    roles = [m.role for m in bundle.local_models]
    if roles.count("master") == len(roles) or roles.count("master") > 1:
        raise ArtifactError(f"{file}: local_models needs at least one speculative model or pair and at most one master")
    for entry in bundle.local_models:
        _check_against_files(bundle, entry, file)
    return bundle


def _local_model(entry: Any, index: int, file: Path) -> BundledModel:
    where = f"{file} local_models[{index}]"
    if not isinstance(entry, dict):
        raise ArtifactError(f"{where} must be an object; got {type(entry).__name__}")
    model_id = _field(entry, "id", str, where)
    where = f"{file} local model {model_id!r}"
    role = _choice(_field(entry, "role", str, where), ROLES, "role", where)
    artifacts = _field(entry, "artifacts", list, where)
    hashes = _field(entry, "manifest_sha256", list, where)
    _check_members(len(artifacts), where, ArtifactError, expected=2 if role == "pair" else 1)
    if len(hashes) != len(artifacts) or not all(isinstance(x, str) for x in artifacts + hashes):
        raise ArtifactError(f"{where}: artifacts and manifest_sha256 must be lists of strings of the same length")
    detector = entry.get("detector")
    p_r = entry.get("escalation_probability")
    if role == "master":
        if detector is not None or p_r is not None:
            raise ArtifactError(
                f"{where}: the master has no detector; detector and escalation_probability must be null"
            )
    else:
        detector = _field(entry, "detector", str, where)
        p_r = _cost_value(_field(entry, "escalation_probability", (int, float), where), "escalation_probability", where)
        if p_r > 1:
            raise ArtifactError(f"{where}: escalation_probability must lie in [0, 1]; got {p_r}")
    return BundledModel(
        id=model_id,
        role=role,
        artifacts=tuple(artifacts),
        manifest_sha256=tuple(hashes),
        detector=detector,
        latency_s=_cost_value(_field(entry, "latency_s", (int, float), where), "latency_s", where),
        energy_mj=_cost_value(_field(entry, "energy_mj", (int, float), where), "energy_mj", where),
        escalation_probability=None if p_r is None else float(p_r),
    )


def _check_against_files(bundle: Bundle, entry: BundledModel, file: Path) -> None:
    """Each manifest is the one recorded, each model reads the bundle's images, each detector fits its model."""
    specs = []
    for folder, expected in zip(entry.artifacts, entry.manifest_sha256, strict=True):
        manifest = _inside(bundle.path, folder, file) / MANIFEST_NAME
        if not manifest.is_file():
            raise ArtifactError(f"bundle {bundle.path} does not match its models: {folder}/{MANIFEST_NAME} is missing")
        if _sha256(manifest) != expected:
            raise ArtifactError(f"bundle {bundle.path} does not match its models: {folder}/{MANIFEST_NAME} changed")
        specs.append(_spec(manifest))
    where = f"bundle {bundle.path}: local model {entry.id!r}"
    classes, shape = _common_shape(list(zip(entry.artifacts, specs, strict=True)), ArtifactError, f"{where}: ")
    if (classes, shape) != (bundle.classes, bundle.input_shape):
        raise ArtifactError(
            f"{where} reads {list(shape)} images into {classes} classes, but the bundle records "
            f"{list(bundle.input_shape)} and {bundle.classes} classes"
        )
    if entry.detector is None:
        return
    detectors_file = _inside(bundle.path, entry.detector, file)
    try:
        detectors = read_detectors(detectors_file)
    except ConfigError as exc:
        raise ArtifactError(f"{where}: {exc}") from exc
    _check_detectors(detectors, entry.role, classes, f"{where} ({entry.detector})", ArtifactError)
    recorded, actual = entry.escalation_probability, detectors[0].escalation_rate_
    if recorded is None or not math.isclose(recorded, actual, rel_tol=1e-9, abs_tol=1e-12):
        raise ArtifactError(
            f"bundle {bundle.path} does not match its models: {entry.detector} escalates {actual:.6g} of inputs "
            f"but the bundle records {recorded}"
        )


# --- shared checks -----------------------------------------------------------------------------


def _check_choice(value: str, valid: Collection[str], what: str) -> None:
    if value.lower() not in valid:
        raise ConfigError(f"unknown {what} {value!r}; expected one of: {', '.join(valid)}")


def _choice(value: str, valid: Collection[str], what: str, where: object) -> str:
    if value.lower() not in valid:
        raise ArtifactError(f"{where}: unknown {what} {value!r}; expected one of: {', '.join(valid)}")
    return value.lower()


def _check_ids(ids: list[str], error: type[SpecEdgeError], prefix: str) -> None:
    for model_id in ids:
        if not _ID.fullmatch(model_id):
            raise error(
                f"{prefix}model id {model_id!r} must be letters, digits, '.', '_' or '-', starting alphanumeric"
            )
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise error(f"{prefix}model ids must be unique; repeated: {', '.join(duplicates)}")


def _check_members(count: int, where: str, error: type[SpecEdgeError], *, expected: int | None = None) -> None:
    if count not in (1, 2) or (expected is not None and count != expected):
        wanted = {None: "one artifact folder, or two for a minion pair", 1: "one artifact folder", 2: "two"}[expected]
        raise error(f"{where}: needs {wanted}; got {count}")


def _check_detectors(
    detectors: list[MisspeculationDetector], role: str, classes: int, where: str, error: type[SpecEdgeError]
) -> None:
    """Every detector reads this model's logits: K classes, and the pair policy exactly for a pair."""
    for detector in detectors:
        if detector.num_classes_ != classes:
            raise error(f"{where}: the detector is for {detector.num_classes_} classes but the model has {classes}")
        if (detector.policy == "pair") != (role == "pair"):
            needs = "a 'pair' policy detector" if role == "pair" else "a single-model policy, not 'pair'"
            raise error(f"{where}: the detector has policy {detector.policy!r}; a {role} model needs {needs}")


def _common_shape(
    named: list[tuple[str, ClassifierSpec]], error: type[SpecEdgeError], prefix: str
) -> tuple[int, tuple[int, int, int]]:
    """The one (classes, input shape) every named spec shares; the first that differs is named otherwise."""
    first_name, first = named[0]
    for name, spec in named[1:]:
        if (spec.num_classes, spec.image_shape) != (first.num_classes, first.image_shape):
            raise error(
                f"{prefix}models must read the same images into the same classes: {first_name} reads "
                f"{list(first.image_shape)} into {first.num_classes} classes, {name} reads "
                f"{list(spec.image_shape)} into {spec.num_classes}"
            )
    return first.num_classes, first.image_shape


def _read_json(file: Path, what: str) -> dict[str, Any]:
    try:
        record = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{file.parent} is not an {what}: it has no {file.name}") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{what} {file} is not valid JSON: {exc}") from exc
    except (UnicodeDecodeError, OSError) as exc:
        raise ArtifactError(f"cannot read {what} {file}: {exc}") from exc
    if not isinstance(record, dict):
        raise ArtifactError(f"{what} {file} must hold a JSON object; got {type(record).__name__}")
    return record


def _field(record: dict[str, Any], key: str, kind: type | tuple[type, ...], where: object) -> Any:
    value = record.get(key)
    if value is None or isinstance(value, bool) or not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        got = "missing" if key not in record else f"got {value!r}"
        raise ArtifactError(f"{where}: field {key!r} must be {names}; {got}")
    return value


def _count(value: int, what: str, where: object) -> int:
    if value < 1:
        raise ArtifactError(f"{where}: {what} must be >= 1; got {value}")
    return value


def _cost_value(value: float, what: str, where: object) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise ArtifactError(f"{where}: {what} must be a finite number >= 0; got {value}")
    return float(value)


def _inside(root: Path, relative: str, file: Path) -> Path:
    """``root / relative``, refusing paths that leave the bundle (absolute, ``..``)."""
    if Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ArtifactError(f"{file}: path {relative!r} must be relative and inside the bundle")
    return root / relative


def _spec(manifest: Path) -> ClassifierSpec:
    record = _read_json(manifest, "model manifest")
    try:
        return ClassifierSpec.from_dict(record["spec"])
    except (ArtifactError, KeyError, TypeError, ValueError) as exc:
        raise ArtifactError(f"{manifest}: malformed model spec ({exc})") from exc


def _sha256(file: Path) -> str:
    return hashlib.sha256(file.read_bytes()).hexdigest()


def _sample_images(shape: tuple[int, int, int]) -> np.ndarray:
    """A few seeded random uint8 images: timing does not depend on what they show."""
    return np.random.default_rng(0).integers(0, 256, (_SAMPLE_IMAGES, *shape), dtype=np.uint8)
