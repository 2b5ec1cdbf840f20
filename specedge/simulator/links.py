"""Links: two channels, a round trip, a radio and a connection policy, with named profiles.

A :class:`LinkProfile` is everything the replay needs to price one escalation: the uplink and
downlink channels (constant rate, SIEVE's model, or trace-driven), the round-trip time, the radio
power model (:mod:`specedge.simulator.radio`) and how requests share a connection
(:class:`ConnectionProfile`). Units are in the names: ``rtt_ms``, channel rates in Mbit/s.

Named profiles (anchors.md section 4; each value's mark next to it):

    3g    up 1.1 Mbps [R Neurosurgeon], down 2.02 [V Mahimahi UMTS mean], RTT 200 ms, huang2012-3g
    lte   up 5.85 Mbps [R Neurosurgeon], down 13 [V Huang 2012 median], RTT 60 ms, huang2012-lte
    wifi  18.88 Mbps both ways [R Neurosurgeon; down assumed symmetric], RTT 20 ms, huang2012-wifi
    5g    assumed: up 20 Mbps, down 100 Mbps, RTT 30 ms, radio 5g-assumed

RTTs are mid-range values of public tools (LTE 40-85 ms, 3G 120-300 ms, WiFi a few ms plus a WAN leg).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from specedge.errors import ConfigError
from specedge.simulator.channels import Channel, ConstantRate
from specedge.simulator.radio import RadioProfile
from specedge.simulator.radio_profiles import RADIO_PROFILES, get_radio_profile
from specedge.simulator.wire import WireFraming, wire_bytes

__all__ = ["LINK_PROFILES", "ConnectionProfile", "LinkProfile", "get_link_profile"]

TlsVersion = Literal["1.2", "1.3"]
_TLS_RTTS = {None: 0, "1.3": 1, "1.2": 2}  # full handshakes (RFC 8446 / RFC 5246), no resumption

# Bytes of opening a connection (before IP/TCP headers of the payload segments).
_TCP_HANDSHAKE_UP_BYTES = 60 + 52  # SYN with MSS/SACK/timestamps/window-scale options, then the ACK
_TCP_HANDSHAKE_DOWN_BYTES = 60  # SYN-ACK
_TLS_UP_BYTES = 600  # assumed: ClientHello (~500 B) and the client's Finished
_TLS_DOWN_BYTES = 4000  # assumed: ServerHello ... Finished with a two-certificate RSA-2048 chain
# Measured (grpcio 1.85, byte-counting proxy): the first call on a new channel carries this much more
# than a warm one: connection preface, SETTINGS and their ACKs, full HPACK literal headers, BDP pings.
_HTTP2_SETUP_UP_BYTES = 367
_HTTP2_SETUP_DOWN_BYTES = 178


@dataclass(frozen=True)
class ConnectionProfile:
    """How escalations share a connection, and what opening one costs.

    gRPC keeps its HTTP/2 channel open, so the TCP and TLS handshakes are paid when the first
    request opens it and again only after it was idle longer than ``idle_timeout_s`` (gRPC's client
    idle timeout defaults to 30 minutes; carrier NATs may drop idle flows sooner). ``reuse=False``
    pays them on every request, as a fresh HTTPS connection per upload would.

    Args:
        tls_version: "1.3" (1 extra RTT), "1.2" (2 extra RTTs) or None (plaintext).
        reuse: whether requests share one kept-open connection.
        idle_timeout_s: idle seconds after which the connection must be reopened; None for never.
        framing: per-request framing constants (see :mod:`specedge.simulator.wire`).
    """

    tls_version: TlsVersion | None = "1.3"
    reuse: bool = True
    idle_timeout_s: float | None = 1800.0
    framing: WireFraming = field(default_factory=WireFraming)

    def __post_init__(self) -> None:
        if self.tls_version not in _TLS_RTTS:
            raise ConfigError(f"unknown TLS version {self.tls_version!r}; expected one of: 1.2, 1.3, None")
        if self.idle_timeout_s is not None and not self.idle_timeout_s >= 0:
            raise ConfigError(f"idle_timeout_s must be >= 0 seconds or None; got {self.idle_timeout_s}")

    @property
    def handshake_rtts(self) -> int:
        """Round trips before the first request can be sent: TCP's one plus TLS's."""
        return 1 + _TLS_RTTS[self.tls_version]

    @property
    def setup_bytes(self) -> tuple[int, int]:
        """Uplink and downlink bytes of opening a connection (TCP, TLS, HTTP/2 set-up), headers included."""
        tls_up, tls_down = (_TLS_UP_BYTES, _TLS_DOWN_BYTES) if self.tls_version else (0, 0)
        up = tls_up + _HTTP2_SETUP_UP_BYTES
        down = tls_down + _HTTP2_SETUP_DOWN_BYTES
        header, mss = self.framing.tcp_ip_header_bytes, self.framing.mss_bytes
        return (
            _TCP_HANDSHAKE_UP_BYTES + up + header * -(-up // mss),
            _TCP_HANDSHAKE_DOWN_BYTES + down + header * -(-down // mss),
        )

    def needs_handshake(self, idle_s: np.ndarray) -> np.ndarray:
        """Whether a request must open a connection, given seconds since the previous one ended (inf: none)."""
        idle_s = np.asarray(idle_s, dtype=np.float64)
        if not self.reuse:
            return np.ones(idle_s.shape, dtype=bool)
        timeout = math.inf if self.idle_timeout_s is None else self.idle_timeout_s
        return np.asarray(~np.isfinite(idle_s) | (idle_s > timeout))

    def wire_bytes(
        self, request_message_bytes: ArrayLike, response_message_bytes: ArrayLike
    ) -> tuple[np.ndarray, np.ndarray]:
        """Uplink and downlink wire bytes per request from serialised message sizes (this connection's TLS)."""
        return wire_bytes(
            request_message_bytes, response_message_bytes, tls=self.tls_version is not None, framing=self.framing
        )


@dataclass(frozen=True)
class LinkProfile:
    """One device's link to the cloud.

    Args:
        name: shown in reports, e.g. "LTE".
        uplink: device -> cloud capacity.
        downlink: cloud -> device capacity.
        rtt_ms: round-trip propagation time, without transfer or server time.
        radio: the radio's power model and state machine.
        connection: handshakes and connection reuse.
        source: where the numbers come from.
    """

    name: str
    uplink: Channel
    downlink: Channel
    rtt_ms: float
    radio: RadioProfile
    connection: ConnectionProfile = field(default_factory=ConnectionProfile)
    source: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rtt_ms) and self.rtt_ms >= 0):
            raise ConfigError(f"link {self.name!r}: RTT must be a finite number of ms >= 0; got {self.rtt_ms}")

    @property
    def rtt_s(self) -> float:
        """The round trip in seconds."""
        return self.rtt_ms / 1e3

    def with_channels(self, *, uplink: Channel | None = None, downlink: Channel | None = None) -> LinkProfile:
        """This link with other channels (e.g. trace-driven ones) in either direction."""
        return replace(
            self,
            uplink=self.uplink if uplink is None else uplink,
            downlink=self.downlink if downlink is None else downlink,
        )

    def with_radio(self, radio: RadioProfile | str) -> LinkProfile:
        """This link with another radio profile (an object or a name from ``RADIO_PROFILES``)."""
        return replace(self, radio=get_radio_profile(radio) if isinstance(radio, str) else radio)


