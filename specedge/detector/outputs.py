"""Stored model outputs: what a detector is fitted and judged on.

A detector never needs images: it needs, per input, the speculative model's logits (one model,
or the two minions of an M&MNet pair), the master's answer and, when accuracy is certified,
the label. Keeping these tables lets calibration, benchmarks and the guarantee's re-split test
run in milliseconds, and lets a deployed edge re-calibrate on traffic the master has answered
without labels (thesis section 4.3.3: "determines the confidence distributions ... on the
validation set during training and saves them in the misspeculation detector").

On disk a table is an ``.npz`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specedge.errors import ConfigError

__all__ = ["ModelOutputs"]


@dataclass(frozen=True)
class ModelOutputs:
    """Per-input outputs of the speculative side and the master on one split.

    ``speculative_logits`` is ``(N, K)`` for one speculative model or ``(N, M, K)`` for M minions;
    ``master_predictions`` and ``labels`` are ``(N,)``; ``labels`` is None for unlabelled traffic.
    """

    speculative_logits: np.ndarray
    master_predictions: np.ndarray
    labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        logits = np.asarray(self.speculative_logits)
        n = logits.shape[0] if logits.ndim else 0
        if logits.ndim not in (2, 3) or logits.shape[-1] < 2:
            raise ConfigError(
                f"speculative logits must be (N, K) or (N, minions, K) with K >= 2 classes; got shape {logits.shape}"
            )
        if not np.isfinite(logits).all():
            raise ConfigError("speculative logits contain NaN or infinite values")
        checks = {"master predictions": self.master_predictions, "labels": self.labels}
        for what, given in checks.items():
            if given is None:
                continue
            values = np.asarray(given)
            if values.shape != (n,) or not np.issubdtype(values.dtype, np.integer):
                raise ConfigError(f"{what} must be {n} integers (one per input); got {values.dtype} {values.shape}")
            if n and (values.min() < 0 or values.max() >= logits.shape[-1]):
                raise ConfigError(f"{what} must be class indices in 0..{logits.shape[-1] - 1}")

    def __len__(self) -> int:
        return int(self.master_predictions.shape[0])

    @property
    def num_classes(self) -> int:
        """Classes of the logits."""
        return int(self.speculative_logits.shape[-1])

    @property
    def is_pair(self) -> bool:
        """Whether the speculative side is several minions."""
        return bool(self.speculative_logits.ndim == 3)

    def subset(self, index: np.ndarray) -> ModelOutputs:
        """The rows ``index`` (a boolean mask or integer positions)."""
        return ModelOutputs(
            self.speculative_logits[index],
            self.master_predictions[index],
            None if self.labels is None else self.labels[index],
        )

    def without_labels(self) -> ModelOutputs:
        """The same outputs as unlabelled traffic the master answered."""
        return ModelOutputs(self.speculative_logits, self.master_predictions, None)

    def save(self, path: Path) -> Path:
        """Write an ``.npz`` (no pickled objects)."""
        arrays = {"speculative_logits": self.speculative_logits, "master_predictions": self.master_predictions}
        if self.labels is not None:
            arrays["labels"] = self.labels
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **arrays)  # type: ignore[arg-type]
        return path

    @classmethod
    def load(cls, path: Path) -> ModelOutputs:
        """Read a table written by :meth:`save`; :class:`ConfigError` names what is wrong."""
        try:
            with path.open("rb") as handle:
                data = np.load(handle, allow_pickle=False)
                if not isinstance(data, np.lib.npyio.NpzFile):
                    raise ConfigError(f"{path}: not a model-outputs table (an .npz with named arrays)")
                with data:
                    missing = {"speculative_logits", "master_predictions"} - set(data.files)
                    if missing:
                        raise ConfigError(f"{path}: not a model-outputs table (missing {', '.join(sorted(missing))})")
                    labels = data["labels"] if "labels" in data.files else None
                    return cls(data["speculative_logits"], data["master_predictions"], labels)
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise ConfigError(f"{path}: cannot read model outputs ({exc})") from exc
