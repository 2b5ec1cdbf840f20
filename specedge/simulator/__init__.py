"""Offline simulation of SpecEdge against cloud-only and mobile-only (thesis chapter 4).

Parts, each in its own module (``docs/ARCHITECTURE.md`` has the map):

* links and radios: :mod:`.links` (named 3G / LTE / WiFi / 5G links, connection handshakes),
  :mod:`.radio` and :mod:`.radio_profiles` (Huang 2012 and ARO power models, RRC state machines),
  :mod:`.channels` and :mod:`.traces` (constant-rate and trace-driven capacity), :mod:`.wire`
  (bytes on the wire of a ModelInfer, zstd compression);
* time: :mod:`.arrivals` (frame rate, Poisson, recorded), :mod:`.stream` (the replay's input and
  output), :mod:`.replay` (the time-ordered replay; :mod:`.replay_reference` and :mod:`.replay_fast`);
* devices: :mod:`.device` (named device profiles, analytic roofline time and energy per layer).

Measuring models on this machine and the per-layer latency regression import torch and
scikit-learn, so they are not re-exported here: use :mod:`.measure` and :mod:`.latency_model`.
The full-system evaluation (:mod:`.system`: SpecEdge against cloud-only and mobile-only with a
selector; :mod:`.report`, :mod:`.plots`) sits on the replay; :mod:`.workloads` builds its input
from real models, outputs and edge records (it imports torch).
"""

from specedge.simulator.arrivals import constant_rate_arrivals, poisson_arrivals, recorded_arrivals
from specedge.simulator.channels import Channel, ConstantRate
from specedge.simulator.device import (
    DEVICE_PROFILES,
    DeviceProfile,
    LayerCost,
    ModelCost,
    get_device_profile,
    layer_cost,
    model_cost,
)
from specedge.simulator.links import LINK_PROFILES, ConnectionProfile, LinkProfile, get_link_profile
from specedge.simulator.radio import Radio, RadioProfile, TransferPowerModel
from specedge.simulator.radio_profiles import RADIO_PROFILES, get_radio_profile
from specedge.simulator.replay import replay
from specedge.simulator.replay_fast import replay_vectorised
from specedge.simulator.replay_reference import replay_reference
from specedge.simulator.stream import ModelKind, ReplayResult, RequestStream
from specedge.simulator.traces import TraceChannel, load_mahimahi, load_rate_trace, load_trace
from specedge.simulator.wire import WireFraming, compression_ratio, infer_message_sizes, wire_bytes

__all__ = [
    "DEVICE_PROFILES",
    "LINK_PROFILES",
    "RADIO_PROFILES",
    "Channel",
    "ConnectionProfile",
    "ConstantRate",
    "DeviceProfile",
    "LayerCost",
    "LinkProfile",
    "ModelCost",
    "ModelKind",
    "Radio",
    "RadioProfile",
    "ReplayResult",
    "RequestStream",
    "TraceChannel",
    "TransferPowerModel",
    "WireFraming",
    "compression_ratio",
    "constant_rate_arrivals",
    "get_device_profile",
    "get_link_profile",
    "get_radio_profile",
    "infer_message_sizes",
    "layer_cost",
    "load_mahimahi",
    "load_rate_trace",
    "load_trace",
    "model_cost",
    "poisson_arrivals",
    "recorded_arrivals",
    "replay",
    "replay_reference",
    "replay_vectorised",
    "wire_bytes",
]
