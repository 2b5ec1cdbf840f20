"""Stored model outputs: round trip, and clear errors for tables that cannot be used."""

from __future__ import annotations

import numpy as np
import pytest

from specedge.detector import ModelOutputs
from specedge.errors import ConfigError


def test_round_trip_with_and_without_labels(tmp_path):
    rng = np.random.default_rng(0)
    outputs = ModelOutputs(
        rng.normal(size=(5, 2, 3)).astype(np.float32), np.array([0, 1, 2, 1, 0]), np.array([0, 1, 1, 1, 0])
    )
    again = ModelOutputs.load(outputs.save(tmp_path / "pair.npz"))
    np.testing.assert_array_equal(again.speculative_logits, outputs.speculative_logits)
    assert again.is_pair and again.labels is not None
    unlabelled = ModelOutputs.load(outputs.without_labels().save(tmp_path / "unlabelled.npz"))
    assert unlabelled.labels is None and len(unlabelled) == 5


@pytest.mark.parametrize(
    ("logits", "master", "message"),
    [
        (np.zeros((3, 1)), np.zeros(3, dtype=int), "K >= 2"),
        (np.zeros((3, 4)), np.zeros(2, dtype=int), "master predictions must be 3 integers"),
        (np.zeros((3, 4)), np.array([0, 1, 9]), r"class indices in 0\.\.3"),
        (np.full((2, 4), np.nan), np.zeros(2, dtype=int), "NaN"),
    ],
)
def test_inconsistent_tables_are_refused(logits, master, message):
    with pytest.raises(ConfigError, match=message):
        ModelOutputs(logits, master)


def test_files_that_are_not_tables_are_refused(tmp_path):
    (tmp_path / "text.npz").write_text("not a table")
    with pytest.raises(ConfigError, match="cannot read model outputs"):
        ModelOutputs.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    with pytest.raises(ConfigError, match="missing master_predictions, speculative_logits"):
        ModelOutputs.load(tmp_path / "other.npz")
    np.save(tmp_path / "plain.npy", np.zeros(3))
    with pytest.raises(ConfigError, match="not a model-outputs table"):
        ModelOutputs.load(tmp_path / "plain.npy")
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated zip")
    with pytest.raises(ConfigError, match="cannot read model outputs"):
        ModelOutputs.load(tmp_path / "broken.npz")
