"""The per-input selector against hand-computed SIEVE / M&MNet comparisons (thesis 4.3.2, 5.2)."""

import pytest

from specedge.edge.selector import Action, Costs, LocalOption, Objective, choose
from specedge.errors import ConfigError

FAST = LocalOption("fast", latency_s=0.002, energy_mj=2.0, escalation_probability=0.10)
SLOW = LocalOption("slow", latency_s=0.004, energy_mj=4.0, escalation_probability=0.01)
MASTER = LocalOption("master", latency_s=0.050, energy_mj=60.0)


def test_sieves_rule_speculates_when_lm_plus_pr_lt_beats_lt():
    cloud = Costs(latency_s=0.100, energy_mj=100.0)
    choice = choose([FAST], master=None, cloud=cloud, objective=Objective.parse("latency"))
    assert choice.action is Action.SPECULATE and choice.model_id == "fast" and choice.recovery is Action.CLOUD
    assert choice.expected["speculate:fast"] == Costs(0.002 + 0.1 * 0.100, 2.0 + 0.1 * 100.0)
    # A link so fast that L_t < L_m + P_r x L_t: straight to the cloud.
    quick = Costs(latency_s=0.002, energy_mj=1.0)
    assert choose([FAST], master=None, cloud=quick, objective=Objective.parse("latency")).action is Action.CLOUD


def test_the_cheapest_variant_wins_per_objective_a_topology_swap():
    cloud = Costs(latency_s=0.100, energy_mj=300.0)
    by_latency = choose([FAST, SLOW], master=None, cloud=cloud, objective=Objective.parse("latency"))
    assert by_latency.model_id == "slow"  # 0.005 s < 0.012 s
    cheap_cloud = Costs(latency_s=0.010, energy_mj=10.0)
    swapped = choose([FAST, SLOW], master=None, cloud=cheap_cloud, objective=Objective.parse("energy"))
    assert swapped.model_id == "fast"  # 2 + 1 = 3 mJ < 4 + 0.1 mJ


def test_the_master_is_placed_where_it_is_cheaper_and_follows_the_link():
    slow_link = Costs(latency_s=0.500, energy_mj=500.0)
    choice = choose([FAST], master=MASTER, cloud=slow_link, objective=Objective.parse("latency"))
    assert choice.action is Action.SPECULATE and choice.recovery is Action.DEVICE_MASTER
    assert choice.expected["speculate:fast"].latency_s == pytest.approx(0.002 + 0.1 * 0.050)
    fast_link = Costs(latency_s=0.020, energy_mj=5.0)
    choice = choose([FAST], master=MASTER, cloud=fast_link, objective=Objective.parse("latency"))
    assert choice.recovery is Action.CLOUD
    # Mission-critical: no speculation, the master where it is cheaper.
    assert choose([FAST], master=MASTER, cloud=slow_link, objective=Objective(1.0), allow_speculate=False).action is (
        Action.DEVICE_MASTER
    )


def test_a_weighted_objective_mixes_normalised_latency_and_energy():
    cloud = Costs(latency_s=0.010, energy_mj=400.0)  # fast but power-hungry link
    spec = LocalOption("s", latency_s=0.009, energy_mj=10.0, escalation_probability=0.5)  # 0.014 s, 210 mJ
    assert choose([spec], master=None, cloud=cloud, objective=Objective.parse("latency")).action is Action.CLOUD
    assert choose([spec], master=None, cloud=cloud, objective=Objective.parse("energy")).action is Action.SPECULATE
    # mix:0.5 -> cloud 0.5*1 + 0.5*1 = 1.0; speculate 0.5*1 + 0.5*0.525 = 0.76
    assert choose([spec], master=None, cloud=cloud, objective=Objective.parse("mix:0.5")).action is Action.SPECULATE
    assert Objective.parse("mix:0.25").describe() == "mix:0.25"
    for bad in ("fast", "mix:2", "mix:x"):
        with pytest.raises(ConfigError, match="objective"):
            Objective.parse(bad)


def test_deadlines_pick_the_most_accurate_option_that_fits():
    cloud = Costs(latency_s=0.100, energy_mj=1.0)  # cheapest in energy, but slow
    # 150 ms of slack: the cloud fits and is cheapest.
    assert choose([FAST], master=None, cloud=cloud, objective=Objective(0.0), slack_s=0.150).action is Action.CLOUD
    # 50 ms: neither the cloud nor speculation-with-recovery (2 + 100 ms) fits: the fastest model alone.
    late = choose([FAST, SLOW], master=None, cloud=cloud, objective=Objective(0.0), slack_s=0.050)
    assert late.action is Action.SPECULATE and late.model_id == "fast" and not late.recovery_fits
    # With the master on the device (50 ms), speculation recovers there within 60 ms.
    near = choose([FAST], master=MASTER, cloud=cloud, objective=Objective(0.0), slack_s=0.060)
    assert near.action is Action.SPECULATE and near.recovery is Action.DEVICE_MASTER and near.recovery_fits


def test_nothing_to_choose_from_and_bad_options():
    with pytest.raises(ConfigError, match="nothing to choose"):
        choose([], master=None, cloud=None, objective=Objective(0.0))
    with pytest.raises(ConfigError, match="P_r"):
        LocalOption("x", 0.001, 1.0, 1.5)
    with pytest.raises(ConfigError, match="finite"):
        LocalOption("x", float("nan"), 1.0)
