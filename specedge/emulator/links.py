"""Turn a ``--link`` value into a simulator :class:`~specedge.simulator.links.LinkProfile`.

A value is either a profile name from :data:`~specedge.simulator.links.LINK_PROFILES` or the path
of a capacity trace (Mahimahi or time/throughput, :func:`~specedge.simulator.traces.load_trace`).
A trace drives both directions of the LTE profile (its RTT and radio stay), exactly as
``specedge simulate --trace-up/--trace-down`` builds its links: through
:func:`specedge.simulator.sweep.with_traces`, so each direction starts at a random point of the
trace's period drawn from ``seed`` (real throughput is autocorrelated, so a contiguous segment is
replayed, not the same opening seconds every time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specedge.errors import ConfigError
from specedge.simulator.links import LINK_PROFILES, LinkProfile, get_link_profile
from specedge.simulator.sweep import with_traces

__all__ = ["TRACE_BASE_LINK", "resolve_link"]

#: The named profile whose RTT and radio a trace-driven link keeps.
TRACE_BASE_LINK = "lte"


def resolve_link(spec: str, *, seed: int = 0) -> LinkProfile:
    """The link a ``--link`` value names: a profile name, or a trace file applied to both directions of LTE.

    Raises:
        ConfigError: ``spec`` is neither a profile name nor an existing file.
        TraceError: the file exists but is not a readable trace (the message names it).
    """
    if spec.lower() in LINK_PROFILES:
        return get_link_profile(spec)
    path = Path(spec)
    if not path.exists():
        raise ConfigError(
            f"unknown link {spec!r}: not a profile ({', '.join(LINK_PROFILES)}) and no such trace file; "
            "pass a profile name or the path of a Mahimahi or time/Mbps trace"
        )
    base = get_link_profile(TRACE_BASE_LINK)
    return with_traces(base, uplink=path, downlink=path, rng=np.random.default_rng(seed))
