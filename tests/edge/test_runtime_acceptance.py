"""The edge runtime against a real cloud server process on loopback: selector, history, deadlines, failures.

Issue 9's acceptance: only the inputs the policy chose are escalated; both history rules fire; a
deadline too short for recovery gives a local flagged answer; killing the server mid-run leaves
no input unanswered and marks the affected ones unverified; a frozen (SIGSTOP) server does not
stall the stream beyond the deadlines; after a restart escalations resume. Time that the policy
reads (history windows, probe back-off) is driven through the injected clock.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from specedge.backends import TorchRunner
from specedge.cloud.process import CloudServerProcess
from specedge.detector import MisspeculationDetector
from specedge.edge.clock import ManualClock
from specedge.edge.cloud_client import CloudClient
from specedge.edge.history import SpeculationHistory
from specedge.edge.link_estimate import LinkEstimate
from specedge.edge.records import InferenceRecord, Route
from specedge.edge.runtime import EdgeInput, EdgeRuntime, LocalModel
from specedge.emulator import LinkEmulator
from specedge.models import save_artifact
from specedge.simulator import get_link_profile
from specedge.training import predict_logits

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs POSIX signals")


@pytest.fixture(scope="module")
def world(digits_models, tmp_path_factory):
    """Master artifact, speculative model, a detector that doubts a fair share, and the test images."""
    splits, master, speculative = digits_models
    master_dir = save_artifact(tmp_path_factory.mktemp("cloud") / "master", master, dataset={}, metrics={})
    detector = MisspeculationDetector(quality="agreement", target=0.99, delta=None).fit(
        predict_logits(speculative, splits.val.images), predict_logits(master, splits.val.images).argmax(1)
    )
    images = splits.test.images
    spec_logits = predict_logits(speculative, images)
    doubtful = detector.escalate(spec_logits)
    agree = spec_logits.argmax(1) == predict_logits(master, images).argmax(1)
    assert doubtful.any() and (doubtful & agree).any() and (doubtful & ~agree).any(), "need both kinds of frames"
    return master_dir, master, speculative, detector, images, doubtful, agree


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(world) -> Iterator[CloudServerProcess]:
    with CloudServerProcess([world[0]]) as cloud:
        yield cloud


def _spec(world, *, latency_s: float = 0.001) -> LocalModel:
    _, _, speculative, detector, *_ = world
    return LocalModel("tiny", TorchRunner(speculative), detector, latency_s=latency_s, energy_mj=1.0)


def _served(cloud: CloudServerProcess, before: int) -> list[str]:
    return [e.request_id for e in cloud.request_log()[before:] if e.request_id != "warm-up"]


def test_the_selector_escalates_only_what_it_planned(world, server):
    *_, images, doubtful, _ = world
    with CloudClient(server.target, model_name="master") as client:
        # LTE: L_t ~ 60 ms dwarfs a 1 ms local model + P_r x L_t, so it speculates; the detector decides.
        lte = EdgeRuntime(
            speculative=[_spec(world)],
            cloud=client,
            selector=True,
            objective="latency",
            link=LinkEstimate(get_link_profile("lte")),
        )
        before = len(server.request_log())
        records = lte.run(images[:80], ids=[f"lte/{i}" for i in range(80)])
        assert all(r.decision.startswith("normal: speculate:tiny") for r in records)
        assert [r.route is Route.ESCALATED for r in records] == doubtful[:80].tolist()
        assert _served(server, before) == [r.input_id for r in records if r.route is Route.ESCALATED]
        # A local model slower than the whole round trip: every input goes straight to the cloud.
        slow = EdgeRuntime(
            speculative=[_spec(world, latency_s=5.0)],
            cloud=client,
            selector=True,
            objective="latency",
            link=LinkEstimate(get_link_profile("wifi")),
        )
        before = len(server.request_log())
        direct = slow.run(images[:10], ids=[f"wifi/{i}" for i in range(10)])
        assert all(r.route is Route.CLOUD and r.local_model is None and r.verified for r in direct)
        assert _served(server, before) == [r.input_id for r in direct]


def test_both_history_rules_fire(world, server):
    *_, images, doubtful, agree = world
    right = int(np.flatnonzero(doubtful & agree)[0])  # doubtful, but the master agrees
    wrong = int(np.flatnonzero(doubtful & ~agree)[0])  # doubtful, and the master disagrees
    clock = ManualClock()
    with CloudClient(server.target, model_name="master") as client:
        runtime = EdgeRuntime(
            speculative=[_spec(world)], cloud=client, history=SpeculationHistory(window_s=0.5), clock=clock
        )
        runtime.warm_up(images[0])
        first = runtime.classify(images[right], input_id="h/0", stream="cam")
        trusted = runtime.classify(images[right], input_id="h/1", stream="cam")
        clock.advance(10.0)  # a new scene
        missed = runtime.classify(images[wrong], input_id="h/2", stream="cam")
        direct = runtime.classify(images[wrong], input_id="h/3", stream="cam")
        clock.advance(10.0)
        alone = runtime.classify(images[wrong], input_id="h/4", stream="cam")
    assert first.route is Route.ESCALATED and first.cloud_prediction == first.local_prediction
    assert trusted.route is Route.LOCAL and trusted.attempts == 0 and "master agreed" in trusted.decision
    assert missed.route is Route.ESCALATED and missed.cloud_prediction != missed.local_prediction
    assert direct.route is Route.CLOUD and direct.local_model is None and "master disagreed" in direct.decision
    assert alone.route is Route.ESCALATED and "history" not in alone.decision  # outside the window


def test_a_deadline_too_short_for_recovery_answers_locally_flagged(world, server):
    *_, images, doubtful, _ = world
    index = int(np.flatnonzero(doubtful)[0])
    with CloudClient(server.target, model_name="master") as client:
        runtime = EdgeRuntime(speculative=[_spec(world)], cloud=client, link=LinkEstimate(get_link_profile("3g")))
        runtime.warm_up(images[0])
        before = len(server.request_log())
        late = runtime.classify(images[index], input_id="d/0", deadline_s=0.05)  # 3G needs > 200 ms
        roomy = runtime.classify(images[index], input_id="d/1", deadline_s=30.0)
    assert late.route is Route.LOCAL and late.flag == "deadline" and late.attempts == 0 and not late.verified
    assert late.prediction == late.local_prediction and late.deadline_us == 50_000
    assert roomy.route is Route.ESCALATED and roomy.flag is None and roomy.verified
    assert _served(server, before) == ["d/1"]


def _answered(records: list[InferenceRecord]) -> bool:
    return all(r.prediction is not None and r.error is None for r in records)


def test_killing_the_server_mid_run_loses_no_input_and_a_restart_resumes(world):
    master_dir, *_, images, _, _ = world
    port = _free_port()
    clock = ManualClock()
    first = CloudServerProcess([master_dir], port=port).start()
    try:
        with CloudClient(first.target, model_name="master", timeout_s=5.0) as client:
            runtime = EdgeRuntime(speculative=[_spec(world)], cloud=client, mode="mission-critical", clock=clock)

            def frames() -> Iterator[EdgeInput]:
                for i in range(30):
                    if i == 10:
                        assert first.pid is not None
                        os.kill(first.pid, signal.SIGKILL)
                    yield EdgeInput(f"k/{i}", images[i])

            records = list(runtime.stream(frames()))
            assert [r.input_id for r in records] == [f"k/{i}" for i in range(30)]  # each once, in order
            assert _answered(records)
            assert all(r.route is Route.CLOUD and r.verified for r in records[:10])
            after = records[10:]
            assert all(r.route is Route.LOCAL and not r.verified and r.flag is not None for r in after)
            assert {r.flag for r in after} <= {"unavailable", "timeout", "cloud-down"}
            assert after[0].flag in {"unavailable", "timeout"} and after[0].attempts == 1
            assert sum(r.attempts for r in after) < len(after)  # backing off, not hammering a dead server

            with CloudServerProcess([master_dir], port=port):
                resumed = []
                for i in range(200):  # the channel reconnects within its own back-off (< 2 s)
                    clock.advance(60.0)  # past any probe back-off
                    resumed.append(runtime.classify(images[i % len(images)], input_id=f"r/{i}"))
                    if resumed[-1].verified:
                        break
                assert resumed[-1].verified and resumed[-1].route is Route.CLOUD
                assert _answered(resumed)
                again = runtime.classify(images[0], input_id="r/after")
                assert again.verified and again.route is Route.CLOUD
    finally:
        first.stop()


def test_a_frozen_server_does_not_stall_the_stream_beyond_its_deadlines(world):
    master_dir, *_, images, _, _ = world
    clock = ManualClock()
    with CloudServerProcess([master_dir]) as cloud, CloudClient(cloud.target, model_name="master") as client:
        runtime = EdgeRuntime(
            speculative=[_spec(world)],
            cloud=client,
            mode="mission-critical",
            link=LinkEstimate(get_link_profile("wifi")),
            clock=clock,
        )
        runtime.warm_up(images[0])
        assert cloud.pid is not None
        os.kill(cloud.pid, signal.SIGSTOP)
        try:
            frozen = runtime.run(images[:8], ids=[f"f/{i}" for i in range(8)], deadline_s=0.5)
        finally:
            os.kill(cloud.pid, signal.SIGCONT)
        assert _answered(frozen)
        assert all(r.route is Route.LOCAL and r.flag in {"timeout", "cloud-down"} for r in frozen)
        # Each call's timeout came from the estimate capped by the slack: no input waited the client's 10 s.
        assert all(r.total_us < 1.5 * 500_000 for r in frozen)
        assert frozen[0].flag == "timeout"
        thawed = []
        for i in range(100):
            clock.advance(60.0)
            thawed.append(runtime.classify(images[i], input_id=f"t/{i}", deadline_s=5.0))
            if thawed[-1].verified:
                break
        assert thawed[-1].verified and thawed[-1].route is Route.CLOUD


def test_one_bad_input_does_not_stop_the_stream(world, server, tmp_path: Path):
    *_, images, _, _ = world
    with CloudClient(server.target, model_name="master") as client:
        runtime = EdgeRuntime(speculative=[_spec(world)], cloud=client)
        inputs = [
            EdgeInput("ok/0", images[0]),
            EdgeInput("bad/shape", np.zeros((3, 8, 8), dtype=np.uint8)),
            EdgeInput("bad/file", None, error=f"cannot decode image {tmp_path / 'x.png'}: truncated"),
            EdgeInput("ok/1", images[1]),
        ]
        records = list(runtime.stream(inputs))
    assert [r.outcome for r in records] == ["ok", "error", "error", "ok"]
    assert records[1].route is None and "(N, 1, 8, 8)" in (records[1].error or "")


def test_a_slow_cloud_moves_recovery_to_the_device_master_until_a_probe(world, server):
    """SIEVE's server-load detection with M&MNet's answer to it: round trips far above the estimate."""
    _, master, _, _, images, doubtful, _ = world
    frames = [images[i] for i in np.flatnonzero(doubtful)[:6]]
    slow = dataclasses.replace(get_link_profile("lte"), rtt_ms=600.0)  # ten times the round trip believed
    clock = ManualClock()
    with LinkEmulator(server.target, slow) as emulator, CloudClient(emulator.target, model_name="master") as client:
        runtime = EdgeRuntime(
            speculative=[_spec(world)],
            master=LocalModel("master", TorchRunner(master), latency_s=0.01, energy_mj=50.0),
            cloud=client,
            # Learn slowly and wait long, so the slow round trips are seen as load, not learnt or timed out.
            link=LinkEstimate(get_link_profile("lte"), smoothing=0.01),
            timeouts={"timeout_margin_s": 5.0},
            clock=clock,
        )
        runtime.warm_up(images[0])
        first = [runtime.classify(frame, input_id=f"slow/{i}") for i, frame in enumerate(frames[:3])]
        suspended = runtime.classify(frames[3], input_id="slow/3")
        clock.advance(5.0)  # a probe is due
        probe = runtime.classify(frames[4], input_id="slow/4")
        after = runtime.classify(frames[5], input_id="slow/5")
    assert all(r.route is Route.ESCALATED for r in first)  # the first slow round trips are still taken
    assert runtime.policy.health.state.value == "slow"
    assert suspended.route is Route.DEVICE_MASTER and suspended.attempts == 0 and "cloud-slow" in suspended.decision
    assert suspended.verified and suspended.flag is None
    assert probe.route is Route.ESCALATED and probe.attempts == 1  # the probe: still slow, so ...
    assert after.route is Route.DEVICE_MASTER and after.attempts == 0  # ... recovery stays on the device
