"""``specedge calibrate`` end to end on digits: the table, the detector file, the plots, the errors."""

from __future__ import annotations

import json

import pytest

from specedge.cli import main
from specedge.detector.bank import choose_detector, read_detectors
from specedge.models import save_artifact


@pytest.fixture(scope="module")
def artifacts(digits_models, tmp_path_factory):
    splits, master, speculative = digits_models
    folder = tmp_path_factory.mktemp("calibrate")
    saved = {}
    for name, model in (("master", master), ("speculative", speculative), ("second", speculative)):
        saved[name] = save_artifact(folder / name, model, dataset=splits.describe(), metrics={}, training={})
    return saved


def _calibrate(capsys, artifacts, tmp_path, *extra: str) -> tuple[int, str, str]:
    argv = [
        "calibrate",
        "--master",
        str(artifacts["master"]),
        "--dataset",
        "digits",
        "--quiet",
        "--out",
        str(tmp_path / "d.json"),
    ]
    if "--speculative" not in extra:
        argv += ["--speculative", str(artifacts["speculative"])]
    code = main([*argv, *extra])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_writes_certified_detectors_per_policy_and_target(capsys, artifacts, tmp_path):
    code, out, _ = _calibrate(
        capsys, artifacts, tmp_path, "--quality", "agreement", "--target", "0.9", "--target", "0.8",
        "--policy", "threshold", "--policy", "per-class-optimal",
    )  # fmt: skip
    assert code == 0
    assert "ECE (15 bins)" in out and "delta 0.05" in out
    detectors = read_detectors(tmp_path / "d.json")
    assert len(detectors) == 4 and all(d.certified for d in detectors)
    assert choose_detector(detectors, policy="per-class-optimal", target=0.8).quality == "agreement"
    report = json.loads((tmp_path / "d.json").read_text())["calibration"]
    assert {row["policy"] for row in report["results"]} == {"threshold", "per-class-optimal"}
    assert all(0 <= row["escalation_rate"] <= 1 for row in report["results"])
    assert (tmp_path / "d-tradeoff.png").stat().st_size > 0
    assert (tmp_path / "d-outcomes-threshold-0.9.png").stat().st_size > 0


def test_uncertifiable_targets_are_reported_in_the_table(capsys, artifacts, tmp_path):
    code, out, _ = _calibrate(capsys, artifacts, tmp_path, "--target", "1.0", "--target", "0.5", "--no-plots")
    assert code == 0
    assert "cannot certify accuracy >= 1 x master accuracy" in out
    assert [d.target for d in read_detectors(tmp_path / "d.json")] == [0.5]


def test_nothing_calibrated_is_an_error(capsys, artifacts, tmp_path):
    code, _, err = _calibrate(capsys, artifacts, tmp_path, "--target", "1.0", "--no-plots")
    assert code == 1 and "no policy and target could be calibrated" in err
    assert not (tmp_path / "d.json").exists()


def test_pair_policy_with_two_minions(capsys, artifacts, tmp_path):
    code, out, _ = _calibrate(
        capsys, artifacts, tmp_path, "--speculative", str(artifacts["speculative"]), "--speculative",
        str(artifacts["second"]), "--no-guarantee", "--target", "0.99", "--no-plots",
    )  # fmt: skip
    assert code == 0 and "pair" in out
    assert read_detectors(tmp_path / "d.json")[0].policy == "pair"


def test_pair_policy_with_one_model_is_a_clear_error(capsys, artifacts, tmp_path):
    code, _, err = _calibrate(capsys, artifacts, tmp_path, "--policy", "pair", "--no-plots")
    assert code == 1 and "pair policy takes exactly two --speculative minions" in err
