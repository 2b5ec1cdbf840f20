"""Shared fixtures: the ../shared folder, seeded generators, single-threaded torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"

# Tests are small; one thread avoids oversubscribing the 2-core CI machine.
torch.set_num_threads(1)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the calling test with the reason it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"optional shared data not present: {path}")
    return path


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded numpy generator."""
    return np.random.default_rng(0)
