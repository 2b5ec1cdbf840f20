"""Fixtures of the simulator tests: the shared network traces, when present."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_TRACES = Path(__file__).resolve().parents[2] / ".." / "shared" / "traces"


@pytest.fixture
def traces_dir() -> Path:
    """../shared/traces, or skip the test with the reason it is absent."""
    if not SHARED_TRACES.is_dir():
        pytest.skip(f"shared network traces not present: {SHARED_TRACES.resolve()}")
    return SHARED_TRACES
