"""Packed weight encodings: sieve artifacts shrink by the ratio their formats imply and reload exactly."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from specedge.errors import ArtifactError
from specedge.models import ImageClassifier, build_classifier, load_artifact, save_artifact
from specedge.models.encodings import Int8Encoding, SieveEncoding
from specedge.models.layers import activation_formats_of, compressible_layers, with_formats
from specedge.numerics import FloatFormat, quantize

W_FMT = FloatFormat(3, 2, 4, overflow="saturate")  # 6 bits per weight
A_FMT = FloatFormat(4, 3, overflow="saturate")


def _classifier() -> ImageClassifier:
    torch.manual_seed(0)
    return build_classifier("lenet5", num_classes=10, image_shape=(1, 16, 16), width=0.5).eval()


def _formats(model: ImageClassifier) -> tuple[dict[str, FloatFormat], dict[str, FloatFormat]]:
    layers = [name for name, _ in compressible_layers(model)]
    return dict.fromkeys(layers, W_FMT), dict.fromkeys(layers[1:], A_FMT)


@pytest.fixture
def sieve_artifact(tmp_path: Path) -> tuple[Path, ImageClassifier]:
    model = _classifier()
    weights, activations = _formats(model)
    compressed = with_formats(model, weights, activations)
    path = save_artifact(
        tmp_path / "sieve",
        compressed,
        dataset={},
        metrics={},
        encoding=SieveEncoding({f"{layer}.weight": fmt for layer, fmt in weights.items()}),
        activation_formats=activations,
    )
    return path, compressed


def test_sieve_artifact_reloads_to_identical_outputs(sieve_artifact: tuple[Path, ImageClassifier]) -> None:
    path, compressed = sieve_artifact
    loaded = load_artifact(path)
    assert loaded.encoding == "sieve"
    assert activation_formats_of(loaded.classifier) == activation_formats_of(compressed)
    images = torch.randint(0, 256, (16, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.equal(compressed(images), loaded.classifier(images))


def test_weights_are_stored_as_their_format_rounds_them(tmp_path: Path) -> None:
    model = _classifier()  # fp32 weights: the encoding itself rounds them
    weights, _ = _formats(model)
    path = save_artifact(
        tmp_path / "a",
        model,
        dataset={},
        metrics={},
        encoding=SieveEncoding({f"{k}.weight": f for k, f in weights.items()}),
    )
    loaded = load_artifact(path).classifier.state_dict()
    for key, value in model.state_dict().items():
        packed = key.endswith(".weight") and key.removesuffix(".weight") in weights
        expected = torch.from_numpy(quantize(value.numpy(), W_FMT)) if packed else value
        assert torch.equal(loaded[key], expected), key


def test_bytes_shrink_by_the_implied_ratio(sieve_artifact: tuple[Path, ImageClassifier], tmp_path: Path) -> None:
    path, compressed = sieve_artifact
    fp32 = save_artifact(tmp_path / "fp32", compressed, dataset={}, metrics={})
    state = compressed.state_dict()
    packed = sum(state[f"{layer}.weight"].numel() for layer in _formats(compressed)[0])
    raw = sum(t.numel() * t.element_size() for k, t in state.items() if not k.endswith(".weight") or "preprocess" in k)
    expected = math.ceil(packed * W_FMT.bits / 8)  # each tensor rounds up to whole bytes on its own
    sieve_bytes = (path / "weights.sieve").stat().st_size
    assert expected <= sieve_bytes - raw <= expected + len(_formats(compressed)[0])
    fp32_bytes = (fp32 / "model.safetensors").stat().st_size
    assert sieve_bytes < fp32_bytes * (W_FMT.bits / 32) * 1.1  # 6/32 of fp32, plus fp32 biases
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["weights"]["nbytes"] == sieve_bytes


def _edit(path: Path, edit: object) -> None:
    manifest_path = path / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    edit(manifest)  # type: ignore[operator]
    manifest_path.write_text(json.dumps(manifest))


def _error(path: Path) -> str:
    with pytest.raises(ArtifactError) as info:
        load_artifact(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_corrupted_blob_fails_the_hash(sieve_artifact: tuple[Path, ImageClassifier]) -> None:
    path, _ = sieve_artifact
    blob = bytearray((path / "weights.sieve").read_bytes())
    blob[10] ^= 0x55
    (path / "weights.sieve").write_bytes(bytes(blob))
    assert "corrupt or modified" in _error(path)


def test_truncated_blob_with_matching_hash_is_named(sieve_artifact: tuple[Path, ImageClassifier]) -> None:
    path, _ = sieve_artifact
    data = (path / "weights.sieve").read_bytes()[:-7]
    (path / "weights.sieve").write_bytes(data)
    _edit(path, lambda m: m["weights"].update(sha256=hashlib.sha256(data).hexdigest()))
    assert "truncated or the table is corrupt" in _error(path)


def test_invalid_stored_format_is_named(sieve_artifact: tuple[Path, ImageClassifier]) -> None:
    path, _ = sieve_artifact

    def break_format(manifest: dict) -> None:  # type: ignore[type-arg]
        entry = next(e for e in manifest["weights"]["tensors"] if e["format"] is not None)
        entry["format"]["exponent_bits"] = 12

    _edit(path, break_format)
    message = _error(path)
    assert "invalid format" in message and "exponent" in message


def test_wrong_packed_length_is_named(sieve_artifact: tuple[Path, ImageClassifier]) -> None:
    path, _ = sieve_artifact

    def shrink(manifest: dict) -> None:  # type: ignore[type-arg]
        entry = next(e for e in manifest["weights"]["tensors"] if e["format"] is not None)
        entry["nbytes"] -= 1

    _edit(path, shrink)
    assert "does not unpack" in _error(path)


def test_activation_format_for_a_missing_layer(sieve_artifact: tuple[Path, ImageClassifier]) -> None:
    path, _ = sieve_artifact
    _edit(path, lambda m: m["activation_formats"].update({"backbone.nope": A_FMT.to_dict()}))
    assert "backbone.nope" in _error(path)


def test_int8_artifact_has_no_torch_form(tmp_path: Path) -> None:
    path = save_artifact(tmp_path / "q", _classifier(), dataset={}, metrics={}, encoding=Int8Encoding(b"graph bytes"))
    loaded = load_artifact(path)
    assert loaded.encoding == "int8" and loaded.onnx_model == b"graph bytes"
    assert loaded.spec.architecture == "lenet5"
    with pytest.raises(ArtifactError, match="runs on ONNX Runtime only"):
        _ = loaded.classifier
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.int8.onnx"]


def test_resaving_in_another_encoding_removes_the_old_file(sieve_artifact: tuple[Path, ImageClassifier]) -> None:
    path, compressed = sieve_artifact
    save_artifact(path, compressed, dataset={}, metrics={})
    assert sorted(p.name for p in path.iterdir()) == ["manifest.json", "model.safetensors"]
