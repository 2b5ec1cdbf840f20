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


@pytest.fixture(scope="session")
def digits_models():
    """A tiny master and a distilled speculative model on scikit-learn digits (a few seconds)."""
    from specedge.compression import distill
    from specedge.data import load_dataset
    from specedge.training import TrainConfig, train_new

    splits = load_dataset("digits")
    config = TrainConfig(epochs=4, lr=5e-3)
    torch.manual_seed(0)
    master, _ = train_new("lenet5", splits, config, arch_options={"width": 0.5})
    speculative, _ = distill(master, splits, "lenet5", config, arch_options={"width": 0.25})
    return splits, master, speculative
