"""Named radio profiles from Huang et al. 2012 and AT&T's ARO tool, and an assumed 5G one.

Every number sits next to its mark (anchors.md section 4): [V] read from a public file or
recomputed from data, [R] as cited from a paper's text, "assumed" where no public figure exists.
The two families differ (ARO's 3G profiles are 2x apart from each other and from Huang's), which
is why each ships as its own profile rather than one "truth":

    huang2012-lte, huang2012-3g, huang2012-wifi    Huang et al., MobiSys 2012 (the SIEVE transfer model)
    aro-lte, aro-3g-i997, aro-3g-aria, aro-wifi     attdevsupport/ARO, ARODataAnalyzer/src/*.conf
    5g-assumed                                      3GPP TR 38.840 relative units, scaled (all assumed)

Huang's profiles reproduce anchors.md's worked checks (1 MB over LTE at 5.85 Mbps: ~17.9 J with a
~69% tail; tests/simulator/test_radio.py).
"""

from __future__ import annotations

from specedge.errors import ConfigError
from specedge.simulator.radio import FachRules, Promotion, RadioProfile, TailState, TransferPowerModel

__all__ = ["RADIO_PROFILES", "get_radio_profile"]


def _drx_power_mw(*, ping_s: float, period_s: float, ping_mw: float, base_mw: float) -> float:
    """Average power of a DRX cycle: a ping of ``ping_s`` every ``period_s``, base power between.

    This is how ARO prices its DRX states (ProfileLTE.energy: LTE_DRX_SHORT / LTE_DRX_LONG).
    """
    return (ping_s * ping_mw + (period_s - ping_s) * base_mw) / period_s


# ARO lte.conf [V]: DRX ping 2 ms at 1.68 W; tail base 1.06 W; short DRX period 20 ms, long 40 ms.
_ARO_SHORT_DRX_MW = _drx_power_mw(ping_s=0.002, period_s=0.02, ping_mw=1680.0, base_mw=1060.0)  # 1122 mW
_ARO_LONG_DRX_MW = _drx_power_mw(ping_s=0.002, period_s=0.04, ping_mw=1680.0, base_mw=1060.0)  # 1091 mW

# 3GPP TR 38.840 relative power units (PDCCH-only 100, PDSCH 280, micro sleep 45), scaled so that
# PDCCH-only monitoring equals LTE's tail base power, 1060 mW: an assumption, not a measurement.
_NR_MW_PER_UNIT = 1060.0 / 100.0

_ARO_3G_RLC = {"uplink_threshold_bytes": 543, "downlink_threshold_bytes": 475}  # i997.conf, aria.conf [V]

