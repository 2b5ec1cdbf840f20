"""The demo end to end, through the real CLI, a real cloud server process and real gRPC."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from specedge.detector.bank import read_detectors

FAST = ["--master-arch", "lenet5", "--master-opt", "width=0.5", "--speculative-opt", "width=0.25", "--epochs", "3"]


def _demo(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specedge", "demo", "--out", str(out), "--quiet", *FAST, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _table_value(stdout: str, label: str) -> str:
    match = re.search(rf"^\s+{label}\s+(.+)$", stdout, flags=re.MULTILINE)
    assert match, f"{label!r} missing from the demo table:\n{stdout}"
    return match.group(1).strip()


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    result = _demo(out)
    assert result.returncode == 0, result.stderr
    with (out / "records.csv").open() as handle:
        records = list(csv.DictReader(handle))
    server_log = [json.loads(line) for line in (out / "cloud_requests.jsonl").read_text().splitlines()]
    return out, result.stdout, records, server_log


def test_exactly_the_escalated_and_audited_inputs_reached_the_cloud(demo_run):
    _, _, records, server_log = demo_run
    spec = [r for r in records if r["strategy"] == "SpecEdge"]
    escalated = {r["input_id"] for r in spec if r["route"] == "escalated"}
    audited = {r["input_id"] for r in spec if r["audited"] == "True"}
    assert escalated, "the demo should escalate at least one input"
    assert audited and not audited & escalated, "audits are kept answers re-checked on the master"
    assert all(r["prediction"] == r["local_prediction"] for r in spec if r["input_id"] in audited)
    assert {r["route"] for r in spec} <= {"local", "escalated"}
    served = [e["request_id"] for e in server_log if e["request_id"].startswith("SpecEdge/")]
    assert sorted(served) == sorted(escalated | audited)  # each once, none missing, none extra
    assert all(e["status"] == "OK" for e in server_log)
    cloud_only = [r["input_id"] for r in records if r["strategy"] == "cloud-only"]
    assert sorted(e["request_id"] for e in server_log if e["request_id"].startswith("cloud-only/")) == sorted(
        cloud_only
    )
    assert not [e for e in server_log if e["request_id"].startswith("mobile-only/")]


def test_cloud_answers_are_the_master_answers(demo_run):
    _, _, records, _ = demo_run
    mobile = {r["index"]: r["prediction"] for r in records if r["strategy"] == "mobile-only"}
    for r in records:
        if r["route"] in ("escalated", "cloud"):
            assert r["cloud_prediction"] == mobile[r["index"]]


def test_printed_table_agrees_with_the_records(demo_run):
    _, stdout, records, server_log = demo_run
    spec = [r for r in records if r["strategy"] == "SpecEdge"]
    n = len(spec)
    escalated = sum(r["route"] == "escalated" for r in spec)
    audited = sum(r["audited"] == "True" for r in spec)
    system = sum(r["prediction"] == r["label"] for r in spec) / n
    speculative = sum(r["local_prediction"] == r["label"] for r in spec) / n
    cloud_only = [r for r in records if r["strategy"] == "cloud-only"]
    master = sum(r["prediction"] == r["label"] for r in cloud_only) / n

    assert f"{n} test inputs" in stdout
    assert _table_value(stdout, "system accuracy").startswith(f"{100 * system:.2f}%")
    assert _table_value(stdout, "speculative accuracy") == f"{100 * speculative:.2f}%"
    assert _table_value(stdout, "master accuracy") == f"{100 * master:.2f}%"
    assert _table_value(stdout, "escalation rate").startswith(f"{100 * escalated / n:.2f}%")
    assert _table_value(stdout, "audited on the master").startswith(f"{audited} of {n - escalated} kept answers")
    assert "with probability >= 95%" in _table_value(stdout, "certified")
    assert _table_value(stdout, "answered on device") == f"{n - escalated} of {n}"
    assert _table_value(stdout, "escalated to cloud") == f"{escalated} of {n}"
    served = sum(e["request_id"].startswith("SpecEdge/") for e in server_log)
    assert _table_value(stdout, "cloud requests received").startswith(f"{served} (server log; exactly")
    for strategy, calls in (("SpecEdge", escalated + audited), ("cloud-only", n), ("mobile-only", 0)):
        row = re.search(
            rf"^\s+{strategy}\s+([\d.]+)%\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)\s+([\d.]+|-)\s+([\d.]+|-)$",
            stdout,
            flags=re.MULTILINE,
        )
        assert row and int(row.group(2)) == calls
        assert (row.group(3) == "-") == (calls == 0)  # the server's queue and compute time, for runs that called it
    for link in ("3G", "LTE", "WiFi"):
        assert re.search(rf"^\s+{link}: speculating ", stdout, flags=re.MULTILINE), f"no verdict for {link}"


def test_the_simulator_replays_the_real_records(demo_run):
    """The simulated SpecEdge sends out exactly the inputs the real run sent, with their measured sizes."""
    out, stdout, records, _ = demo_run
    report = json.loads((out / "report.json").read_text())
    spec = [r for r in records if r["strategy"] == "SpecEdge"]
    sent = sum(r["route"] == "escalated" or r["audited"] == "True" for r in spec)
    for row in report["simulation"]["rows"]:
        assert row["escalation_rate"] == pytest.approx(sent / len(spec))
        cloud, spec_energy = row["energy_mj"]["cloud-only"], row["speculating_energy_mj"]
        assert cloud > 0 and spec_energy > 0
        assert row["energy_vs_cloud"] == pytest.approx(row["energy_mj"]["SpecEdge"] / cloud)
    assert re.search(r"^\s+3G\s+SpecEdge \(speculating\)\s+[\d.]+\s+[\d.]+", stdout, flags=re.MULTILINE)


def test_outputs_are_written(demo_run):
    out, _, _, _ = demo_run
    report = json.loads((out / "report.json").read_text())
    assert report["escalations_match_server"] is True
    rows = report["simulation"]["rows"]
    assert {(r["link"], r["objective"]) for r in rows} == {
        (link, o) for link in ("3G", "LTE", "WiFi") for o in ("energy", "latency")
    }
    assert all(r["model_kind"] == "realistic" and r["device"] == "tegra-k1" for r in rows)
    detectors = read_detectors(out / "detector.json")
    assert len(detectors) == 1 and detectors[0].certified
    assert report["detector"]["kind"] == "misspeculation-detector"
    for name in (
        "outcomes.png",
        "tradeoff.png",
        "costs.png",
        "models/master/manifest.json",
        "models/speculative/manifest.json",
    ):
        assert (out / name).stat().st_size > 0, name


def test_ctrl_c_stops_the_demo_and_its_cloud_server(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "specedge", "demo", "--out", str(out), *FAST, "--no-plots"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    demo = psutil.Process(proc.pid)
    deadline = time.monotonic() + 300
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and not children:
        assert proc.poll() is None, proc.communicate()[1]
        children = [c for c in demo.children(recursive=True) if "serve" in " ".join(c.cmdline())]
        time.sleep(0.01)
    assert children, "the demo never started its cloud server"
    # Freeze the demo while its server runs (it answers the whole test set in about a second), so that
    # Ctrl-C lands mid-run rather than racing the end of the run.
    proc.send_signal(signal.SIGSTOP)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGCONT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr.splitlines()[-1]
    assert "Traceback" not in stderr
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "the cloud server outlived the demo"


def test_demo_runs_on_your_own_artifacts_without_training(demo_run, tmp_path):
    trained, *_ = demo_run
    out = tmp_path / "own"
    result = _demo(
        out,
        "--master-model",
        str(trained / "models" / "master" / "manifest.json"),  # a manifest path works like its folder
        "--speculative-model",
        str(trained / "models" / "speculative"),
        "--limit",
        "25",
        "--no-plots",
    )
    assert result.returncode == 0, result.stderr
    assert "25 test inputs" in result.stdout
    assert not (out / "models" / "master").exists()  # nothing was trained
    with (out / "records.csv").open() as handle:
        assert sum(r["strategy"] == "SpecEdge" for r in csv.DictReader(handle)) == 25


def test_demo_refuses_a_model_for_other_data(demo_run, tmp_path):
    trained, *_ = demo_run
    result = _demo(tmp_path / "x", "--dataset", "mnist", "--master-model", str(trained / "models" / "master"))
    if "not found" in result.stderr:
        pytest.skip("MNIST is not available under the data root")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "expects images (1, 8, 8)" in lines[0] and "MNIST" in lines[0]


def test_the_device_runs_the_candidate_with_the_least_simulated_energy(demo_run):
    out, stdout, records, _ = demo_run
    report = json.loads((out / "report.json").read_text())
    candidates = report["candidates"]
    assert [c["name"] for c in candidates] == [
        "distilled",
        "sieve-exact",
        "sieve-accurate",
        "sieve-approximate",
        "int8",
    ]

    def mean_energy(candidate):
        return sum(v["energy_mj"] for v in candidate["simulated"].values()) / len(candidate["simulated"])

    (chosen,) = [c for c in candidates if c["chosen"]]
    assert mean_energy(chosen) == min(mean_energy(c) for c in candidates)
    for candidate in candidates[1:]:  # compressed variants really are smaller on disk
        assert candidate["bytes_ratio"] < 1.0 and (Path(candidate["path"]) / "manifest.json").is_file()
    assert report["device_backends"]["speculative"]["backend"] == chosen["backend"]
    local = {r["local_model"] for r in records if r["strategy"] == "SpecEdge"}
    assert len(local) == 1 and local.pop().endswith(f" {chosen['name']}")
    assert "Speculative candidates" in stdout and "device backends:" in stdout


def test_no_compress_keeps_the_distilled_model(demo_run, tmp_path):
    trained, *_ = demo_run
    out = tmp_path / "plain"
    result = _demo(
        out,
        "--master-model",
        str(trained / "models" / "master"),
        "--speculative-model",
        str(trained / "models" / "speculative"),
        "--limit",
        "10",
        "--no-plots",
        "--no-compress",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["candidates"]] == ["distilled"]
    assert not (out / "models" / "compressed").exists()


def test_a_minion_pair_runs_on_the_device(demo_run, tmp_path):
    """--local minion-pair: a second minion is distilled, both run, the pair rule decides (thesis 5.2)."""
    trained, *_ = demo_run
    out = tmp_path / "pair"
    result = _demo(
        out,
        "--master-model",
        str(trained / "models" / "master"),
        "--speculative-model",
        str(trained / "models" / "speculative"),
        "--local",
        "minion-pair",
        "--limit",
        "30",
        "--no-plots",
        "--target",
        "0.9",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert [c["name"] for c in report["candidates"]] == ["minion-pair"]
    assert report["detector"]["params"]["policy"] == "pair"
    assert (out / "models" / "minion-2" / "manifest.json").is_file()
    with (out / "records.csv").open() as handle:
        local = {r["local_model"] for r in csv.DictReader(handle) if r["strategy"] == "SpecEdge"}
    assert local == {f"{report['models'][1]['architecture']}"}
