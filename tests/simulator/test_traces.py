"""Trace-driven channels: replayed throughput, stalls, looping, random segments and bad files."""

from pathlib import Path

import numpy as np
import pytest

from specedge.errors import TraceError
from specedge.simulator.channels import ConstantRate
from specedge.simulator.traces import load_mahimahi, load_rate_trace, load_trace

MAHIMAHI = [
    "ATT-LTE-driving-2016.up",
    "ATT-LTE-driving-2016.down",
    "TMobile-LTE-short.up",
    "TMobile-LTE-short.down",
    "TMobile-UMTS-driving.up",
    "TMobile-UMTS-driving.down",
]


def _write(tmp_path: Path, text: str, name: str = "trace") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _replayed_mbps(trace, *, periods: int, seed: int) -> float:
    """Mean throughput of back-to-back transfers worth ``periods`` periods of capacity, from a random start."""
    segment = trace.random_segment(np.random.default_rng(seed))
    chunk_bytes = trace.period_bytes / 997  # not a whole number of packets
    at = 0.0
    for _ in range(997 * periods):
        at = segment.transfer(chunk_bytes, at)
    return periods * trace.period_bytes * 8 / at / 1e6


@pytest.mark.parametrize("name", MAHIMAHI)
def test_mahimahi_replay_matches_the_trace_mean_within_1_percent(traces_dir: Path, name: str) -> None:
    path = traces_dir / "mahimahi" / name
    if not path.exists():
        pytest.skip(f"trace not present: {path}")
    trace = load_mahimahi(path)
    # The trace's own mean: packets x 1500 bytes over the last timestamp.
    stamps = np.loadtxt(path, dtype=np.int64)
    expected_mbps = len(stamps) * 1500 * 8 / (stamps[-1] / 1e3) / 1e6
    assert trace.mean_mbps == pytest.approx(expected_mbps, rel=1e-9)
    assert _replayed_mbps(trace, periods=2, seed=0) == pytest.approx(expected_mbps, rel=0.01)


def test_norway_rate_trace_replays_its_time_weighted_mean(traces_dir: Path) -> None:
    path = traces_dir / "norway-hsdpa" / "norway_bus_1"
    if not path.exists():
        pytest.skip(f"trace not present: {path}")
    trace = load_trace(path)
    data = np.loadtxt(path)
    expected = float(np.sum(data[1:, 1] * np.diff(data[:, 0])) / (data[-1, 0] - data[0, 0]))
    assert trace.mean_mbps == pytest.approx(expected, rel=1e-9)
    assert _replayed_mbps(trace, periods=2, seed=0) == pytest.approx(expected, rel=0.01)


def test_mahimahi_millisecond_packets_and_stalls(tmp_path: Path) -> None:
    # Two packets at 1 ms, nothing until 10 ms, one packet at 10 ms: period 10 ms, 4500 bytes.
    trace = load_mahimahi(_write(tmp_path, "1\n1\n10\n"))
    assert trace.period_s == pytest.approx(0.010)
    assert trace.mean_mbps == pytest.approx(4500 * 8 / 0.010 / 1e6)
    assert trace.transfer(3000, 0.0) == pytest.approx(0.001)  # both packets of the first millisecond
    assert trace.transfer(1500, 0.0) == pytest.approx(0.0005)  # half of that millisecond's capacity
    assert trace.transfer(3001, 0.0) == pytest.approx(0.009 + 1 / 1500 * 0.001)  # stalls 1..9 ms
    assert trace.transfer(1500, 0.002) == pytest.approx(0.010)  # offered in the gap: waits for 10 ms


def test_trace_loops_with_its_period(tmp_path: Path) -> None:
    trace = load_mahimahi(_write(tmp_path, "1\n1\n10\n"))
    # 4500 bytes per 10 ms period: 9000 + 3000 bytes end 1 ms into the third period.
    assert trace.transfer(12_000, 0.0) == pytest.approx(0.021)
    # The same transfer started one period later ends one period later.
    assert trace.transfer(12_000, 0.010) == pytest.approx(0.031)
    many = trace.transfer_many(np.array([12_000, 0, 1500]), np.array([0.0, 0.5, 0.002]))
    assert many == pytest.approx([0.021, 0.5, 0.010])