RADIO_PROFILES: dict[str, RadioProfile] = {
    "huang2012-lte": RadioProfile(
        name="huang2012-lte",
        transfer=TransferPowerModel(438.39, 51.97, 1288.04),
        promotion=Promotion(delay_s=0.2601, power_mw=1210.7),
        tail=(TailState("tail", duration_s=11.576, power_mw=1060.0),),
        fach=None,
        source="Huang et al., MobiSys 2012, Table 3 (LTE)",
        provenance={
            "transfer.a_u, a_d": "[V] ARO lte.conf LTE_ALPHA_UP/DOWN (= Huang's 438.39 / 51.97 mW/Mbps)",
            "transfer.b": "[R] Huang 2012 text, 1288.04 mW (ARO uses 1200)",
            "promotion": "[R] Huang 2012, 260.1 ms at 1210.7 mW ([V] ARO lte.conf: 0.26 s at 1.21 W)",
            "tail": "[R] Huang 2012, 11.576 s at the 1060 mW tail base power ([V] ARO P_TAIL 1.06 W)",
        },
    ),
    "huang2012-3g": RadioProfile(
        name="huang2012-3g",
        transfer=TransferPowerModel(868.98, 122.12, 817.88),
        promotion=Promotion(delay_s=0.5821, power_mw=659.4),
        tail=(
            TailState("DCH", duration_s=8.0882, power_mw=803.9),
            TailState("FACH", duration_s=0.8242, power_mw=601.3),
        ),
        fach=None,
        source="Huang et al., MobiSys 2012, Table 3 (3G)",
        provenance={
            "transfer": "[R] Huang 2012: a_u 868.98, a_d 122.12 mW/Mbps, b 817.88 mW",
            "promotion": "[R] Huang 2012: 582.1 ms at 659.4 mW",
            "tail": "[R] Huang 2012: DCH tail 8088.2 ms at 803.9 mW, FACH tail 824.2 ms at 601.3 mW",
            "fach": "none: Huang gives no RLC thresholds or FACH->DCH promotion, so a session inside the "
            "FACH tail resets the tail like any other (use aro-3g-* for the FACH rules)",
        },
    ),
    "huang2012-wifi": RadioProfile(
        name="huang2012-wifi",
        transfer=TransferPowerModel(283.17, 137.01, 132.86),
        promotion=Promotion(delay_s=0.0791, power_mw=124.4),
        tail=(TailState("tail", duration_s=0.2381, power_mw=119.3),),
        fach=None,
        source="Huang et al., MobiSys 2012, Table 3 (WiFi)",
        provenance={
            "transfer": "[R] Huang 2012: a_u 283.17, a_d 137.01 mW/Mbps, b 132.86 mW",
            "promotion": "[R] Huang 2012: 79.1 ms at 124.4 mW",
            "tail": "[R] Huang 2012: 238.1 ms at 119.3 mW",
        },
    ),
    "aro-lte": RadioProfile(
        name="aro-lte",
        transfer=TransferPowerModel(438.39, 51.97, 1200.0),
        promotion=Promotion(delay_s=0.26, power_mw=1210.0),
        tail=(
            TailState("continuous reception", duration_s=0.1, power_mw=1200.0),
            TailState("short DRX", duration_s=0.02, power_mw=_ARO_SHORT_DRX_MW),
            TailState("long DRX", duration_s=10.0, power_mw=_ARO_LONG_DRX_MW),
        ),
        fach=None,
        source="AT&T ARO, ARODataAnalyzer/src/lte.conf and ProfileLTE.energy (repo attdevsupport/ARO)",
        provenance={
            "transfer": "[V] lte.conf LTE_ALPHA_UP 438.39, LTE_ALPHA_DOWN 51.97 mW/Mbps, LTE_BETA 1.2 W",
            "promotion": "[V] lte.conf T_PROMOTION 0.26 s, P_PROMOTION 1.21 W",
            "tail[continuous reception]": "[V] INACTIVITY_TIMER 0.1 s at LTE_BETA (ARO's LTE_CR_TAIL power)",
            "tail[short DRX]": "[V] T_SHORT_DRX 0.02 s; ping 2 ms at 1.68 W every 20 ms, 1.06 W between",
            "tail[long DRX]": "[V] T_LONG_DRX 10 s; ping 2 ms at 1.68 W every 40 ms, 1.06 W between",
            "idle": "left out: paging 43 ms at 0.594 W every 1.28 s is drawn whatever the device does",
        },
    ),
    "aro-3g-i997": RadioProfile(
        name="aro-3g-i997",
        transfer=TransferPowerModel(0.0, 0.0, 1300.0),
        promotion=Promotion(delay_s=2.0, power_mw=650.0),
        tail=(TailState("DCH", duration_s=4.0, power_mw=1300.0), TailState("FACH", duration_s=10.0, power_mw=300.0)),
        fach=FachRules(state=1, promotion=Promotion(delay_s=1.5, power_mw=800.0), **_ARO_3G_RLC),
        source="AT&T ARO, ARODataAnalyzer/src/i997.conf (Samsung i997 on AT&T 3G)",
        provenance={
            "transfer": "[V] flat POWER_DCH 1.30 W while in DCH (ARO has no throughput term for 3G)",
            "promotion": "[V] IDLE_DCH_PROMO_AVG 2.0 s (1.5-4.0) at POWER_IDLE_DCH 0.65 W",
            "tail": "[V] DCH_FACH_TIMER 4 s at 1.30 W, FACH_IDLE_TIMER 10 s at POWER_FACH 0.30 W",
            "fach": "[V] RLC_UL_TH 543 B, RLC_DL_TH 475 B; FACH_DCH_PROMO_AVG 1.5 s at 0.80 W",
        },
    ),
    "aro-3g-aria": RadioProfile(
        name="aro-3g-aria",
        transfer=TransferPowerModel(0.0, 0.0, 930.0),
        promotion=Promotion(delay_s=2.0, power_mw=465.0),
        tail=(TailState("DCH", duration_s=4.0, power_mw=930.0), TailState("FACH", duration_s=10.0, power_mw=510.0)),
        fach=FachRules(state=1, promotion=Promotion(delay_s=1.5, power_mw=720.0), **_ARO_3G_RLC),
        source="AT&T ARO, ARODataAnalyzer/src/aria.conf (HTC Aria on AT&T 3G)",
        provenance={
            "transfer": "[V] flat POWER_DCH 0.93 W while in DCH",
            "promotion": "[V] IDLE_DCH_PROMO_AVG 2.0 s at POWER_IDLE_DCH 0.465 W",
            "tail": "[V] DCH_FACH_TIMER 4 s at 0.93 W, FACH_IDLE_TIMER 10 s at POWER_FACH 0.51 W",
            "fach": "[V] RLC_UL_TH 543 B, RLC_DL_TH 475 B; FACH_DCH_PROMO_AVG 1.5 s at 0.72 W",
        },
    ),
    "aro-wifi": RadioProfile(
        name="aro-wifi",
        transfer=TransferPowerModel(0.0, 0.0, 403.0),
        promotion=Promotion(delay_s=0.0, power_mw=0.0),
        tail=(TailState("tail", duration_s=0.25, power_mw=403.0),),
        fach=None,
        source="AT&T ARO, ARODataAnalyzer/src/WiFi.conf and ProfileWiFi.energy",
        provenance={
            "transfer": "[V] POWER_WIFI_ACTIVE 0.403 W, flat (ARO prices WiFi active and tail alike)",
            "promotion": "[V] none in ARO's WiFi model",
            "tail": "[V] WIFI_TAIL_TIME 0.25 s at 0.403 W",
        },
    ),
    "5g-assumed": RadioProfile(
        name="5g-assumed",
        transfer=TransferPowerModel(0.0, 0.0, 280 * _NR_MW_PER_UNIT),
        promotion=Promotion(delay_s=0.08, power_mw=100 * _NR_MW_PER_UNIT),
        tail=(
            TailState("connected, PDCCH monitoring", duration_s=0.1, power_mw=100 * _NR_MW_PER_UNIT),
            TailState(
                "connected DRX",
                duration_s=10.0,
                power_mw=_drx_power_mw(
                    ping_s=0.002, period_s=0.04, ping_mw=100 * _NR_MW_PER_UNIT, base_mw=45 * _NR_MW_PER_UNIT
                ),
            ),
        ),
        fach=None,
        source="assumed: 3GPP TR 38.840 relative power units scaled to LTE's tail power; timers as aro-lte",
        provenance={
            "scale": "assumed: TR 38.840 PDCCH-only (100 units) = 1060 mW, LTE's tail base power",
            "transfer": "assumed: flat PDSCH power, 280 units = 2968 mW, no throughput term",
            "promotion": "assumed: RRC_INACTIVE -> CONNECTED resume 80 ms at PDCCH-only power",
            "tail": "assumed: 0.1 s inactivity at PDCCH-only power, then 10 s of DRX (2 ms at PDCCH-only "
            "every 40 ms, micro sleep 45 units between), as aro-lte's timers; RRC_INACTIVE after (0)",
        },
    ),
}


def get_radio_profile(name: str) -> RadioProfile:
    """The named profile; :class:`ConfigError` listing the valid names otherwise."""
    try:
        return RADIO_PROFILES[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown radio profile {name!r}; expected one of: {', '.join(RADIO_PROFILES)}") from None
