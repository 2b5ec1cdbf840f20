"""Artifacts round-trip exactly and every user-caused problem is a one-line ArtifactError."""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

import specedge
from specedge.errors import ArtifactError, ConfigError
from specedge.models import (
    ImageClassifier,
    LoadedModel,
    build_classifier,
    import_plugin,
    load_artifact,
    registry,
    save_artifact,
)

PACKAGE = Path(specedge.__file__).parent


def _classifier(num_classes: int = 10) -> ImageClassifier:
    torch.manual_seed(0)
    clf = build_classifier("lenet5", num_classes=num_classes, image_shape=(1, 16, 16), width=0.1, mean=(0.13,))
    for p in clf.parameters():  # make the weights distinguishable from a fresh init
        p.data.normal_()
    return clf


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return save_artifact(
        tmp_path / "lenet",
        _classifier(),
        dataset={"name": "digits", "num_classes": 10},
        metrics={"test_accuracy": 0.5},
        training={"epochs": 1, "seed": 0},
    )


def _edit_manifest(directory: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    path = directory / "manifest.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest))


def _replace_weights(directory: Path, tensors: dict[str, torch.Tensor] | bytes) -> None:
    """Swap in other weights and fix the manifest's hash, so only the content is wrong."""
    weights = directory / "model.safetensors"
    if isinstance(tensors, bytes):
        weights.write_bytes(tensors)
    else:
        save_file(tensors, str(weights))
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    _edit_manifest(directory, lambda m: m["weights"].update(sha256=digest))


def _load_error(path: Path) -> str:
    with pytest.raises(ArtifactError) as info:
        load_artifact(path)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- round trip -----------------------------------------------------------------------------


def test_round_trip_gives_identical_outputs(artifact: Path) -> None:
    clf = _classifier().eval()
    loaded = load_artifact(artifact)
    assert isinstance(loaded, LoadedModel)
    assert not loaded.classifier.training
    images = torch.randint(0, 256, (3, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(clf(images), loaded.classifier(images))
    assert loaded.spec == clf.spec
    assert loaded.path == artifact
    assert loaded.metrics == {"test_accuracy": 0.5}
    assert loaded.dataset["name"] == "digits"
    assert loaded.training == {"epochs": 1, "seed": 0}


def test_manifest_holds_the_documented_fields(artifact: Path) -> None:
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["format"] == "specedge-model"
    assert manifest["format_version"] == 2
    assert manifest["model_name"] == "lenet" and manifest["model_version"] == "1"
    assert manifest["spec"]["architecture"] == "lenet5"
    assert manifest["spec"]["arch_kwargs"] == {"width": 0.1}
    data = (artifact / "model.safetensors").read_bytes()
    assert manifest["weights"] == {
        "encoding": "fp32",
        "file": "model.safetensors",
        "sha256": hashlib.sha256(data).hexdigest(),
        "nbytes": len(data),
    }
    assert manifest["activation_formats"] is None
    assert manifest["specedge_version"] == specedge.__version__
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", manifest["created_utc"])
    clf = _classifier()
    assert manifest["params"] == sum(p.numel() for p in clf.parameters())
    assert manifest["macs"] == 2 * 12 * 12 * 1 * 25 + 5 * 2 * 2 * 2 * 25 + 5 * 50 + 50 * 10  # width 0.1, 16x16


def test_manifest_path_loads_too_and_nothing_temporary_is_left(artifact: Path) -> None:
    assert load_artifact(artifact / "manifest.json").path == artifact
    assert sorted(p.name for p in artifact.iterdir()) == ["manifest.json", "model.safetensors"]


def test_saving_again_overwrites_in_place(artifact: Path) -> None:
    save_artifact(artifact, _classifier(num_classes=4), dataset={}, metrics={})
    assert load_artifact(artifact).spec.num_classes == 4


def test_non_json_metrics_fail_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        save_artifact(tmp_path / "x", _classifier(), dataset={}, metrics={"accuracy": float("nan")})
    with pytest.raises(ConfigError, match="JSON-serialisable"):
        save_artifact(tmp_path / "x", _classifier(), dataset={"path": Path("a")}, metrics={})
    assert not (tmp_path / "x").exists()


def test_saving_onto_a_file_is_an_artifact_error(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ArtifactError, match=r"cannot write model artifact to .*taken"):
        save_artifact(tmp_path / "taken", _classifier(), dataset={}, metrics={})


def test_loading_never_unpickles(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("unpickling attempted")

    for target, name in [(pickle, "load"), (pickle, "loads"), (torch, "load")]:
        monkeypatch.setattr(target, name, forbidden)
    load_artifact(artifact)
    sources = "\n".join(p.read_text() for p in PACKAGE.joinpath("models").rglob("*.py"))
    assert not re.search(r"torch\.load\b|import pickle|pickle\.load", sources)


# --- errors, each naming the path -----------------------------------------------------------


def test_missing_path(tmp_path: Path) -> None:
    assert "does not exist" in _load_error(tmp_path / "nope")


def test_directory_without_manifest(tmp_path: Path) -> None:
    assert "has no manifest.json" in _load_error(tmp_path)


def test_a_file_that_is_not_the_manifest(artifact: Path) -> None:
    message = _load_error(artifact / "model.safetensors")
    assert "is not a model artifact" in message and "model.safetensors" in message


def test_manifest_not_json(artifact: Path) -> None:
    (artifact / "manifest.json").write_text("{not json")
    assert "is not valid JSON" in _load_error(artifact)


def test_manifest_not_an_object(artifact: Path) -> None:
    (artifact / "manifest.json").write_text("[1, 2]")
    assert "must hold a JSON object" in _load_error(artifact)


def test_wrong_format(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m.update(format="onnx"))
    assert "not a specedge model manifest: format 'onnx'" in _load_error(artifact)


def test_unsupported_version(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m.update(format_version=3))
    assert "unsupported format_version 3" in _load_error(artifact)


def _as_version_1(manifest: dict[str, Any]) -> None:
    """What the foundation's save_artifact wrote: fp32 only, weights at the top level, no model name."""
    weights = manifest.pop("weights")
    for key in ("model_name", "model_version", "activation_formats"):
        manifest.pop(key)
    manifest.update(format_version=1, weights_file=weights["file"], weights_sha256=weights["sha256"])


def test_version_1_artifacts_still_load(artifact: Path) -> None:
    _edit_manifest(artifact, _as_version_1)
    loaded = load_artifact(artifact)
    assert loaded.encoding == "fp32"
    assert loaded.serving_name == "lenet"  # the folder's name, as before
    images = torch.randint(0, 256, (2, 1, 16, 16), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(_classifier().eval()(images), loaded.classifier(images))


def test_version_1_without_its_weight_fields(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: (_as_version_1(m), m.pop("weights_sha256")))
    assert "lacks the string field 'weights_sha256'" in _load_error(artifact)


def test_version_2_without_weights_block(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m.pop("weights"))
    assert "lacks the 'weights' object" in _load_error(artifact)


def test_unknown_encoding_is_named(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m["weights"].update(encoding="fp4-magic"))
    message = _load_error(artifact)
    assert "unknown weights encoding 'fp4-magic'" in message and "fp32" in message


def test_model_name_and_sections_are_written(tmp_path: Path) -> None:
    directory = save_artifact(
        tmp_path / "dir",
        _classifier(),
        dataset={},
        metrics={},
        model_name="spec",
        model_version="7",
        sections={"tradeoff": {"bytes_ratio": 0.25}},
    )
    loaded = load_artifact(directory)
    assert (loaded.serving_name, loaded.manifest["model_version"]) == ("spec", "7")
    assert loaded.manifest["tradeoff"] == {"bytes_ratio": 0.25}
    with pytest.raises(ConfigError, match="written by save_artifact itself"):
        save_artifact(tmp_path / "dir", _classifier(), dataset={}, metrics={}, sections={"weights": {}})


@pytest.mark.parametrize("broken", [lambda m: m["spec"].pop("num_classes"), lambda m: m.update(spec="lenet5")])
def test_malformed_spec(artifact: Path, broken: Callable[[dict[str, Any]], None]) -> None:
    _edit_manifest(artifact, broken)
    message = _load_error(artifact)
    assert "malformed model spec" in message and "manifest.json" in message


def test_unknown_architecture_suggests_plugin(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m["spec"].update(architecture="my_net"))
    message = _load_error(artifact)
    assert "'my_net'" in message and "not registered" in message and "--plugin" in message


def test_bad_arch_options(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m["spec"].update(arch_kwargs={"width": 0}))
    assert "cannot rebuild the model" in _load_error(artifact)


def test_missing_weights_file(artifact: Path) -> None:
    (artifact / "model.safetensors").unlink()
    message = _load_error(artifact)
    assert "model.safetensors" in message and "is missing" in message


def test_weights_file_outside_the_directory_is_refused(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m["weights"].update(file="../model.safetensors"))
    assert "must be a file name" in _load_error(artifact)


def test_tampered_weights_fail_the_hash(artifact: Path) -> None:
    weights = artifact / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert "corrupt or modified" in _load_error(artifact)


def test_unparsable_safetensors(artifact: Path) -> None:
    _replace_weights(artifact, b"\x08\x00\x00\x00\x00\x00\x00\x00garbage!")
    assert "not a readable safetensors file" in _load_error(artifact)


def test_num_classes_edited_in_manifest_is_a_shape_mismatch(artifact: Path) -> None:
    _edit_manifest(artifact, lambda m: m["spec"].update(num_classes=3))
    message = _load_error(artifact)
    assert "backbone.classifier.3.weight has shape (10, 50) in the file but (3, 50) in the model" in message


def test_missing_and_unexpected_keys_are_listed(artifact: Path) -> None:
    state = {k: v.contiguous() for k, v in _classifier().state_dict().items()}
    state.pop("backbone.features.0.bias")
    state["backbone.extra"] = torch.zeros(1)
    _replace_weights(artifact, state)
    message = _load_error(artifact)
    assert "missing keys [backbone.features.0.bias]" in message
    assert "unexpected keys [backbone.extra]" in message


# --- bring your own architecture ------------------------------------------------------------

PLUGIN = """
from torch import nn
from specedge.models import register_model

@register_model("plugin_net", description="test plugin", min_input_size=4, default_input_size=8,
                reference_input=(1, 8, 8), reference_params=650, reference_macs=640)
def plugin_net(*, num_classes=10, in_channels=1, input_size=8):
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * input_size * input_size, num_classes))
"""


def test_plugin_architecture_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A private registry copy and module path: the plugin does not leak into other tests.
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    (tmp_path / "specedge_test_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        import_plugin("specedge_test_plugin")
        clf = build_classifier("plugin_net", num_classes=10, image_shape=(1, 8, 8))
        directory = save_artifact(tmp_path / "art", clf, dataset={}, metrics={})
        assert load_artifact(directory).manifest["macs"] == 640
        monkeypatch.delitem(registry._REGISTRY, "plugin_net")  # as in a process without --plugin
        assert "--plugin" in _load_error(directory)
    finally:
        sys.modules.pop("specedge_test_plugin", None)