def test_rate_trace_zero_throughput_stalls(tmp_path: Path) -> None:
    # Rows give the throughput since the previous row: 8 Mbps over (0, 1], 0 over (1, 3], 8 over (3, 4].
    trace = load_rate_trace(_write(tmp_path, "0 5\n1 8\n3 0\n4 8\n"))
    assert trace.period_s == pytest.approx(4.0)
    assert trace.mean_mbps == pytest.approx(16 / 4)
    assert trace.transfer(500_000, 0.0) == pytest.approx(0.5)
    assert trace.transfer(1_500_000, 0.0) == pytest.approx(3.5)  # 1 MB by 1 s, stall, 0.5 MB more
    assert trace.transfer(500_000, 1.5) == pytest.approx(3.5)  # offered during the stall


def test_random_segments_are_contiguous_and_deterministic(tmp_path: Path) -> None:
    trace = load_rate_trace(_write(tmp_path, "0 0\n1 8\n2 0\n3 16\n"))
    a = trace.random_segment(np.random.default_rng(7))
    b = trace.random_segment(np.random.default_rng(7))
    c = trace.random_segment(np.random.default_rng(8))
    assert a.offset_s == b.offset_s != c.offset_s
    assert 0 <= a.offset_s < trace.period_s
    shifted = trace.shifted(1.25)
    # Simulation time t on the shifted trace is trace time t + 1.25.
    assert shifted.transfer(100_000, 0.0) == pytest.approx(trace.transfer(100_000, 1.25) - 1.25)
    assert shifted.mean_mbps == trace.mean_mbps


def test_constant_rate_channel() -> None:
    channel = ConstantRate(8.0)
    assert channel.transfer(1_000_000, 2.0) == pytest.approx(3.0)
    assert channel.transfer_many(np.array([0, 500_000]), np.array([1.0, 1.0])) == pytest.approx([1.0, 1.5])


@pytest.mark.parametrize(
    ("loader", "text", "message"),
    [
        (load_mahimahi, "", "is empty"),
        (load_mahimahi, "\n  \n", "is empty"),
        (load_mahimahi, "5\n3\n", "line 2: time goes back from 5 to 3 ms"),
        (load_mahimahi, "1\n2.5\n", "line 2: '2.5' is not a Mahimahi timestamp"),
        (load_mahimahi, "1\n-4\n", "is not a Mahimahi timestamp"),
        (load_mahimahi, "0\n0\n", "no capacity"),
        (load_rate_trace, "0 1\n1\n", "line 2: 1 columns"),
        (load_rate_trace, "0 1 2\n1 1\n", "line 1: 3 columns"),
        (load_rate_trace, "0 1\n1 fast\n", "line 2: '1 fast' is not two numbers"),
        (load_rate_trace, "0 1\n1 -2\n", "throughput >= 0"),
        (load_rate_trace, "0 1\n2 3\n1 3\n", "line 3: time goes back from 2 to 1 s"),
        (load_rate_trace, "0 1\n1 0\n2 0\n", "no capacity"),
        (load_rate_trace, "0 1\n", "at least 2"),
        (load_rate_trace, "0 1\n1 nan\n", "finite"),
    ],
)
def test_malformed_traces_give_clear_errors(tmp_path: Path, loader, text: str, message: str) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(TraceError, match=message) as info:
        loader(path)
    assert str(path) in str(info.value)


def test_missing_trace_file(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read trace"):
        load_trace(tmp_path / "nope")


def test_load_trace_detects_the_format(tmp_path: Path) -> None:
    assert load_trace(_write(tmp_path, "1\n2\n", "m")).period_s == pytest.approx(0.002)
    assert load_trace(_write(tmp_path, "0\t1.5\n2\t1.5\n", "r")).mean_mbps == pytest.approx(1.5)
