"""Synthetic model outputs with a known structure, for detector tests that need many draws.

Each input has a latent difficulty; the speculative model's logits put a margin on the true
class that shrinks with difficulty (so low confidence means likely wrong, as for real CNNs),
and the master is right with a probability that also falls with difficulty (so some inputs are
correctable, some uncorrectable, and a few odd-correct). Drawing fresh samples from this
population stands in for re-splitting a large table of stored outputs, and a large reference
sample gives the population's true accuracy for any threshold.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit

from specedge.detector import ModelOutputs

NUM_CLASSES = 10


def draw_outputs(n: int, rng: np.random.Generator) -> ModelOutputs:
    """``n`` i.i.d. inputs of the synthetic population."""
    labels = rng.integers(0, NUM_CLASSES, n)
    difficulty = rng.normal(0.0, 1.0, n)
    logits = rng.normal(0.0, 1.0, (n, NUM_CLASSES))
    logits[np.arange(n), labels] += 4.0 - 2.0 * difficulty
    master_right = rng.random(n) < expit(4.5 - 1.5 * difficulty)
    wrong = (labels + rng.integers(1, NUM_CLASSES, n)) % NUM_CLASSES
    master = np.where(master_right, labels, wrong)
    return ModelOutputs(logits.astype(np.float32), master, labels)


@pytest.fixture(scope="session")
def population() -> ModelOutputs:
    """A large reference sample: its accuracies stand for the population's."""
    return draw_outputs(400_000, np.random.default_rng(12345))


def shifted_outputs(n: int, rng: np.random.Generator, *, harder_by: float) -> ModelOutputs:
    """The same population after a drift that makes every input ``harder_by`` more difficult."""
    outputs = draw_outputs(n, rng)
    labels = outputs.labels
    assert labels is not None
    logits = outputs.speculative_logits.copy()
    logits[np.arange(n), labels] -= 2.0 * harder_by
    return ModelOutputs(logits, outputs.master_predictions, labels)
