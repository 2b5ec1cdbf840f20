"""``specedge simulate`` end to end on digits: report, rows, plots, traces and bad input."""

from __future__ import annotations

import json

import pytest

from specedge.cli import main
from specedge.models import save_artifact


@pytest.fixture(scope="module")
def artifacts(digits_models, tmp_path_factory):
    splits, master, speculative = digits_models
    folder = tmp_path_factory.mktemp("simulate")
    return {
        name: save_artifact(folder / name, model, dataset=splits.describe(), metrics={}, training={})
        for name, model in (("master", master), ("speculative", speculative))
    }


def _simulate(capsys, artifacts, out, *extra: str) -> tuple[int, str, str]:
    try:
        code = main(
            [
                "simulate", "--speculative", str(artifacts["speculative"]), "--master", str(artifacts["master"]),
                "--dataset", "digits", "--quiet", "--out", str(out), "--target", "0.9", "--limit", "120", *extra,
            ]
        )  # fmt: skip
    except SystemExit as exc:
        code = int(exc.code)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_writes_report_rows_and_plots(capsys, artifacts, tmp_path):
    code, out, _ = _simulate(capsys, artifacts, tmp_path, "--device", "tegra-k1,rpi4", "--fps", "1,5")
    assert code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert len(rows) == 2 * 2 * 3 * 2  # devices x frame rates x links x kinds
    assert {r["device"] for r in rows} == {"tegra-k1", "rpi4"}
    for key in ("latency_vs_cloud", "energy_vs_cloud", "latency_vs_mobile", "energy_vs_mobile", "escalation_rate"):
        assert all(isinstance(r[key], float) for r in rows), key
    report = (tmp_path / "report.md").read_text()
    assert "## Verdicts" in report and "agreement with the master >= 90.00%" in report
    assert (tmp_path / "breakdown-rpi4-realistic-5fps.png").stat().st_size > 0
    assert "speed-up" in out


def test_bandwidth_sweep(capsys, artifacts, tmp_path):
    code, _, _ = _simulate(
        capsys, artifacts, tmp_path, "--links", "lte", "--kind", "simple", "--bandwidth-scale", "0.25,1,4"
    )
    assert code == 0
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["link"] for r in rows] == ["LTE x0.25 bandwidth", "LTE", "LTE x4 bandwidth"]
    cloud_ms = [r["latency_ms"]["cloud-only"] for r in rows]
    assert cloud_ms[0] > cloud_ms[1] > cloud_ms[2]  # slower links, slower cloud round trips


def test_trace_driven_links(capsys, artifacts, tmp_path, traces_dir):
    up, down = traces_dir / "mahimahi" / "TMobile-LTE-short.up", traces_dir / "mahimahi" / "TMobile-LTE-short.down"
    code, _, _ = _simulate(
        capsys,
        artifacts,
        tmp_path,
        "--links",
        "lte",
        "--kind",
        "realistic",
        "--trace-up",
        str(up),
        "--trace-down",
        str(down),
    )
    assert code == 0
    (row,) = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert row["link"] == "LTE (TMobile-LTE-short.up/TMobile-LTE-short.down)"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--links", "lte5"], "unknown link profile 'lte5'"),
        (["--fps", "0"], "frame rates (frames per second) > 0"),
        (["--device", "toaster"], "unknown device 'toaster'"),
    ],
)
def test_bad_flags_are_named(capsys, artifacts, tmp_path, extra, message):
    code, _, err = _simulate(capsys, artifacts, tmp_path, *extra)
    assert code == 2 and message in err


def test_a_malformed_trace_is_a_one_line_error(capsys, artifacts, tmp_path):
    bad = tmp_path / "bad.trace"
    bad.write_text("5\n3\n")
    code, _, err = _simulate(capsys, artifacts, tmp_path / "out", "--trace-up", str(bad))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "bad.trace" in err
