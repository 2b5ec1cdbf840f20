"""``specedge bundle``: gather the device's models, detectors and costs into one edge bundle folder.

The last offline step: after ``train``, ``distill``, ``compress`` and ``calibrate``, this copies the
speculative models (and minion pairs), their detectors and optionally the master into one folder,
prices each local model on a device profile, records what one escalation costs on the wire and on
the server, and prints what it wrote. The edge runtime reads that folder alone.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from specedge.cli._args import add_common, positive_float
from specedge.edge.bundle import MASTER_ID, Bundle, SpeculativeEntry, measure_server_s, write_bundle
from specedge.errors import ConfigError
from specedge.models import load_artifact
from specedge.simulator.device import DEVICE_PROFILES
from specedge.simulator.links import LINK_PROFILES

__all__ = ["format_bundle", "register"]


def format_bundle(bundle: Bundle) -> str:
    """The summary ``specedge bundle`` prints: the cloud side, then one row per local model."""
    payload = bundle.payload
    lines = [
        f"edge bundle {bundle.path}: {bundle.classes} classes, input {list(bundle.input_shape)}, device "
        f"{bundle.device}, link {bundle.link}",
        f"cloud model {bundle.cloud_model.name!r}: request {payload.request_bytes:,} B, response "
        f"{payload.response_bytes:,} B, server {1e3 * payload.server_s:.3f} ms",
        f"  {'id':<20} {'role':<11} {'latency ms':>10} {'energy mJ':>10} {'P_r':>7}",
    ]
    for m in bundle.local_models:
        p_r = "-" if m.escalation_probability is None else f"{m.escalation_probability:.2%}"
        lines.append(f"  {m.id:<20} {m.role:<11} {1e3 * m.latency_s:>10.3f} {m.energy_mj:>10.4f} {p_r:>7}")
    return "\n".join(lines)


def _model_id(paths: list[Path], taken: set[str]) -> str:
    """The artifact folder's name (``pair`` for two minions), made a valid id and unique."""
    base = "pair" if len(paths) == 2 else re.sub(r"[^A-Za-z0-9._-]", "-", paths[0].resolve().name).lstrip("._-")
    base = base if base and base != MASTER_ID else "speculative"
    model_id, n = base, 2
    while model_id in taken:
        model_id, n = f"{base}-{n}", n + 1
    taken.add(model_id)
    return model_id


def _cmd_bundle(args: argparse.Namespace) -> int:
    models: list[list[Path]] = [m if isinstance(m, list) else [m] for m in args.models or []]
    if not models:
        raise ConfigError("give at least one --speculative DIR or --pair DIR DIR")
    if len(args.detector) != len(models):
        raise ConfigError(
            f"give one --detector per --speculative/--pair, in the same order; got {len(args.detector)} detector "
            f"file(s) for {len(models)} model(s)"
        )
    taken: set[str] = set()
    entries = [
        SpeculativeEntry(_model_id(paths, taken), tuple(paths), detector)
        for paths, detector in zip(models, args.detector, strict=True)
    ]
    server_s = args.server_ms / 1e3 if args.server_ms is not None else None
    if server_s is None and args.cloud_model and args.no_master_on_device:  # write_bundle then sees no master
        server_s = measure_server_s(load_artifact(args.master))
    bundle = write_bundle(
        args.out,
        speculative=entries,
        master=None if args.no_master_on_device else args.master,
        cloud_model=args.cloud_model or args.master,
        device=args.device,
        link=args.link,
        server_s=server_s,
    )
    print(format_bundle(bundle))
    print(f"bundle: {bundle.path}", file=sys.stderr)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    cmd = subparsers.add_parser(
        "bundle",
        help="gather speculative models, detectors and the master into one folder for the edge device",
        description="Copy the speculative models (and minion pairs) with their detectors from 'specedge calibrate', "
        "and the master unless --no-master-on-device, into one edge bundle folder. Each local model is priced "
        "on --device (time and energy per input, from the device model); one escalation's message sizes come "
        "from the real protobuf messages and the server's time is measured here on the master. The device "
        "reads bundle.json alone, which records the SHA-256 of every copied manifest so a changed model is "
        "refused.",
        epilog="example: specedge bundle --master runs/master --speculative runs/distilled --detector "
        "runs/detectors.json --pair runs/minion-a runs/minion-b --detector runs/pair-detectors.json --out edge",
    )
    cmd.add_argument(
        "--master", type=Path, required=True, metavar="DIR", help="master model artifact (the one the cloud serves)"
    )
    cmd.add_argument(
        "--speculative",
        dest="models",
        type=Path,
        action="append",
        metavar="DIR",
        help="speculative model artifact; its folder name is its id (repeatable)",
    )
    cmd.add_argument(
        "--pair",
        dest="models",
        type=Path,
        nargs=2,
        action="append",
        metavar="DIR",
        help="two minion artifacts run as one local model with a 'pair' policy detector (repeatable)",
    )
    cmd.add_argument(
        "--detector",
        type=Path,
        action="append",
        required=True,
        metavar="FILE",
        help="detectors from 'specedge calibrate', one per --speculative/--pair in the same order; the first "
        "detector in each file is the default (repeatable)",
    )
    cmd.add_argument(
        "--cloud-model",
        metavar="NAME",
        help="the name the cloud serves the master under (default: the master artifact's model name)",
    )
    cmd.add_argument(
        "--device",
        type=str.lower,
        choices=tuple(DEVICE_PROFILES),
        default="tegra-k1",
        help="device profile the local models are priced on (default: tegra-k1)",
    )
    cmd.add_argument(
        "--link",
        type=str.lower,
        choices=tuple(LINK_PROFILES),
        default="lte",
        help="default link profile (default: lte)",
    )
    cmd.add_argument(
        "--server-ms",
        type=positive_float,
        metavar="MS",
        help="server time per request in milliseconds (default: measured here by running the master)",
    )
    cmd.add_argument(
        "--no-master-on-device",
        action="store_true",
        help="leave the master out of the bundle (the device then cannot run it locally)",
    )
    cmd.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="bundle folder (an existing bundle is replaced)"
    )
    add_common(cmd, data=False)
    cmd.set_defaults(func=_cmd_bundle)