LINK_PROFILES: dict[str, LinkProfile] = {
    "3g": LinkProfile(
        name="3G",
        uplink=ConstantRate(1.1),  # Neurosurgeon (ASPLOS 2017) typical 3G upload [R]
        downlink=ConstantRate(2.02),  # Mahimahi TMobile-UMTS-driving mean downlink [V]
        rtt_ms=200.0,  # middle of the 120-300 ms range in public tools
        radio=RADIO_PROFILES["huang2012-3g"],
        source="Huang et al. MobiSys 2012 (radio), Neurosurgeon (uplink), Mahimahi UMTS trace (downlink)",
    ),
    "lte": LinkProfile(
        name="LTE",
        uplink=ConstantRate(5.85),  # Neurosurgeon typical LTE upload [R]
        downlink=ConstantRate(13.0),  # Huang 2012 median LTE downlink [V]
        rtt_ms=60.0,  # middle of the 40-85 ms range in public tools
        radio=RADIO_PROFILES["huang2012-lte"],
        source="Huang et al. MobiSys 2012 (radio, downlink), Neurosurgeon (uplink)",
    ),
    "wifi": LinkProfile(
        name="WiFi",
        uplink=ConstantRate(18.88),  # Neurosurgeon typical WiFi upload [R]
        downlink=ConstantRate(18.88),  # assumed symmetric: no downlink figure in the sources
        rtt_ms=20.0,  # a few ms on the LAN plus a WAN leg to the data centre
        radio=RADIO_PROFILES["huang2012-wifi"],
        source="Huang et al. MobiSys 2012 (radio), Neurosurgeon (bandwidth)",
    ),
    "5g": LinkProfile(
        name="5G",
        # Assumed: no public uplink figures here. For scale, the uccmisl-5g logs' 5G-mode rows average
        # 13.7 Mbps downlink (idle seconds included) with a median ping of 72 ms [V, computed here].
        uplink=ConstantRate(20.0),
        downlink=ConstantRate(100.0),
        rtt_ms=30.0,
        radio=RADIO_PROFILES["5g-assumed"],
        source="assumed (bandwidth, RTT and radio); see radio profile 5g-assumed",
    ),
}


def get_link_profile(name: str) -> LinkProfile:
    """The named profile; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return LINK_PROFILES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown link profile {name!r}; expected one of: {', '.join(LINK_PROFILES)}") from None
