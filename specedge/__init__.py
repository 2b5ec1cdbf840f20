"""SpecEdge: hybrid cloud-edge speculative CNN inference.

An edge device answers most inputs with a small *speculative* CNN; a misspeculation detector
sends low-confidence inputs over gRPC (KServe v2 protocol) to the full *master* CNN in the
cloud. See docs/ARCHITECTURE.md for the module map.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
