"""Trace-driven channels: recorded capacity, looping, with stalls and random start offsets.

Two formats (anchors.md section 5, ../shared/traces/SOURCES.md):

* **Mahimahi** (Winstein et al., NSDI 2013): one integer per line, a millisecond timestamp at
  which one packet of up to 1500 bytes may be delivered; a repeated timestamp means several
  packets that millisecond; the trace repeats with period = its last timestamp. Gaps between
  timestamps are periods of zero capacity: a transfer stalls through them.
* **time / throughput** (e.g. the Norway HSDPA commute traces, Riiser et al., MMSys 2013): two
  columns, time in seconds and throughput in Mbit/s. Each row is the throughput measured since the
  previous row, so it holds over ``(t[i-1], t[i]]`` (as Pensieve's simulator reads these logs);
  the first row only sets time zero, and the trace repeats with period ``t[-1] - t[0]``.

Both become one :class:`TraceChannel`: cumulative capacity in bytes, piecewise linear in time.
A Mahimahi millisecond's packets are spread evenly over that millisecond (a fluid reading: a
delivery time is at most 1 ms from the packet-level one, and back-to-back transfers use exactly the
trace's capacity, with no rounding to whole packets). Transfer times come from ``searchsorted`` on
the cumulative-bytes array, whole runs at once (no loop over packets).
Real per-second throughput is strongly autocorrelated (anchors.md section 5), so a simulation
samples a contiguous segment: :meth:`TraceChannel.random_segment` starts the trace at an offset
drawn from a generator the caller passes in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from specedge.errors import TraceError

__all__ = [
    "MAHIMAHI_PACKET_BYTES",
    "TraceChannel",
    "load_mahimahi",
    "load_rate_trace",
    "load_trace",
]

#: Bytes one Mahimahi delivery opportunity carries (the tool's code allows 1504 with its own header).
MAHIMAHI_PACKET_BYTES = 1500


@dataclass(frozen=True, eq=False)
class TraceChannel:
    """A looping capacity trace: cumulative bytes, piecewise linear in time over one period.

    Attributes:
        name: where the trace came from (file name).
        times_s: breakpoints from 0 to ``period_s``, non-decreasing.
        cumulative_bytes: capacity delivered by each breakpoint, non-decreasing from 0.
        offset_s: time 0 of the simulation is this far into the trace.
    """

    name: str
    times_s: np.ndarray
    cumulative_bytes: np.ndarray
    offset_s: float = 0.0

    @property
    def period_s(self) -> float:
        """The trace repeats after this many seconds."""
        return float(self.times_s[-1])

    @property
    def period_bytes(self) -> float:
        """Capacity of one period."""
        return float(self.cumulative_bytes[-1])

    @property
    def mean_mbps(self) -> float:
        """Mean capacity over a whole period, in Mbit/s."""
        return self.period_bytes * 8 / self.period_s / 1e6

    def shifted(self, offset_s: float) -> TraceChannel:
        """The same trace, with simulation time 0 at ``offset_s`` into it."""
        return replace(self, offset_s=offset_s % self.period_s)

    def random_segment(self, rng: np.random.Generator) -> TraceChannel:
        """The same trace starting at a uniformly random point of its period."""
        return self.shifted(float(rng.uniform(0.0, self.period_s)))

    def transfer(self, num_bytes: float, at_s: float) -> float:
        """When the last of ``num_bytes`` offered at ``at_s`` has been delivered.

        The scalar twin of :meth:`transfer_many` (same arithmetic, no array allocation): the
        reference replay calls it once per transfer, so it must be cheap.
        """
        if num_bytes <= 0:
            return at_s
        period, total = self.period_s, self.period_bytes
        shifted = at_s + self.offset_s
        start_period = math.floor(shifted / period)
        phase = shifted - start_period * period
        target = float(np.interp(phase, self.times_s, self.cumulative_bytes)) + num_bytes
        whole_periods = max(math.ceil(target / total) - 1, 0)
        remainder = target - whole_periods * total
        end = min(max(int(np.searchsorted(self.cumulative_bytes, remainder, side="left")), 1), len(self.times_s) - 1)
        t0, t1 = float(self.times_s[end - 1]), float(self.times_s[end])
        b0, b1 = float(self.cumulative_bytes[end - 1]), float(self.cumulative_bytes[end])
        fraction = min(max((remainder - b0) / (b1 - b0), 0.0), 1.0) if b1 > b0 else 1.0
        done = start_period * period + whole_periods * period + t0 + fraction * (t1 - t0) - self.offset_s
        return max(done, at_s)

    def transfer_many(self, num_bytes: np.ndarray, at_s: np.ndarray) -> np.ndarray:
        """:meth:`transfer` element-wise: whole periods are skipped arithmetically, the rest by ``searchsorted``."""
        num_bytes = np.asarray(num_bytes, dtype=np.float64)
        at_s = np.asarray(at_s, dtype=np.float64)
        shifted = at_s + self.offset_s
        start_period = np.floor(shifted / self.period_s)
        phase = shifted - start_period * self.period_s
        total = self.period_bytes
        target = np.interp(phase, self.times_s, self.cumulative_bytes) + np.maximum(num_bytes, 0.0)
        whole_periods = np.maximum(np.ceil(target / total) - 1, 0)
        remainder = target - whole_periods * total  # in (0, total]
        # The first breakpoint with enough capacity; the segment before it delivers bytes, so zero-capacity
        # stretches (stalls) are stepped over, never divided by.
        end = np.clip(np.searchsorted(self.cumulative_bytes, remainder, side="left"), 1, len(self.times_s) - 1)
        t0, t1 = self.times_s[end - 1], self.times_s[end]
        b0, b1 = self.cumulative_bytes[end - 1], self.cumulative_bytes[end]
        fraction = np.divide(remainder - b0, b1 - b0, out=np.ones_like(remainder), where=b1 > b0)
        done_in_period = whole_periods * self.period_s + t0 + np.clip(fraction, 0.0, 1.0) * (t1 - t0)
        done = (start_period * self.period_s + done_in_period) - self.offset_s
        return np.where(num_bytes > 0, np.maximum(done, at_s), at_s)


# --- loading -------------------------------------------------------------------------------------


def _lines(path: Path) -> list[tuple[int, str]]:
    """Non-blank lines with their 1-based numbers; TraceError for a missing or empty file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TraceError(f"cannot read trace {path}: {exc}") from exc
    lines = [(i, line.strip()) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise TraceError(f"trace {path} is empty; expected one timestamp (Mahimahi) or 'time Mbps' per line")
    return lines


def _check_non_decreasing(path: Path, numbers: list[int], times: np.ndarray, unit: str) -> None:
    drops = np.flatnonzero(np.diff(times) < 0)
    if len(drops):
        i = int(drops[0])
        raise TraceError(
            f"trace {path} line {numbers[i + 1]}: time goes back from {times[i]:g} to {times[i + 1]:g} {unit}; "
            "timestamps must not decrease"
        )


def load_mahimahi(path: Path, *, packet_bytes: int = MAHIMAHI_PACKET_BYTES) -> TraceChannel:
    """A Mahimahi trace: one non-negative integer millisecond timestamp per delivery opportunity."""
    lines = _lines(path)
    values: list[int] = []
    for number, text in lines:
        if not text.isdigit():
            raise TraceError(
                f"trace {path} line {number}: {text!r} is not a Mahimahi timestamp "
                "(one non-negative integer of milliseconds per line)"
            )
        values.append(int(text))
    stamps_ms = np.array(values, dtype=np.int64)
    _check_non_decreasing(path, [n for n, _ in lines], stamps_ms.astype(np.float64), "ms")
    period_ms = int(stamps_ms[-1])
    if period_ms <= 0:
        raise TraceError(f"trace {path} has no capacity: its last timestamp (its period) is {period_ms} ms")
    # Timestamp 0 is the same instant as the period's end once the trace loops.
    stamps_ms = np.sort(np.where(stamps_ms == 0, period_ms, stamps_ms))
    ms, packets = np.unique(stamps_ms, return_counts=True)
    delivered = np.cumsum(packets) * float(packet_bytes)
    before = np.concatenate([[0.0], delivered[:-1]])
    # Each millisecond ms[i] delivers its packets evenly over (ms[i] - 1, ms[i]]; between busy
    # milliseconds the curve is flat (a stall).
    times = np.concatenate([[0.0], np.stack([ms - 1, ms], axis=1).ravel()]) / 1e3
    cumulative = np.concatenate([[0.0], np.stack([before, delivered], axis=1).ravel()])
    return TraceChannel(name=Path(path).name, times_s=times, cumulative_bytes=cumulative)


def load_rate_trace(path: Path) -> TraceChannel:
    """A two-column trace: time in seconds and throughput in Mbit/s, separated by spaces, tabs or a comma."""
    lines = _lines(path)
    rows: list[tuple[float, float]] = []
    for number, text in lines:
        fields = text.replace(",", " ").split()
        if len(fields) != 2:
            raise TraceError(
                f"trace {path} line {number}: {len(fields)} columns in {text!r}; expected 2 (time s, throughput Mbps)"
            )
        try:
            t, mbps = float(fields[0]), float(fields[1])
        except ValueError:
            raise TraceError(
                f"trace {path} line {number}: {text!r} is not two numbers (time s, throughput Mbps)"
            ) from None
        if not (math.isfinite(t) and math.isfinite(mbps)) or mbps < 0:
            raise TraceError(
                f"trace {path} line {number}: time {t:g} s, throughput {mbps:g} Mbps; "
                "both must be finite and the throughput >= 0"
            )
        rows.append((t, mbps))
    if len(rows) < 2:
        raise TraceError(f"trace {path} has {len(rows)} row; a time/throughput trace needs at least 2")
    times = np.array([t for t, _ in rows]) - rows[0][0]
    rates_mbps = np.array([r for _, r in rows])
    _check_non_decreasing(path, [n for n, _ in lines], times, "s")
    cumulative = np.concatenate([[0.0], np.cumsum(rates_mbps[1:] * 1e6 / 8 * np.diff(times))])
    if times[-1] <= 0 or cumulative[-1] <= 0:
        raise TraceError(
            f"trace {path} has no capacity: {cumulative[-1]:g} bytes over {times[-1]:g} s (rows after the first "
            "give the throughput since the previous row)"
        )
    return TraceChannel(name=Path(path).name, times_s=times, cumulative_bytes=cumulative)


def load_trace(path: Path) -> TraceChannel:
    """Mahimahi if the first line is one integer, a time/throughput trace otherwise."""
    first = _lines(path)[0][1]
    return load_mahimahi(path) if first.isdigit() else load_rate_trace(path)
