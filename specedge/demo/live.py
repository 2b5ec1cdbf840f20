"""The demo's live runs: the edge runtime, selector on, against the real server through emulated links.

After the measured loopback runs, the demo writes an edge bundle (every speculative candidate with
its own detector and device-model cost, plus the master) and, for each link of the demo, puts the
loopback link emulator (:mod:`specedge.emulator`) between the edge and the real cloud server and
streams the test inputs through :class:`~specedge.edge.runtime.EdgeRuntime` with the per-input
selector, speculation history and the master on the device as a placement option. Camera time
(one frame every ``1 / fps`` seconds) runs on the runtime's injected clock, so the radio's idle
timers in the link estimate see the frame gaps the simulator assumes, without the demo waiting for
them; network delays are real (emulated) time. What the selector decided per link, where
recoveries went and what the live run cost are what the report shows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specedge.data import Dataset
from specedge.demo.candidates import Candidate
from specedge.detector.bank import write_detectors
from specedge.edge.bundle import Bundle, SpeculativeEntry, write_bundle
from specedge.edge.clock import ManualClock
from specedge.edge.cloud_client import CloudClient
from specedge.edge.history import SpeculationHistory
from specedge.edge.link_estimate import LinkEstimate
from specedge.edge.records import InferenceRecord, Route
from specedge.edge.runtime import EdgeInput, EdgeRuntime, LocalModel
from specedge.emulator import LinkEmulator
from specedge.simulator import get_link_profile

__all__ = ["LiveLinkRun", "live_lines", "run_live_links", "write_demo_bundle"]


@dataclass
class LiveLinkRun:
    """One link's live run: the records and what the emulator carried."""

    link: str
    masters: str  # where the master may run: "device + cloud" or "cloud" (SIEVE's placement)
    records: list[InferenceRecord]
    labels: np.ndarray
    bytes_up: int
    bytes_down: int

    def decisions(self) -> Counter[str]:
        """How often the policy chose each plan ("speculate:int8", "cloud", "device-master")."""
        return Counter(r.decision.split(";")[0].split(": ", 1)[-1] for r in self.records)

    def count(self, route: Route, *, ran_local: bool | None = None) -> int:
        """Records answered on ``route`` (optionally: after a local speculative run, or without one)."""
        return sum(
            r.route is route and (ran_local is None or (r.local_model is not None) == ran_local) for r in self.records
        )

    @property
    def cloud_calls(self) -> int:
        """RPCs made to the cloud (escalations, direct sends, audits, failed attempts)."""
        return sum(r.attempts for r in self.records)

    @property
    def flagged(self) -> int:
        """Answers below the guarantee (a failure, a deadline, no master reachable)."""
        return sum(r.flag is not None for r in self.records)

    @property
    def accuracy(self) -> float:
        """Accuracy of the answers against the labels."""
        return float(np.mean([r.prediction == y for r, y in zip(self.records, self.labels, strict=True)]))

    def latency_ms(self) -> np.ndarray:
        """Live per-input latency: host compute plus the emulated network."""
        return np.array([r.total_us for r in self.records], dtype=np.float64) / 1e3

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "link": self.link,
            "masters": self.masters,
            "decisions": dict(self.decisions()),
            "kept_local": self.count(Route.LOCAL),
            "recovered_in_cloud": self.count(Route.ESCALATED),
            "recovered_on_device_master": self.count(Route.DEVICE_MASTER, ran_local=True),
            "sent_to_cloud": self.count(Route.CLOUD),
            "device_master_direct": self.count(Route.DEVICE_MASTER, ran_local=False),
            "cloud_calls": self.cloud_calls,
            "flagged": self.flagged,
            "accuracy": self.accuracy,
            "mean_latency_ms": float(self.latency_ms().mean()),
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
        }


