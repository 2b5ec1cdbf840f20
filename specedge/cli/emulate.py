"""``specedge emulate``: a loopback proxy that imposes a simulator link on a live connection.

Point the edge at the printed address instead of the server, and its bytes take the time the
simulator's link model says (:mod:`specedge.emulator`), so a live run can be set beside
``specedge simulate`` for the same link.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from specedge.cli._args import port_number
from specedge.emulator import TRACE_BASE_LINK, LinkEmulator, resolve_link
from specedge.simulator.channels import Channel
from specedge.simulator.links import LINK_PROFILES, LinkProfile
from specedge.simulator.traces import TraceChannel

__all__ = ["register"]


def _describe_channel(channel: Channel) -> str:
    if isinstance(channel, TraceChannel):
        return f"trace {channel.name} (mean {channel.mean_mbps:.2f} Mbps, from {channel.offset_s:.1f} s)"
    return f"{channel.mean_mbps:g} Mbps"


def _describe(link: LinkProfile, *, radio_promotion: bool) -> str:
    radio = (
        f", radio {link.radio.name} (promotion {link.radio.promotion.delay_s * 1e3:.0f} ms "
        f"after {link.radio.tail_s(0):g} s idle)"
        if radio_promotion
        else ""
    )
    return (
        f"{link.name}: up {_describe_channel(link.uplink)}, down {_describe_channel(link.downlink)}, "
        f"RTT {link.rtt_ms:g} ms{radio}"
    )


def _cmd_emulate(args: argparse.Namespace) -> int:
    link = resolve_link(args.link, seed=args.seed)
    emulator = LinkEmulator(
        args.target,
        link,
        listen_host=args.listen_host,
        listen_port=args.listen_port,
        radio_promotion=args.radio_promotion,
    )
    with emulator:
        if args.port_file is not None:
            args.port_file.write_text(f"{emulator.target.rpartition(':')[2]}\n", encoding="utf-8")
        print(f"emulating {_describe(link, radio_promotion=args.radio_promotion)}")
        print(f"connect to {emulator.target} (forwarded to {args.target}); Ctrl-C stops", flush=True)
        emulator.wait()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    emulate = subparsers.add_parser(
        "emulate",
        help="forward a live connection through an emulated link (delay, bandwidth, traces) on loopback",
        description="Listen on loopback and forward each connection to --target, delaying the bytes as a "
        "simulator link profile or capacity trace says, so live runs can be compared with 'specedge simulate'. "
        "Runs until Ctrl-C.",
    )
    emulate.add_argument(
        "--link",
        required=True,
        metavar="PROFILE|TRACE",
        help=f"link profile ({', '.join(LINK_PROFILES)}) or a Mahimahi or time/Mbps trace file, which then "
        f"drives both directions of the {TRACE_BASE_LINK} profile (its RTT and radio stay)",
    )
    emulate.add_argument("--target", required=True, metavar="HOST:PORT", help="the real server, e.g. 127.0.0.1:8001")
    emulate.add_argument("--listen-host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    emulate.add_argument(
        "--listen-port", type=port_number, default=0, help="port to listen on; 0 picks a free one (default: 0)"
    )
    emulate.add_argument("--port-file", type=Path, metavar="FILE", help="write the listening port here once bound")
    emulate.add_argument(
        "--radio-promotion",
        action="store_true",
        help="charge the link radio's promotion delay when data follows an idle gap of at least its tail",
    )
    emulate.add_argument(
        "--seed", type=int, default=0, help="seed of a trace's random start point, as in 'specedge simulate'"
    )
    emulate.set_defaults(func=_cmd_emulate, plugin=[])
