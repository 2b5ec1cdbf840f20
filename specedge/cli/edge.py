"""``specedge edge``: the edge process, streaming a dataset split or an image folder through a bundle's models.

One input at a time, as a camera delivers them (``--fps`` paces them like one): the bundle's
speculative models answer on the device, doubtful answers go to the cloud master (``--cloud``),
optionally through the loopback link emulator (``--emulate``) so a live run sees 3G/LTE delays.
Every input gets one JSON line in ``--log`` as it completes (flushed, so a killed run keeps what it
answered); a bad input gets an error record and the stream goes on. A progress bar shows live
counters, and a summary closes the run (thesis 4.3, 5.2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from specedge.cli._args import (
    TOKEN_ENV,
    add_common,
    bearer_token,
    load_splits,
    positive_float,
    positive_int,
    say,
)
from specedge.data import list_datasets
from specedge.edge.assemble import runtime_from_bundle
from specedge.edge.bundle import Bundle, read_bundle
from specedge.edge.cloud_client import CloudClient
from specedge.edge.inputs import dataset_inputs, folder_inputs, list_image_files
from specedge.edge.policy import Mode
from specedge.edge.records import InferenceRecord, Route
from specedge.edge.runtime import EdgeInput
from specedge.edge.selector import Objective
from specedge.emulator import LinkEmulator, parse_address, resolve_link
from specedge.errors import ConfigError, SpecEdgeError
from specedge.simulator.links import LINK_PROFILES, LinkProfile, get_link_profile

__all__ = ["EdgeSummary", "register"]

DEFAULT_LOG = Path("edge-records.jsonl")
_COUNTERS = (
    ("kept", Route.LOCAL),
    ("escalated", Route.ESCALATED),
    ("cloud", Route.CLOUD),
    ("device-master", Route.DEVICE_MASTER),
)


# --- the summary -------------------------------------------------------------------------------


@dataclass
class EdgeSummary:
    """Running counts over a stream's records, for the progress bar and the closing summary."""

    labels: dict[str, int] = field(default_factory=dict)  # input id -> true class, where known
    deadline_s: float | None = None
    inputs: int = 0
    routes: Counter[str] = field(default_factory=Counter)
    flags: Counter[str] = field(default_factory=Counter)
    decisions: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    verified: int = 0
    correct: int = 0
    labelled: int = 0
    deadline_misses: int = 0
    total_ms: list[float] = field(default_factory=list)  # answered inputs only

    def add(self, record: InferenceRecord) -> None:
        """Count one record."""
        self.inputs += 1
        self.decisions[record.decision.split(";")[0].strip() or "-"] += 1
        if record.error is not None or record.route is None:
            self.errors += 1
            self.routes["error"] += 1
            return
        self.routes[record.route.value] += 1
        self.total_ms.append(record.total_us / 1e3)
        self.verified += record.verified
        if record.flag is not None:
            self.flags[record.flag] += 1
        if record.deadline_met is False:
            self.deadline_misses += 1
        label = self.labels.get(record.input_id)
        if label is not None:
            self.labelled += 1
            self.correct += record.prediction == label

    @property
    def answered(self) -> int:
        """Records that carry an answer (all but the errors)."""
        return self.inputs - self.errors

    def counters(self) -> dict[str, int]:
        """The progress bar's live counters."""
        counts = {name: self.routes[route.value] for name, route in _COUNTERS}
        return {**counts, "flagged": sum(self.flags.values()), "errors": self.errors}

    def format(self) -> str:
        """The closing summary, one fact per line."""
        routes = ", ".join(f"{route.value} {self.routes[route.value]}" for _, route in _COUNTERS)
        flagged = sum(self.flags.values())
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.flags.items()))
        lines = [
            f"inputs: {self.inputs} ({self.answered} answered, {self.errors} errors)",
            f"routes: {routes}" + (f", error {self.errors}" if self.errors else ""),
            f"flagged: {flagged}" + (f" ({reasons})" if reasons else ""),
            f"verified: {self.verified}/{self.answered} answers ({_share(self.verified, self.answered)})",
        ]
        if self.total_ms:
            ms = np.asarray(self.total_ms)
            lines.append(
                f"latency ms: mean {ms.mean():.2f}, p50 {np.percentile(ms, 50):.2f}, p95 {np.percentile(ms, 95):.2f}"
            )
        if self.deadline_s is not None:
            lines.append(
                f"deadline misses: {self.deadline_misses}/{self.answered} answers over {self.deadline_s * 1e3:g} ms"
            )
        if self.labelled:
            lines.append(f"accuracy: {self.correct}/{self.labelled} = {_share(self.correct, self.labelled)}")
        decisions = ", ".join(f"{k} {v}" for k, v in self.decisions.most_common())
        lines.append(f"decisions: {decisions or '-'}")
        return "\n".join(lines)


