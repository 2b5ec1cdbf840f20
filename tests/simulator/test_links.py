"""Named links, connection handshakes, and arrival processes."""

import numpy as np
import pytest

from specedge.errors import ConfigError
from specedge.simulator.arrivals import constant_rate_arrivals, poisson_arrivals, recorded_arrivals
from specedge.simulator.channels import ConstantRate
from specedge.simulator.links import LINK_PROFILES, ConnectionProfile, LinkProfile, get_link_profile
from specedge.simulator.radio_profiles import RADIO_PROFILES


def test_named_links_and_their_radios() -> None:
    assert list(LINK_PROFILES) == ["3g", "lte", "wifi", "5g"]
    assert {get_link_profile(n).name for n in ("3G", "lte", "WiFi")} == {"3G", "LTE", "WiFi"}
    lte = get_link_profile("lte")
    assert (lte.uplink.mean_mbps, lte.downlink.mean_mbps, lte.rtt_ms) == (5.85, 13.0, 60.0)
    assert lte.radio is RADIO_PROFILES["huang2012-lte"]
    assert get_link_profile("5g").radio.name == "5g-assumed"
    assert "assumed" in get_link_profile("5g").source


def test_links_swap_channels_and_radios() -> None:
    lte = get_link_profile("lte")
    slow = lte.with_channels(uplink=ConstantRate(1.0))
    assert slow.uplink.mean_mbps == 1.0 and slow.downlink is lte.downlink
    assert lte.with_radio("aro-lte").radio.name == "aro-lte"


def test_unknown_link_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown link profile 'lte5'; expected one of: 3g, lte, wifi, 5g"):
        get_link_profile("lte5")
    with pytest.raises(ConfigError, match="RTT must be"):
        LinkProfile("x", ConstantRate(1.0), ConstantRate(1.0), -1.0, RADIO_PROFILES["aro-lte"])
    with pytest.raises(ConfigError, match="rate must be"):
        ConstantRate(0.0)


def test_connection_handshakes() -> None:
    tls13, tls12, plain = ConnectionProfile(), ConnectionProfile(tls_version="1.2"), ConnectionProfile(tls_version=None)
    assert (tls13.handshake_rtts, tls12.handshake_rtts, plain.handshake_rtts) == (2, 3, 1)
    assert tls13.setup_bytes[1] > plain.setup_bytes[1] + 4000  # the server's certificate chain
    idle = np.array([np.inf, 0.5, 2000.0])
    assert list(tls13.needs_handshake(idle)) == [True, False, True]  # 30-minute idle timeout
    assert list(ConnectionProfile(idle_timeout_s=None).needs_handshake(idle)) == [True, False, False]
    assert list(ConnectionProfile(reuse=False).needs_handshake(idle)) == [True, True, True]
    with pytest.raises(ConfigError, match=r"unknown TLS version '1\.1'"):
        ConnectionProfile(tls_version="1.1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="idle_timeout_s"):
        ConnectionProfile(idle_timeout_s=-1.0)


def test_arrival_processes() -> None:
    assert constant_rate_arrivals(4, rate_hz=30.0, start_s=1.0) == pytest.approx(1.0 + np.arange(4) / 30)
    a = poisson_arrivals(1000, rate_hz=10.0, rng=np.random.default_rng(5))
    b = poisson_arrivals(1000, rate_hz=10.0, rng=np.random.default_rng(5))
    assert np.array_equal(a, b) and np.all(np.diff(a) >= 0)
    assert 1000 / a[-1] == pytest.approx(10.0, rel=0.1)
    assert recorded_arrivals([5.0, 5.0, 7.5]) == pytest.approx([0.0, 0.0, 2.5])
    assert recorded_arrivals([5.0, 7.5], from_zero=False) == pytest.approx([5.0, 7.5])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: constant_rate_arrivals(3, rate_hz=0.0), "rate must be a finite number of Hz > 0"),
        (lambda: poisson_arrivals(-1, rate_hz=1.0, rng=np.random.default_rng()), "number of requests must be >= 0"),
        (lambda: recorded_arrivals([0.0, 2.0, 1.0]), r"must not decrease; index 2 \(1 s\)"),
        (lambda: recorded_arrivals([[0.0]]), "1-D"),
        (lambda: recorded_arrivals([0.0, float("nan")]), "finite"),
    ],
)
def test_arrival_errors(call, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        call()
