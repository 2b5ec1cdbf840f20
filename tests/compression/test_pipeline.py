"""``compress`` end to end on digits: saved variants reload to identical outputs and carry honest records."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime")

from specedge.backends import runner_for
from specedge.cli import main
from specedge.compression.pipeline import compress
from specedge.errors import ConfigError
from specedge.models import load_artifact, save_artifact
from specedge.training import predict_logits


@pytest.fixture(scope="module")
def compressed(digits_models, tmp_path_factory):
    splits, master, _ = digits_models
    root = tmp_path_factory.mktemp("compress")
    source = load_artifact(save_artifact(root / "master", master, dataset=splits.describe(), metrics={}))
    variants = compress(source, splits, method="sieve", variants=("exact", "accurate"), out=root / "out")
    variants += compress(source, splits, method="int8", out=root / "out")
    return splits, master, source, {v.name: v for v in variants}


def test_each_variant_reloads_to_the_outputs_it_was_measured_with(compressed):
    splits, master, _, variants = compressed
    master_val = predict_logits(master, splits.val.images).argmax(axis=1)
    for name, variant in variants.items():
        loaded = load_artifact(variant.path)
        runner, choice = runner_for(loaded, splits.val.images)
        val = runner.logits(splits.val.images).argmax(axis=1)
        metrics = variant.tradeoff["metrics"]
        assert metrics["val_accuracy"] == pytest.approx(np.mean(val == splits.val.labels)), name
        assert metrics["val_agreement"] == pytest.approx(np.mean(val == master_val)), name
        assert choice.backend == variant.tradeoff["backend"] or name != "int8"
        manifest = loaded.manifest
        assert manifest["tradeoff"] == variant.tradeoff
        assert manifest["model_name"] == f"master-{name}"


def test_sieve_variant_runs_the_same_on_both_backends(compressed):
    splits, _, _, variants = compressed
    loaded = load_artifact(variants["sieve-accurate"].path)
    torch_runner, _ = runner_for(loaded, splits.val.images, prefer="torch")
    onnx_runner, choice = runner_for(loaded, splits.val.images, prefer="onnxruntime")
    assert choice.parity is not None and choice.parity.passed
    assert np.array_equal(
        torch_runner.logits(splits.test.images).argmax(axis=1), onnx_runner.logits(splits.test.images).argmax(axis=1)
    )


def test_records_are_consistent(compressed):
    *_, variants = compressed
    accurate = variants["sieve-accurate"].tradeoff
    assert accurate["metrics"]["normalized_val_accuracy"] >= 1.0  # the variant's criterion, on validation
    stored = (variants["sieve-accurate"].path / "weights.sieve").stat().st_size
    assert accurate["bytes_on_disk"] == stored and accurate["bytes_ratio"] == stored / accurate["fp32_bytes"]
    for layer in accurate["layers"]:
        assert 1 <= layer["weight_bits"] <= 32 and 1 <= layer["activation_bits"] <= 32
    int8 = variants["int8"].tradeoff
    assert int8["encoding"] == "int8" and int8["bytes_ratio"] < 0.4 and int8["backend"] == "onnxruntime"
    assert all(layer["weight_bits"] == 8 for layer in int8["layers"])
    assert int8["traffic_ratio"] < 0.3  # int8 weights and activations; fp32 biases


def test_int8_cannot_run_on_torch(compressed):
    splits, _, _, variants = compressed
    with pytest.raises(ConfigError, match="runs on onnxruntime only"):
        runner_for(load_artifact(variants["int8"].path), splits.val.images, prefer="torch")


def test_a_compressed_master_is_refused(compressed, tmp_path):
    splits, _, _, variants = compressed
    with pytest.raises(ConfigError, match="already compressed"):
        compress(load_artifact(variants["int8"].path), splits, method="sieve", out=tmp_path)


def test_cli_compress_prints_a_row_per_variant(compressed, tmp_path, capsys):
    _, _, source, _ = compressed
    code = main(["compress", "--master", str(source.path), "--method", "int8", "--out", str(tmp_path), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "int8" in out and str(tmp_path / "int8") in out
    manifest = json.loads((tmp_path / "int8" / "manifest.json").read_text())
    assert manifest["compression"]["method"] == "int8"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--method", "zip"], "invalid choice: 'zip'"),
        (["--variant", "tiny"], "invalid choice: 'tiny'"),
    ],
)
def test_cli_compress_bad_flags(compressed, tmp_path, capsys, argv, message):
    _, _, source, _ = compressed
    with pytest.raises(SystemExit) as info:
        main(["compress", "--master", str(source.path), "--out", str(tmp_path), *argv])
    assert info.value.code == 2 and message in capsys.readouterr().err


def test_cli_compress_missing_master(tmp_path, capsys):
    assert main(["compress", "--master", str(tmp_path / "none"), "--out", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_eval_and_profile_show_the_tradeoff_of_an_int8_variant(compressed, capsys):
    *_, variants = compressed
    path = str(variants["int8"].path)
    assert main(["eval", "--model", path, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "(int8)" in out and "on onnxruntime" in out and "memory traffic per inference" in out
    assert main(["profile", "--model", path]) == 0
    assert "stored as a compressed variant" in capsys.readouterr().out


def test_a_corrupted_variant_is_one_clear_cli_error(compressed, tmp_path, capsys):
    import shutil

    *_, variants = compressed
    broken = tmp_path / "broken"
    shutil.copytree(variants["sieve-accurate"].path, broken)
    blob = bytearray((broken / "weights.sieve").read_bytes())
    blob[0] ^= 0xFF
    (broken / "weights.sieve").write_bytes(bytes(blob))
    assert main(["eval", "--model", str(broken), "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "corrupt or modified" in err[0] and "Traceback" not in err[0]


def test_layers_the_search_does_not_handle_stay_fp32_and_are_reported(tmp_path):
    import dataclasses

    from specedge.data import load_dataset
    from specedge.models import build_classifier

    splits = load_dataset("digits")
    master = build_classifier("resnet8", num_classes=10, image_shape=splits.image_shape)  # BatchNorm inside
    # label a few images with the untrained model's own answers: a baseline the search can normalise by
    small = {name: getattr(splits, name).subset(np.arange(24)) for name in ("val", "test")}
    for name, split in small.items():
        small[name] = dataclasses.replace(split, labels=predict_logits(master, split.images).argmax(axis=1))
    splits = dataclasses.replace(splits, **small)
    source = load_artifact(save_artifact(tmp_path / "resnet", master, dataset=splits.describe(), metrics={}))
    (variant,) = compress(source, splits, method="sieve", variants=("exact",), out=tmp_path / "out")
    kept = json.loads((variant.path / "manifest.json").read_text())["compression"]["kept_fp32"]
    assert {k["type"] for k in kept} == {"Preprocess", "BatchNorm2d"}
    state = load_artifact(variant.path).manifest["weights"]["tensors"]
    assert all(entry["format"] is None for entry in state if ".bn" in entry["name"] or "norm" in entry["name"])
