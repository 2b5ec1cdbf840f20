"""Radio energy: the worked checks of anchors.md section 4, tails, promotion and 3G FACH."""

import numpy as np
import pytest

from specedge.errors import ConfigError
from specedge.simulator.radio import (
    CONNECTED,
    FACH_PROMOTION,
    FACH_SESSION,
    IDLE_PROMOTION,
    Promotion,
    Radio,
    RadioProfile,
    TailState,
    TransferPowerModel,
)
from specedge.simulator.radio_profiles import RADIO_PROFILES, get_radio_profile

MB = 1e6  # anchors.md: "1 MB" = 10^6 bytes


def _single_upload_j(profile: RadioProfile, num_bytes: float, uplink_mbps: float) -> tuple[float, float]:
    """One upload from idle with the whole tail after it: (total J, tail share)."""
    radio = Radio(profile)
    start = radio.begin(0.0, uplink_bytes=num_bytes, downlink_bytes=0)
    duration_s = num_bytes * 8 / (uplink_mbps * 1e6)
    transfer_mj = profile.transfer.energy_mj(num_bytes, 0.0, duration_s)
    radio.end(start.promotion_s + duration_s)
    tail_mj = radio.finish()
    total_mj = start.promotion_mj + transfer_mj + tail_mj
    return total_mj / 1e3, tail_mj / total_mj


@pytest.mark.parametrize(
    ("profile", "num_bytes", "uplink_mbps", "expected_j"),
    [
        ("huang2012-lte", MB, 5.85, 17.9),
        ("huang2012-3g", MB, 1.1, 20.3),
        ("huang2012-wifi", MB, 18.88, 2.36),
        ("huang2012-lte", 0.1 * MB, 5.85, 13.1),
    ],
)
def test_worked_checks_of_anchors(profile: str, num_bytes: float, uplink_mbps: float, expected_j: float) -> None:
    total_j, _ = _single_upload_j(get_radio_profile(profile), num_bytes, uplink_mbps)
    assert total_j == pytest.approx(expected_j, rel=0.02)


def test_lte_tail_is_most_of_a_1mb_upload() -> None:
    _, tail_share = _single_upload_j(get_radio_profile("huang2012-lte"), MB, 5.85)
    assert tail_share == pytest.approx(0.69, abs=0.01)


def test_transfer_energy_is_linear_in_bytes_and_time() -> None:
    model = TransferPowerModel(100.0, 10.0, 1000.0)
    # 1 Mbit up and 2 Mbit down over 0.5 s: 100 + 20 + 500 mJ.
    assert model.energy_mj(125_000, 250_000, 0.5) == pytest.approx(620.0)
    assert model.power_mw(2.0, 0.0) == pytest.approx(1200.0)


def test_aro_lte_drx_power_is_averaged_over_pings() -> None:
    lte = get_radio_profile("aro-lte")
    short, long_ = lte.tail[1].power_mw, lte.tail[2].power_mw
    assert short == pytest.approx((0.002 * 1680 + 0.018 * 1060) / 0.02)
    assert long_ == pytest.approx((0.002 * 1680 + 0.038 * 1060) / 0.04)
    assert lte.tail_s() == pytest.approx(10.12)


def test_tail_energy_is_cut_at_the_gap_and_capped_at_the_tail() -> None:
    lte = get_radio_profile("huang2012-lte")
    assert lte.tail_energy_mj(1.0) == pytest.approx(1060.0)
    assert lte.tail_energy_mj(np.array([0.0, 100.0])) == pytest.approx([0.0, 11.576 * 1060.0])


def test_two_transfers_one_second_apart_share_the_promotion_and_the_tail() -> None:
    lte = get_radio_profile("huang2012-lte")
    shared = Radio(lte)
    first = shared.begin(0.0, uplink_bytes=1000, downlink_bytes=100)
    shared.end(0.1)
    second = shared.begin(1.1, uplink_bytes=1000, downlink_bytes=100)
    shared.end(1.2)
    shared_mj = first.promotion_mj + second.promotion_mj + second.previous_tail_mj + shared.finish()

    isolated_mj = 0.0
    for _ in range(2):
        radio = Radio(lte)
        start = radio.begin(0.0, uplink_bytes=1000, downlink_bytes=100)
        radio.end(0.1)
        isolated_mj += start.promotion_mj + radio.finish()

    assert (first.category, second.category) == (IDLE_PROMOTION, CONNECTED)
    assert second.promotion_mj == 0.0
    assert second.previous_tail_mj == pytest.approx(1.0 * 1060.0)  # the first tail, cut after 1 s
    assert shared_mj == pytest.approx(isolated_mj - lte.promotion.energy_mj - (lte.tail_s() - 1.0) * 1060.0)
    assert shared_mj < isolated_mj


