"""A minion pair as one local model (M&MNet, thesis 5.2): both minions run, their logits are stacked.

The edge runtime treats a pair like a single speculative model: ``logits`` returns ``(N, 2, K)``,
which the detector's ``pair`` policy reads (escalate when either minion is unconfident or the two
disagree; thesis 5.2.3), so nothing downstream needs a special case.
"""

from __future__ import annotations

import numpy as np

from specedge.backends.runners import ModelRunner
from specedge.errors import ConfigError

__all__ = ["PairRunner"]


class PairRunner:
    """Two runners over the same images; logits ``(N, 2, K)``, first minion first."""

    def __init__(self, first: ModelRunner, second: ModelRunner) -> None:
        self.first, self.second = first, second
        if first.backend != second.backend:
            self._backend = f"{first.backend}+{second.backend}"
        else:
            self._backend = first.backend
        shapes = {str(getattr(r, "image_shape", None)) for r in (first, second)}
        if len(shapes) > 1:
            raise ConfigError(f"a minion pair must read the same images; got input shapes {sorted(shapes)}")

    @property
    def backend(self) -> str:
        """Both minions' backend (``a+b`` when they differ)."""
        return self._backend

    def logits(self, images: np.ndarray) -> np.ndarray:
        """``(N, 2, K)`` logits of both minions."""
        first, second = self.first.logits(images), self.second.logits(images)
        if first.shape != second.shape:
            raise ConfigError(f"the minions disagree on the output shape: {first.shape} vs {second.shape}")
        return np.stack([first, second], axis=1)
