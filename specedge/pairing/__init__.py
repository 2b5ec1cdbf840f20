"""Choosing model pairs from stored outputs: M&MNet's minions (thesis ch. 5) and Dynamic Duo (ch. 6).

Both analyses read per-model logits on validation and test plus each model's calibrated cost, fit
the escalation rules of :mod:`specedge.detector` on validation, and judge them on test; they train
nothing. :mod:`.report` turns their results into JSON-ready dicts and Markdown tables.
"""

from specedge.pairing.duo import (
    DUO_FORMAT,
    DUO_FORMAT_VERSION,
    PROBE_POLICIES,
    CorrectSets,
    DuoAnalysis,
    DuoConfig,
    DuoCurve,
    DuoPair,
    DuoProbe,
    DuoSelection,
    analyse_duo,
    correct_sets,
    duo_curve,
    read_duo,
    write_duo,
)
from specedge.pairing.minions import (
    LinkChoice,
    MasterReference,
    MinionsAnalysis,
    PoolMember,
    Speculation,
    analyse_minions,
    check_pool,
    fit_speculation,
    offload_cost,
)
from specedge.pairing.report import duo_markdown, duo_report, minions_markdown, minions_report, write_report

__all__ = [
    "DUO_FORMAT",
    "DUO_FORMAT_VERSION",
    "PROBE_POLICIES",
    "CorrectSets",
    "DuoAnalysis",
    "DuoConfig",
    "DuoCurve",
    "DuoPair",
    "DuoProbe",
    "DuoSelection",
    "LinkChoice",
    "MasterReference",
    "MinionsAnalysis",
    "PoolMember",
    "Speculation",
    "analyse_duo",
    "analyse_minions",
    "check_pool",
    "correct_sets",
    "duo_curve",
    "duo_markdown",
    "duo_report",
    "fit_speculation",
    "minions_markdown",
    "minions_report",
    "offload_cost",
    "read_duo",
    "write_duo",
    "write_report",
]