def write_demo_bundle(
    out: Path,
    *,
    candidates: Sequence[Candidate],
    chosen: Candidate,
    master: Path,
    device: str,
    link: str,
    server_s: float,
) -> Bundle:
    """Every candidate (the chosen one first) with its own detector, and the master, as one edge bundle."""
    detectors = out.parent / f"{out.name}-detectors"
    detectors.mkdir(parents=True, exist_ok=True)
    entries = []
    for candidate in sorted(candidates, key=lambda c: c is not chosen):
        assert candidate.detector is not None
        path = detectors / f"{candidate.name}.json"
        write_detectors(path, [candidate.detector])
        artifacts = (candidate.loaded.path,) + (() if candidate.partner is None else (candidate.partner.loaded.path,))
        entries.append(SpeculativeEntry(candidate.name, artifacts, path))
    return write_bundle(out, speculative=entries, master=master, cloud_model=master, device=device, link=link,
                        server_s=server_s)  # fmt: skip


def _camera(test: Dataset, clock: ManualClock, frame_s: float, prefix: str) -> Iterator[EdgeInput]:
    """Test images as camera frames: the runtime's clock moves one frame interval before each."""
    for index, image in enumerate(test.images):
        clock.advance(frame_s)
        yield EdgeInput(f"{prefix}{index}", image, stream="camera")


def run_live_links(
    bundle: Bundle,
    *,
    candidates: Sequence[Candidate],
    master: Candidate,
    server_target: str,
    model_name: str,
    links: Sequence[str],
    test: Dataset,
    fps: float,
    objective: str = "energy",
    device_master: bool = True,
) -> list[LiveLinkRun]:
    """The test inputs through the selector-driven runtime on each emulated link.

    With ``device_master`` the master is also on the device, so recoveries (and whole inputs) can
    run there (M&MNet's placement); without it, every recovery crosses the link (SIEVE's).
    """
    entries = [m for m in bundle.local_models if m.role != "master"]
    ordered = sorted(candidates, key=lambda c: [e.id for e in entries].index(c.name))
    speculative = [
        LocalModel(e.id, c.runner, c.detector, latency_s=e.latency_s, energy_mj=e.energy_mj)
        for e, c in zip(entries, ordered, strict=True)
    ]
    assert bundle.master is not None
    on_device = LocalModel(
        "master", master.runner, latency_s=bundle.master.latency_s, energy_mj=bundle.master.energy_mj
    )
    runs = []
    for name in links:
        profile = get_link_profile(name)
        clock = ManualClock()
        with (
            LinkEmulator(server_target, profile) as emulator,
            CloudClient(emulator.target, model_name=model_name) as client,
        ):
            runtime = EdgeRuntime(
                speculative=speculative,
                master=on_device if device_master else None,
                cloud=client,
                objective=objective,
                selector=True,
                link=LinkEstimate(profile),
                payload=bundle.payload,
                history=SpeculationHistory(),
                clock=clock,
            )
            prefix = f"live-{name}-{'device' if device_master else 'cloud'}/"
            records = list(runtime.stream(_camera(test, clock, 1 / fps, prefix)))
            stats = emulator.stats()
        masters = "device + cloud" if device_master else "cloud"
        runs.append(LiveLinkRun(profile.name, masters, records, test.labels, stats.bytes_up, stats.bytes_down))
    return runs


def live_lines(runs: Sequence[LiveLinkRun], *, objective: str, fps: float) -> list[str]:
    """The report's section: per link, what the selector chose and what the live run cost."""
    lines = [
        f"Edge runtime live on emulated links (selector on, objective {objective}; real server behind a loopback "
        f"link emulator; camera at {fps:g} frame/s on the runtime's clock)",
        f"  {'link':<6} {'master on':<15} {'decisions':<24} {'kept':>5} {'recovered cloud/device':>23} "
        f"{'cloud calls':>12} {'flagged':>8} {'mean ms':>8} {'accuracy':>9}",
    ]
    for run in runs:
        decisions = ", ".join(f"{plan} {count}" for plan, count in run.decisions().most_common())
        recovered = f"{run.count(Route.ESCALATED)} / {run.count(Route.DEVICE_MASTER, ran_local=True)}"
        lines.append(
            f"  {run.link:<6} {run.masters:<15} {decisions:<24} {run.count(Route.LOCAL):>5} {recovered:>23} "
            f"{run.cloud_calls:>12} {run.flagged:>8} {run.latency_ms().mean():>8.2f} {100 * run.accuracy:>8.2f}%"
        )
    lines.append(
        "  decisions: the plan per input (speculate with a model, the cloud master, or the master on the device); "
        "recoveries go where the master is cheaper now; mean ms: live, host compute + emulated network"
    )
    return lines
