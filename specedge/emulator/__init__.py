"""Link emulation for live runs: real bytes on loopback, timed by the simulator's link model.

``specedge emulate`` (or :class:`LinkEmulator` in code) sits between the edge and the cloud server
and delays every byte as a :class:`~specedge.simulator.links.LinkProfile` says (bandwidth or trace,
propagation delay, optionally radio promotion), so a live run can be compared with the simulator's
prediction for the same link (issue 9, item 10).

    shaping   when a chunk comes out of the far end (pure; reuses the simulator's channels and radio)
    proxy     the asyncio TCP proxy that applies those times to real connections
    links     ``--link`` values: a profile name or a trace file
"""

from __future__ import annotations

from specedge.emulator.links import TRACE_BASE_LINK, resolve_link
from specedge.emulator.proxy import EmulatorStats, LinkEmulator, parse_address
from specedge.emulator.shaping import DirectionScheduler, RadioWakeup

__all__ = [
    "TRACE_BASE_LINK",
    "DirectionScheduler",
    "EmulatorStats",
    "LinkEmulator",
    "RadioWakeup",
    "parse_address",
    "resolve_link",
]
