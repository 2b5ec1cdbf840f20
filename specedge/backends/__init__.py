"""Device backends: torch eager (the reference) and ONNX Runtime, chosen per model (thesis 4.4).

``export_onnx`` turns a classifier into an ONNX graph, the runners execute a model on either
backend, and ``choose_backend`` picks one after a parity check and a batch-1 latency
measurement, recording why in a :class:`BackendChoice`; ``runner_for`` does the same for any
artifact (an int8 one runs on ONNX Runtime only).
"""

from specedge.backends.artifacts import runner_for
from specedge.backends.export import ONNX_OPSET, export_onnx
from specedge.backends.pair import PairRunner
from specedge.backends.runners import ModelRunner, OnnxRunner, TorchRunner
from specedge.backends.selection import (
    BACKENDS,
    BackendChoice,
    Parity,
    choose_backend,
    measure_latency_us,
    parity_check,
)

__all__ = [
    "BACKENDS",
    "ONNX_OPSET",
    "BackendChoice",
    "ModelRunner",
    "OnnxRunner",
    "PairRunner",
    "Parity",
    "TorchRunner",
    "choose_backend",
    "export_onnx",
    "measure_latency_us",
    "parity_check",
    "runner_for",
]