def _share(part: int, whole: int) -> str:
    return f"{part / whole:.1%}" if whole else "-"


# --- inputs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    inputs: Iterator[EdgeInput]
    total: int
    labels: dict[str, int]
    description: str


def _source(args: argparse.Namespace, bundle: Bundle, deadline_s: float | None) -> _Source:
    """The inputs ``--dataset``/``--split`` or ``--images`` name, checked against the bundle's input shape."""
    if args.images is not None:
        total = len(list_image_files(args.images)[: args.limit])
        inputs = folder_inputs(args.images, bundle.input_shape, limit=args.limit, deadline_s=deadline_s)
        return _Source(inputs, total, {}, f"image folder {args.images}")
    splits = load_splits(args)
    split = getattr(splits, args.split)
    shape = tuple(split.images.shape[1:])
    if shape != bundle.input_shape:
        raise ConfigError(
            f"dataset {splits.name} has {list(shape)} images but the bundle's models take "
            f"{list(bundle.input_shape)}; pass the dataset the models were trained on"
        )
    count = len(split) if args.limit is None else min(args.limit, len(split))
    prefix = f"{args.split}-"
    labels = {f"{prefix}{i}": int(label) for i, label in enumerate(split.labels[:count])}
    inputs = dataset_inputs(split, prefix=prefix, limit=count, deadline_s=deadline_s)
    return _Source(inputs, count, labels, f"{args.dataset} ({args.split} split)")


def _paced(inputs: Iterable[EdgeInput], fps: float | None) -> Iterator[EdgeInput]:
    """``inputs``, the i-th not before i/fps seconds after the first (a camera); unpaced if ``fps`` is None."""
    start = time.perf_counter()
    for index, item in enumerate(inputs):
        if fps is not None:
            wait_s = start + index / fps - time.perf_counter()
            if wait_s > 0:
                time.sleep(wait_s)
        yield item


# --- the command -------------------------------------------------------------------------------


def _check_reachable(args: argparse.Namespace, bundle: Bundle) -> None:
    """Without ``--cloud``, a mode that recovers doubtful answers needs the master on the device."""
    if args.emulate and args.cloud is None:
        raise ConfigError("--emulate shapes the connection to the cloud; give --cloud HOST:PORT too")
    if args.cloud is not None:
        parse_address(args.cloud, "--cloud")
        return
    if args.mode == Mode.PRIVATE.value or (bundle.master is not None and not args.no_device_master):
        return
    where = "this bundle has no master" if bundle.master is None else "--no-device-master leaves it off the device"
    raise ConfigError(
        f"mode {args.mode!r} sends doubtful inputs to the master, but no --cloud was given and {where}; "
        "give --cloud HOST:PORT, or use --mode private (everything stays on the device, doubtful answers flagged)"
    )


def _link(args: argparse.Namespace, bundle: Bundle) -> LinkProfile:
    return resolve_link(args.link) if args.link is not None else get_link_profile(bundle.link)


def _cmd_edge(args: argparse.Namespace) -> int:
    bundle = read_bundle(args.bundle)
    _check_reachable(args, bundle)
    link = _link(args, bundle)
    deadline_s = None if args.deadline_ms is None else args.deadline_ms / 1e3
    source = _source(args, bundle, deadline_s)
    summary = EdgeSummary(labels=source.labels, deadline_s=deadline_s)
    with contextlib.ExitStack() as stack:
        client = None
        if args.cloud is not None:
            target = args.cloud
            if args.emulate:
                target = stack.enter_context(LinkEmulator(args.cloud, link)).target
                say(args, f"emulating link {link.name} on {target} -> {args.cloud}")
            name, version = bundle.cloud_model.name, bundle.cloud_model.version
            client = stack.enter_context(
                CloudClient(
                    target,
                    model_name=name,
                    model_version=version,
                    tls=args.tls,
                    root_ca=args.tls_ca,
                    client_cert=args.tls_cert,
                    client_key=args.tls_key,
                    token=bearer_token(args.token_file),
                )
            )
        say(args, f"loading {len(bundle.local_models)} local model(s) from {bundle.path} ...")
        runtime = runtime_from_bundle(
            bundle,
            cloud=client,
            mode=args.mode,
            objective=args.objective,
            selector=not args.no_selector,
            link=link,
            history_window_s=args.history_ms / 1e3 if args.history_ms > 0 else None,
            device_master=not args.no_device_master,
            threads=args.threads,
        )
        say(args, f"edge: {source.description} through {bundle.path} (mode {runtime.mode.value}, link {link.name})")
        args.log.parent.mkdir(parents=True, exist_ok=True)
        log = stack.enter_context(args.log.open("w", encoding="utf-8"))
        bar = stack.enter_context(
            tqdm(total=source.total, desc="edge", unit="input", disable=args.quiet, file=sys.stderr)
        )
        try:
            for record in runtime.stream(_paced(source.inputs, args.fps)):
                log.write(json.dumps(record.to_dict(), allow_nan=False) + "\n")
                log.flush()
                summary.add(record)
                bar.set_postfix(summary.counters(), refresh=False)
                bar.update()
        except KeyboardInterrupt:
            bar.close()
            print(f"interrupted after {summary.inputs} inputs\n{summary.format()}", file=sys.stderr)
            raise
    print(summary.format())
    say(args, f"log: {args.log} ({summary.inputs} records)")
    return 0


