"""``specedge edge`` end to end: a real bundle, a real server, a JSON-lines log, clear errors for bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from specedge.cli import main
from specedge.cloud.process import CloudServerProcess
from specedge.data import load_dataset
from specedge.detector import MisspeculationDetector
from specedge.detector.bank import write_detectors
from specedge.edge.assemble import runtime_from_bundle
from specedge.edge.bundle import Bundle, SpeculativeEntry, write_bundle
from specedge.edge.policy import Mode
from specedge.edge.records import Route
from specedge.errors import ConfigError
from specedge.models import build_classifier, load_artifact, save_artifact
from specedge.training import predict_logits

SHAPE = (1, 8, 8)
ROUTES = {r.value for r in Route}


def _model(root: Path, name: str, *, seed: int, width: float = 0.25) -> Path:
    torch.manual_seed(seed)
    classifier = build_classifier("lenet5", num_classes=10, image_shape=SHAPE, width=width)
    return save_artifact(root / name, classifier, dataset={"name": "random"}, metrics={}, model_name=name)


def _detectors(path: Path, model: Path, master: Path, *, targets: tuple[float, ...]) -> Path:
    """A detector bank fitted on the model's digits logits against the master's answers; the first is the default.

    Both models are untrained, so they agree on ~4% of inputs: agreement targets of 0.5 and below give
    the detector a mix of kept and escalated inputs.
    """
    images = load_dataset("digits").val.images
    logits = predict_logits(load_artifact(model).classifier, images)
    master_predictions = predict_logits(load_artifact(master).classifier, images).argmax(1)
    fitted = [
        MisspeculationDetector(policy="threshold", quality="agreement", target=t, delta=None).fit(
            logits, master_predictions
        )
        for t in targets
    ]
    return write_detectors(path, fitted)


@pytest.fixture(scope="module")
def parts(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parts")
    fast, master = _model(root, "fast", seed=1), _model(root, "master", seed=2, width=0.5)
    return {
        "fast": fast,
        "master": master,
        "detectors": _detectors(root / "detectors.json", fast, master, targets=(0.5, 0.4, 0.3)),
        "strict_only": _detectors(root / "strict.json", fast, master, targets=(0.5,)),
    }


@pytest.fixture(scope="module")
def bundle(parts, tmp_path_factory) -> Bundle:
    return write_bundle(
        tmp_path_factory.mktemp("bundle") / "edge",
        speculative=[SpeculativeEntry("fast", (parts["fast"],), parts["detectors"])],
        master=parts["master"],
        cloud_model=parts["master"],
        server_s=0.002,
    )


@pytest.fixture(scope="module")
def server(parts):
    with CloudServerProcess([parts["master"]]) as process:
        yield process


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["edge", "--quiet", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _sent_ids(server: CloudServerProcess) -> set[str]:
    return {e.request_id for e in server.request_log() if e.request_id != "warm-up"}


# --- runs ------------------------------------------------------------------------------------------


def test_dataset_run_logs_one_consistent_record_per_input(bundle, server, tmp_path, capsys):
    log = tmp_path / "records.jsonl"
    before = _sent_ids(server)
    code, out, _ = _run(
        capsys, "--bundle", str(bundle.path), "--cloud", server.target, "--dataset", "digits", "--limit", "40",
        "--log", str(log), "--deadline-ms", "5000", "--no-device-master",
    )  # fmt: skip
    assert code == 0
    records = _records(log)
    assert [r["input_id"] for r in records] == [f"test-{i}" for i in range(40)]
    for r in records:
        assert r["error"] is None and r["route"] in ROUTES and r["prediction"] is not None
        if r["route"] == "local":
            assert r["answered_by"] == r["local_model"] == "fast" and r["prediction"] == r["local_prediction"]
        if r["route"] in ("escalated", "cloud"):
            assert r["verified"] and r["prediction"] == r["cloud_prediction"] and r["answered_by"] == "cloud:master"
        if r["route"] == "escalated":
            assert r["local_model"] == "fast" and r["attempts"] >= 1
    # exactly the inputs that reached the cloud were sent (besides the warm-up call)
    reached = {r["input_id"] for r in records if r["attempts"]}
    assert _sent_ids(server) - before == reached
    routes = {route: sum(r["route"] == route for r in records) for route in ROUTES}
    assert routes["local"] and routes["escalated"]  # the detector kept some answers and doubted others
    assert "inputs: 40 (40 answered, 0 errors)" in out
    assert f"routes: local {routes['local']}, escalated {routes['escalated']}" in out
    for needle in ("verified:", "latency ms: mean", "deadline misses: ", "accuracy: ", "decisions: normal:"):
        assert needle in out


def test_image_folder_gives_error_records_for_bad_files_only(bundle, server, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"good-{i}.png")
    (folder / "corrupt.png").write_bytes(b"not a png at all")
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(folder / "large.png")
    log = tmp_path / "records.jsonl"
    code, out, _ = _run(
        capsys, "--bundle", str(bundle.path), "--cloud", server.target, "--images", str(folder), "--log", str(log)
    )
    assert code == 0
    records = {r["input_id"]: r for r in _records(log)}
    assert sorted(records) == ["corrupt.png", "good-0.png", "good-1.png", "good-2.png", "good-3.png", "large.png"]
    assert "cannot decode" in records["corrupt.png"]["error"] and records["corrupt.png"]["outcome"] == "error"
    assert "16x16 pixels; the models take 8x8" in records["large.png"]["error"]
    for i in range(4):
        good = records[f"good-{i}.png"]
        assert good["error"] is None and good["route"] in ROUTES and good["prediction"] is not None
    assert "inputs: 6 (4 answered, 2 errors)" in out


def test_private_mode_sends_nothing(bundle, server, tmp_path, capsys):
    log = tmp_path / "records.jsonl"
    before = len(server.request_log())
    code, out, _ = _run(
        capsys, "--bundle", str(bundle.path), "--cloud", server.target, "--mode", "private",
        "--dataset", "digits", "--limit", "10", "--log", str(log),
    )  # fmt: skip
    assert code == 0 and len(server.request_log()) == before
    code, out, _ = _run(
        capsys, "--bundle", str(bundle.path), "--mode", "private", "--no-device-master", "--dataset", "digits",
        "--limit", "10", "--log", str(log),
    )  # fmt: skip
    assert code == 0 and "inputs: 10 (10 answered, 0 errors)" in out
    for r in _records(log):
        assert r["route"] == "local" and r["attempts"] == 0 and r["request_bytes"] is None
        assert r["flag"] in (None, "private")


def test_power_saving_uses_the_lowest_relaxed_detector(bundle, parts, tmp_path):
    runtime = runtime_from_bundle(bundle, cloud=None, mode="power-saving")
    assert runtime.mode is Mode.POWER_SAVING and runtime.master is not None
    assert runtime.models["fast"].relaxed_detector.target == 0.3
    assert runtime.models["fast"].detector.target == 0.5
    strict = write_bundle(
        tmp_path / "strict",
        speculative=[SpeculativeEntry("fast", (parts["fast"],), parts["strict_only"])],
        master=None,
        cloud_model="master",
        server_s=0.002,
    )
    assert strict.relaxed_detectors() == {}
    runtime_from_bundle(strict, cloud=None, mode="private")  # fine in every other mode
    with pytest.raises(ConfigError, match="relaxed detector"):
        runtime_from_bundle(strict, cloud=None, mode="power-saving")


# --- errors ----------------------------------------------------------------------------------------


def test_tampered_bundle_exits_1_with_one_line(bundle, tmp_path, capsys):
    copy = Path(shutil.copytree(bundle.path, tmp_path / "edge"))
    manifest = copy / "models" / "fast" / "manifest.json"
    manifest.write_text(manifest.read_text() + " ")
    code, out, err = _run(capsys, "--bundle", str(copy), "--mode", "private", "--dataset", "digits")
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "does not match its models" in err and "manifest.json changed" in err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--no-device-master"], "no --cloud was given"),
        (["--mode", "mission-critical", "--no-device-master"], "give --cloud HOST:PORT"),
        (["--mode", "private", "--emulate"], "--emulate shapes the connection"),
        (["--mode", "private", "--cloud", "nowhere"], "is not HOST:PORT"),
        (["--mode", "private", "--link", "lte5"], "unknown link 'lte5'"),
    ],
)
def test_bad_setups_exit_1_with_one_line(extra, needle, bundle, tmp_path, capsys):
    code, _, err = _run(capsys, "--bundle", str(bundle.path), "--dataset", "digits", "--limit", "2", *extra)
    assert code == 1 and err.count("\n") == 1 and needle in err


def test_power_saving_without_relaxed_detectors_is_a_clean_error(parts, tmp_path, capsys):
    strict = write_bundle(
        tmp_path / "strict",
        speculative=[SpeculativeEntry("fast", (parts["fast"],), parts["strict_only"])],
        master=parts["master"],
        cloud_model=parts["master"],
        server_s=0.002,
    )
    code, _, err = _run(
        capsys, "--bundle", str(strict.path), "--mode", "power-saving", "--dataset", "digits", "--log",
        str(tmp_path / "log.jsonl"),
    )  # fmt: skip
    assert code == 1 and "relaxed detector" in err and "'fast'" in err


def test_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["edge", "--help"])
    out, _ = capsys.readouterr()
    assert exit_info.value.code == 0 and "--bundle DIR" in out and "--emulate" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["edge", "--bundle", "x", "--dataset", "digits", "--objective", "speed"])
    assert exit_info.value.code == 2 and "unknown objective 'speed'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["edge", "--bundle", "x"])
    assert exit_info.value.code == 2 and "--dataset" in capsys.readouterr().err


def test_a_token_protected_cloud_answers_with_the_token_and_is_flagged_without_it(parts, bundle, tmp_path, capsys):
    token = tmp_path / "token"
    token.write_text("s3cret-edge-token\n", encoding="utf-8")
    with CloudServerProcess([parts["master"]], server_args=["--token-file", str(token)]) as secured:
        common = ["--bundle", str(bundle.path), "--cloud", secured.target, "--dataset", "digits", "--limit", "5",
                  "--mode", "mission-critical", "--no-device-master"]  # fmt: skip
        code, _, _ = _run(capsys, *common, "--token-file", str(token), "--log", str(tmp_path / "with.jsonl"))
        assert code == 0
        assert all(r["route"] == "cloud" and r["verified"] for r in _records(tmp_path / "with.jsonl"))
        code, out, _ = _run(capsys, *common, "--log", str(tmp_path / "without.jsonl"))
    assert code == 0  # every input is still answered, by the local model, and says why it is not verified
    without = _records(tmp_path / "without.jsonl")
    assert len(without) == 5 and all(r["prediction"] is not None and not r["verified"] for r in without)
    assert {r["flag"] for r in without} == {"rejected"}
    assert "inputs: 5 (5 answered, 0 errors)" in out
