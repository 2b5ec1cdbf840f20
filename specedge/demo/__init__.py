"""The end-to-end demo: train, derive, calibrate, serve, run the edge, report."""

from specedge.demo.report import DemoReport, format_report
from specedge.demo.run import DEFAULT_SPECULATIVE_OPTIONS, DemoConfig, run_demo

__all__ = ["DEFAULT_SPECULATIVE_OPTIONS", "DemoConfig", "DemoReport", "format_report", "run_demo"]
