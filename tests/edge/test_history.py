"""Speculation history (thesis 4.3.2): both rules, the window, the bound on streams."""

import pytest

from specedge.edge.history import Advice, SpeculationHistory
from specedge.errors import ConfigError


def test_an_agreeing_master_trusts_the_next_frame_and_a_disagreeing_one_sends_it_to_the_master():
    history = SpeculationHistory(window_s=0.1)
    history.observe("cam", 1.00, escalated=True, master_agreed=True)
    assert history.advice("cam", 1.05) is Advice.TRUST
    history.observe("cam", 1.05, escalated=False, master_agreed=None)  # the trusted frame earns nothing
    assert history.advice("cam", 1.10) is None
    history.observe("cam", 2.00, escalated=True, master_agreed=False)
    assert history.advice("cam", 2.09) is Advice.MASTER
    assert history.advice("cam", 2.10) is None  # not closer than the window
    assert history.advice("other", 2.01) is None  # streams do not share history


def test_a_failed_escalation_gives_no_advice_and_streams_are_bounded():
    history = SpeculationHistory(window_s=1.0, max_streams=2)
    history.observe("a", 0.0, escalated=True, master_agreed=None)
    assert history.advice("a", 0.1) is None
    history.observe("a", 0.0, escalated=True, master_agreed=True)
    history.observe("b", 0.0, escalated=True, master_agreed=True)
    history.observe("c", 0.0, escalated=True, master_agreed=True)
    assert history.advice("a", 0.1) is None and history.advice("c", 0.1) is Advice.TRUST
    history.forget()
    assert history.advice("c", 0.1) is None
    with pytest.raises(ConfigError, match="window"):
        SpeculationHistory(window_s=0)