# --- arguments ---------------------------------------------------------------------------------


def _objective(text: str) -> str:
    try:
        Objective.parse(text)
    except SpecEdgeError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the subcommand."""
    cmd = subparsers.add_parser(
        "edge",
        help="run the edge device: stream a dataset or an image folder through a bundle, escalating to the cloud",
        description="Classify inputs one at a time with the bundle's speculative models; doubtful answers go to "
        "the cloud master (--cloud) or the master on the device. Writes one JSON line per input to --log as it "
        "completes and prints a summary. A bad input gets an error record; the stream goes on.",
        epilog="example: specedge serve --model runs/master --port 8001 & "
        "specedge edge --bundle edge --cloud 127.0.0.1:8001 --link 3g --emulate --dataset digits --limit 200",
    )
    cmd.add_argument("--bundle", type=Path, required=True, metavar="DIR", help="edge bundle from 'specedge bundle'")
    cmd.add_argument("--cloud", metavar="HOST:PORT", help="the cloud server (default: none; only the device answers)")
    cmd.add_argument(
        "--link",
        metavar="PROFILE|TRACE",
        help=f"the link the selector's estimate starts from, and the one --emulate imposes: a profile "
        f"({', '.join(LINK_PROFILES)}) or a trace file (default: the bundle's link)",
    )
    cmd.add_argument(
        "--emulate", action="store_true", help="pass the cloud connection through a loopback emulator of --link"
    )
    secure = cmd.add_argument_group("securing the cloud connection (see specedge serve --tls-cert, --token-file)")
    secure.add_argument("--tls", action="store_true", help="TLS with the system's trusted CAs")
    secure.add_argument("--tls-ca", type=Path, metavar="FILE", help="TLS, trusting the CA certificate in FILE (PEM)")
    secure.add_argument("--tls-cert", type=Path, metavar="FILE", help="client certificate for mutual TLS (PEM)")
    secure.add_argument("--tls-key", type=Path, metavar="FILE", help="client key for mutual TLS (PEM)")
    secure.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"send 'authorization: Bearer <token>' with the token in FILE (default: ${TOKEN_ENV} if set)",
    )
    cmd.add_argument(
        "--mode", choices=[m.value for m in Mode], default=Mode.NORMAL.value, help="user mode (default: normal)"
    )
    cmd.add_argument(
        "--objective",
        type=_objective,
        default="energy",
        metavar="latency|energy|mix:W",
        help="what the selector minimises; W is the latency weight in [0, 1] (default: energy)",
    )
    cmd.add_argument(
        "--no-selector", action="store_true", help="always speculate with the first model (the fixed SpecEdge)"
    )
    cmd.add_argument(
        "--deadline-ms", type=positive_float, metavar="MS", help="answer each input within this many milliseconds"
    )
    cmd.add_argument(
        "--history-ms",
        type=_non_negative_float,
        default=100.0,
        metavar="MS",
        help="speculation history window in milliseconds; 0 turns it off (default: 100)",
    )
    cmd.add_argument("--no-device-master", action="store_true", help="leave the bundle's master off the device")
    source = cmd.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--dataset",
        help=f"stream a dataset split: a name ({', '.join(list_datasets())}) or a path to an IDX folder, an image "
        "folder with train/ and test/, or a .npz",
    )
    source.add_argument("--images", type=Path, metavar="DIR", help="stream the image files under DIR (sorted by path)")
    cmd.add_argument("--split", choices=("test", "val"), default="test", help="dataset split (default: test)")
    cmd.add_argument("--limit", type=positive_int, metavar="N", help="the first N inputs only")
    cmd.add_argument(
        "--fps",
        type=positive_float,
        metavar="F",
        help="pace inputs like a camera at F frames per second (default: as fast as possible)",
    )
    cmd.add_argument(
        "--log",
        type=Path,
        default=DEFAULT_LOG,
        metavar="FILE",
        help=f"JSON lines, one record per input, written as each completes (default: {DEFAULT_LOG})",
    )
    cmd.add_argument("--threads", type=positive_int, default=1, help="threads per local model (default: 1)")
    add_common(cmd)
    cmd.set_defaults(func=_cmd_edge)
