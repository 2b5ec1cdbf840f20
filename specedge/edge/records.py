"""What the edge returns per input: the answer, its provenance, and every timing (thesis 4.3, 5.2).

One :class:`InferenceRecord` per input, whatever happened: answered on the device, escalated to
the cloud master, sent straight to the cloud, answered by the master on the device, answered
locally because the cloud failed or the deadline was too short (``flag`` says why), or not
answered at all because the input itself was bad (``error``). ``None`` means "did not happen":
no local model ran, the cloud was not called. The simulator (:mod:`specedge.simulator.workloads`),
the demo report and the ``specedge edge`` JSON-lines log all read this one format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

__all__ = ["FLAGS", "InferenceRecord", "Route"]


class Route(str, Enum):
    """Where one input was answered."""

    LOCAL = "local"  # a local speculative model's answer was kept (detector, history, or no recovery possible)
    ESCALATED = "escalated"  # ran locally, the detector doubted it, the cloud master answered
    CLOUD = "cloud"  # sent straight to the cloud master without running locally
    DEVICE_MASTER = "device-master"  # the master ran on the device (placement, private mode, or cloud slow)


#: Why an answer carries less than the system's guarantee. The cloud failure kinds come from
#: :mod:`specedge.errors` (``CloudError.kind``); the others are decisions of the policy.
FLAGS = {
    "unavailable": "the cloud could not be reached or failed",
    "timeout": "the cloud did not answer within the call's deadline",
    "overloaded": "the cloud refused the request as overloaded",
    "rejected": "the cloud rejected the request",
    "protocol": "the cloud's reply was malformed",
    "cloud-down": "the cloud failed recently; recovery waits for the next probe",
    "cloud-slow": "the cloud is slower than predicted; recovery suspended until a probe succeeds",
    "deadline": "the deadline left no time for recovery",
    "private": "private mode: nothing leaves the device and no master is on it",
    "no-recovery": "no master is reachable: neither a cloud client nor a master on the device",
}


@dataclass(frozen=True)
class InferenceRecord:
    """Everything measured about one input; the unit that reports, logs and simulators consume."""

    input_id: str
    stream: str  # inputs of one stream share speculation history
    start_s: float  # when the input was taken up, on the runtime's clock (seconds since it was created)
    route: Route | None  # None: the input could not be answered (see ``error``)
    prediction: int | None
    answered_by: str | None  # the model whose answer this is: a local model id, "device-master", or "cloud:NAME"
    confidence: float | None  # the speculative model's confidence (detector scale), if one ran
    verified: bool  # the answer is the master's (cloud or device)
    flag: str | None  # why the answer is below the guarantee (a key of FLAGS), None if it is not
    decision: str  # the policy's reason for this input's plan, e.g. "selector: speculate (lte)"
    local_model: str | None  # which speculative model ran, if any
    local_prediction: int | None
    cloud_prediction: int | None
    local_us: int | None  # local model(s) + detector on this device
    transfer_us: int | None  # cloud round trip minus server queue and compute: the network's share
    cloud_round_trip_us: int | None  # client-side time of the successful RPC
    cloud_queue_us: int | None  # server-reported wait before compute
    cloud_compute_us: int | None  # server-reported model time
    total_us: int
    deadline_us: int | None  # the input's deadline, relative to start_s
    request_bytes: int | None  # serialised ModelInferRequest
    response_bytes: int | None  # serialised ModelInferResponse
    attempts: int  # cloud calls made for this input (successful or not)
    cloud_failure: str | None  # the kind of the last failed cloud call (errors.CloudError.kind)
    audited: bool  # kept locally, and also sent to the master to audit the detector
    error: str | None = None  # the input itself was bad; nothing was answered

    @property
    def reached_cloud(self) -> bool:
        """Whether the cloud answered a request for this input (escalated, sent directly, or audited)."""
        return self.cloud_prediction is not None

    @property
    def outcome(self) -> str:
        """One of ok, flagged (answered below the guarantee) or error (not answered)."""
        if self.error is not None:
            return "error"
        return "ok" if self.flag is None else "flagged"

    @property
    def deadline_met(self) -> bool | None:
        """Whether the answer came within the deadline (None without one)."""
        return None if self.deadline_us is None else self.total_us <= self.deadline_us

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON/CSV-ready form."""
        d = asdict(self)
        d["route"] = None if self.route is None else self.route.value
        d["outcome"] = self.outcome
        return d
