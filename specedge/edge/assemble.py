"""Build an :class:`~specedge.edge.runtime.EdgeRuntime` from an edge bundle (issue 9, item 11).

The bundle (:mod:`.bundle`) holds everything the device needs; this module turns it into the
runtime's parts, in one place, so ``specedge edge``, the demo and the benchmarks assemble the same
device:

    speculative and pair entries -> LocalModel (runner, default detector, relaxed detector, costs)
    the master entry             -> the device master (unless ``device_master=False``)
    payload, link profile        -> the selector's Payload and LinkEstimate
    history_window_s             -> SpeculationHistory (None: off)

A model whose detector file holds no detector with a lower target than its default has no relaxed
detector; that is an error only if power-saving mode is chosen (the policy raises ConfigError then,
naming the models), so a bundle calibrated at one target still runs in every other mode.
"""

from __future__ import annotations

import time

import numpy as np

from specedge.edge.bundle import Bundle
from specedge.edge.clock import Clock
from specedge.edge.cloud_client import CloudClient
from specedge.edge.history import SpeculationHistory
from specedge.edge.link_estimate import LinkEstimate
from specedge.edge.policy import Mode
from specedge.edge.runtime import EdgeRuntime, LocalModel
from specedge.edge.selector import Objective
from specedge.simulator.links import LinkProfile, get_link_profile

__all__ = ["local_models", "runtime_from_bundle"]


def local_models(
    bundle: Bundle,
    *,
    device_master: bool = True,
    threads: int = 1,
    val_images: np.ndarray | None = None,
) -> tuple[list[LocalModel], LocalModel | None]:
    """The bundle's speculative models (in bundle order) and its master, loaded on their device backends.

    ``val_images`` (uint8 ``(N, C, H, W)``) feed each backend's parity check and timing (see
    :meth:`Bundle.load_runners`); the master is not loaded when ``device_master`` is False.
    """
    wanted = [m.id for m in bundle.local_models if m.role != "master" or device_master]
    runners = bundle.load_runners(threads=threads, val_images=val_images, only=wanted)
    detectors = bundle.detectors()
    relaxed = bundle.relaxed_detectors()
    speculative = [
        LocalModel(
            m.id,
            runners[m.id],
            detectors[m.id],
            latency_s=m.latency_s,
            energy_mj=m.energy_mj,
            relaxed_detector=relaxed.get(m.id),
        )
        for m in bundle.local_models
        if m.role != "master"
    ]
    entry = bundle.master
    master = None
    if entry is not None and device_master:
        master = LocalModel(entry.id, runners[entry.id], latency_s=entry.latency_s, energy_mj=entry.energy_mj)
    return speculative, master


def runtime_from_bundle(
    bundle: Bundle,
    *,
    cloud: CloudClient | None,
    mode: Mode | str = Mode.NORMAL,
    objective: Objective | str = "energy",
    selector: bool = True,
    link: LinkProfile | None = None,
    history_window_s: float | None = 0.1,
    device_master: bool = True,
    threads: int = 1,
    val_images: np.ndarray | None = None,
    clock: Clock = time.perf_counter,
) -> EdgeRuntime:
    """The edge runtime the bundle describes, talking to ``cloud`` (None: nothing leaves the device).

    Args:
        bundle: a bundle from :func:`~specedge.edge.bundle.read_bundle`.
        cloud: a client for the cloud master (the bundle's ``cloud_model`` name), or None.
        mode: the user's mode; power-saving needs a relaxed detector for every speculative model.
        objective: what the selector minimises ("latency", "energy", "mix:W").
        selector: choose per input (True) or always speculate with the first model (False).
        link: the link the estimate starts from; None: the bundle's default profile.
        history_window_s: speculation history window in seconds; None turns the history off.
        device_master: put the bundle's master (if it has one) on the device.
        threads: threads per local model.
        val_images: images for the backends' parity check and timing (random ones if None).
        clock: seconds on a monotonic scale, shared by the runtime and its estimates.

    Raises:
        ConfigError: the mode cannot run with these parts (e.g. power-saving without relaxed detectors).
    """
    speculative, master = local_models(bundle, device_master=device_master, threads=threads, val_images=val_images)
    return EdgeRuntime(
        speculative=speculative,
        master=master,
        cloud=cloud,
        mode=mode,
        objective=objective,
        selector=selector,
        link=LinkEstimate(link if link is not None else get_link_profile(bundle.link)),
        payload=bundle.payload,
        history=None if history_window_s is None else SpeculationHistory(window_s=history_window_s),
        clock=clock,
    )
