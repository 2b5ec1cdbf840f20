"""Deriving speculative models from a master model.

Every pass is a function ``(master, ...) -> (speculative_model, report)``. The foundation ships
knowledge distillation into a smaller zoo architecture; SIEVE's per-layer custom float formats
and int8 arrive as further passes with the same shape.
"""

from specedge.compression.distillation import DistillationReport, distill, distillation_loss

__all__ = ["DistillationReport", "distill", "distillation_loss"]