def test_a_transfer_inside_the_tail_resets_it() -> None:
    lte = get_radio_profile("huang2012-lte")
    radio = Radio(lte)
    radio.begin(0.0, uplink_bytes=1, downlink_bytes=1)
    radio.end(0.0)
    inside = radio.begin(11.0, uplink_bytes=1, downlink_bytes=1)  # 0.576 s before the tail would end
    radio.end(11.0)
    after_idle = radio.begin(11.0 + lte.tail_s() + 1e-9, uplink_bytes=1, downlink_bytes=1)  # the full tail again
    assert inside.category == CONNECTED and inside.promotion_s == 0.0
    assert after_idle.category == IDLE_PROMOTION
    assert after_idle.previous_tail_mj == pytest.approx(lte.tail_s() * 1060.0)


def test_3g_fach_small_transfers_skip_promotion_large_ones_pay_fach_to_dch() -> None:
    i997 = get_radio_profile("aro-3g-i997")  # DCH 4 s at 1.3 W, then FACH 10 s at 0.3 W
    radio = Radio(i997)
    assert radio.begin(0.0, uplink_bytes=2000, downlink_bytes=100).category == IDLE_PROMOTION
    radio.end(1.0)
    small = radio.begin(6.0, uplink_bytes=500, downlink_bytes=400)  # 5 s later: in FACH, under 543 / 475 B
    assert (small.category, small.promotion_s) == (FACH_SESSION, 0.0)
    assert small.previous_tail_mj == pytest.approx(4.0 * 1300 + 1.0 * 300)
    radio.end(6.5)
    # After a FACH session the tail restarts in FACH (no DCH tail): 2 s later it is still FACH.
    large = radio.begin(8.5, uplink_bytes=600, downlink_bytes=100)
    assert (large.category, large.promotion_s, large.promotion_mj) == (FACH_PROMOTION, 1.5, 1.5 * 800)
    assert large.previous_tail_mj == pytest.approx(2.0 * 300)
    radio.end(9.0)
    assert radio.finish() == pytest.approx(4.0 * 1300 + 10.0 * 300)


def test_fach_session_draws_fach_power_flat() -> None:
    i997 = get_radio_profile("aro-3g-i997")
    codes = np.array([FACH_SESSION, CONNECTED])
    energy = i997.transfer_energy_mj(np.array([500.0, 500.0]), np.zeros(2), np.array([0.1, 0.1]), codes)
    assert energy == pytest.approx([0.1 * 300, 0.1 * 1300])
    assert i997.wait_energy_mj(np.array([0.2, 0.2]), codes) == pytest.approx([0.2 * 300, 0.2 * 1300])


def test_every_named_profile_says_where_its_numbers_come_from() -> None:
    assert set(RADIO_PROFILES) >= {
        "huang2012-lte",
        "huang2012-3g",
        "huang2012-wifi",
        "aro-lte",
        "aro-3g-i997",
        "aro-3g-aria",
        "aro-wifi",
        "5g-assumed",
    }
    for profile in RADIO_PROFILES.values():
        assert profile.source and profile.provenance
        marks = " ".join(profile.provenance.values())
        assert any(mark in marks for mark in ("[V]", "[R]", "assumed")), profile.name
    assert all("assumed" in v for v in RADIO_PROFILES["5g-assumed"].provenance.values())


def test_unknown_radio_profile_lists_the_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"unknown radio profile 'lte-x'; expected one of: huang2012-lte, .*aro-wifi"):
        get_radio_profile("lte-x")


def test_radio_rejects_bad_profiles_and_misuse() -> None:
    with pytest.raises(ConfigError, match="finite and >= 0"):
        RadioProfile(
            "bad",
            TransferPowerModel(1, 1, -5),
            Promotion(0, 0),
            (TailState("t", 1.0, 1.0),),
            None,
            "test",
        )
    radio = Radio(get_radio_profile("huang2012-lte"))
    radio.begin(1.0, uplink_bytes=1, downlink_bytes=1)
    with pytest.raises(ConfigError, match="while another one is still open"):
        radio.begin(2.0, uplink_bytes=1, downlink_bytes=1)
    with pytest.raises(ConfigError, match="while a session is open"):
        radio.finish()
    radio.end(2.0)
    with pytest.raises(ConfigError, match="before the previous one ended"):
        radio.begin(1.5, uplink_bytes=1, downlink_bytes=1)
