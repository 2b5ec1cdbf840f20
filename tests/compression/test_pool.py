"""Minion pools: calibrated before training, filtered by the network, trained two ways, resumable; then paired."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from specedge.cli import main
from specedge.compression import pool as pool_module
from specedge.compression.pool import build_pool, read_pool
from specedge.errors import ConfigError
from specedge.models import load_artifact, save_artifact
from specedge.pairing import read_duo
from specedge.training import TrainConfig


@pytest.fixture(scope="module")
def built(digits_models, tmp_path_factory):
    splits, master, _ = digits_models
    root = tmp_path_factory.mktemp("pool")
    master_path = save_artifact(root / "master", master, dataset=splits.describe(), metrics={})
    record = build_pool(
        master_path,
        splits,
        root / "pool",
        config=TrainConfig(epochs=2, lr=5e-3),
        alphas=(0.25, 0.5),
        rhos=(1.0, 0.6),
        links=("wifi",),
    )
    return splits, master_path, root, record


def test_candidates_are_calibrated_and_trained_both_ways(built):
    splits, _, root, record = built
    assert [c["name"] for c in record["candidates"]] == [
        "lenet5-a0.25-r1",
        "lenet5-a0.25-r0.6",
        "lenet5-a0.5-r1",
        "lenet5-a0.5-r0.6",
    ]
    assert all(c["latency_s"] > 0 and c["macs"] > 0 for c in record["candidates"])
    small, large = record["candidates"][0], record["candidates"][2]
    assert small["macs"] < large["macs"]  # width shrinks the cost
    assert record["candidates"][1]["input_size"] == 17 and record["candidates"][1]["macs"] < small["macs"]  # rho
    _, entries = read_pool(root / "pool")
    assert {e.method for e in entries} == {"labels", "distilled"}
    assert len(entries) == 2 * sum(c["kept"] for c in record["candidates"])
    for entry in entries:
        loaded = load_artifact(entry.path)
        assert loaded.spec.input_size == entry.candidate.input_size
        assert entry.val_accuracy > 1.5 / splits.num_classes  # learnt something


def test_a_pool_resumes_without_retraining(built):
    splits, master_path, root, _ = built
    stamps = {p: p.stat().st_mtime_ns for p in (root / "pool").glob("*/manifest.json")}
    build_pool(master_path, splits, root / "pool", config=TrainConfig(epochs=2), alphas=(0.25, 0.5), rhos=(1.0, 0.6))
    assert {p: p.stat().st_mtime_ns for p in (root / "pool").glob("*/manifest.json")} == stamps


def test_candidates_slower_than_offloading_are_not_trained(built, monkeypatch, tmp_path):
    splits, master_path, _, _ = built
    monkeypatch.setattr(pool_module, "offload_latency_s", lambda link, splits: 1e-9)  # an impossibly fast network
    record = build_pool(master_path, splits, tmp_path / "p", config=TrainConfig(epochs=1), alphas=(0.25,), rhos=(1.0,))
    assert not record["members"] and not record["candidates"][0]["kept"]
    with pytest.raises(ConfigError, match="no trained members"):
        read_pool(tmp_path / "p")


def test_bad_pool_options_and_folders(built, tmp_path):
    splits, master_path, _, _ = built
    with pytest.raises(ConfigError, match="alphas and rhos"):
        build_pool(master_path, splits, tmp_path, config=TrainConfig(epochs=1), alphas=(1.5,))
    with pytest.raises(ConfigError, match="training method"):
        build_pool(master_path, splits, tmp_path, config=TrainConfig(epochs=1), methods=("magic",))
    with pytest.raises(ConfigError, match="not a minion pool"):
        read_pool(tmp_path)


@pytest.mark.parametrize("kind", ["minions", "duo"])
def test_pair_cli_writes_json_and_markdown(built, tmp_path, capsys, kind):
    _, _, root, _ = built
    out = tmp_path / kind
    assert main(["pair", "--kind", kind, "--pool", str(root / "pool"), "--out", str(out), "--quiet"]) == 0
    stem = "minions" if kind == "minions" else "duo-pairs"
    report = json.loads((out / f"{stem}.json").read_text())
    assert (out / f"{stem}.md").read_text().startswith("#")
    if kind == "minions":
        assert {row["link"] for row in report["pairs_by_link"]} == {"3g", "lte", "wifi"}
    else:
        assert {"pairs", "selection"} <= set(report)
        if report["probe"] is not None:  # the server's file sits beside the analysis, not over it
            assert read_duo(out / "duo.json").little == report["probe"]["little"]
    assert "wrote" in capsys.readouterr().out


def test_pair_cli_refuses_a_pool_for_other_data(built, tmp_path, capsys):
    _, _, root, _ = built
    code = main(
        ["pair", "--kind", "minions", "--pool", str(root / "pool"), "--dataset", "mnist", "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    if "not found" in err:
        pytest.skip("MNIST is not available under the data root")
    assert code == 1 and "other data" in err
