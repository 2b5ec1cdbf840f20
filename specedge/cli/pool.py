"""``specedge pool`` and ``specedge pair``: minion pools, M&MNet pairs per link, Dynamic Duo little/big pairs."""

from __future__ import annotations

import argparse
from pathlib import Path

from specedge.cli._args import (
    add_common,
    add_dataset,
    add_links,
    add_training,
    fraction,
    load_splits,
    positive_int,
    say,
    train_config,
)
from specedge.compression.pool import (
    DEFAULT_ALPHAS,
    DEFAULT_RHOS,
    METHODS,
    build_pool,
    link_offload_costs,
    master_reference,
    pool_member,
    read_pool,
)
from specedge.errors import ConfigError
from specedge.models import load_artifact
from specedge.pairing import (
    analyse_duo,
    analyse_minions,
    duo_markdown,
    duo_report,
    minions_markdown,
    minions_report,
    write_duo,
    write_report,
)
from specedge.simulator.device import DEVICE_PROFILES

__all__ = ["register"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers; got {text!r}") from exc
    if not values or any(not 0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated values in (0, 1]; got {text!r}")
    return values


def _cmd_pool(args: argparse.Namespace) -> int:
    record = build_pool(
        args.master,
        load_splits(args),
        args.out,
        config=train_config(args),
        alphas=args.alphas,
        rhos=args.rhos,
        links=args.links,
        methods=args.methods,
        threads=args.device_threads,
        show_progress=not args.quiet,
        log=lambda message: say(args, message),
    )
    print(f"{'member':<34} {'MACs':>11} {'latency us':>10} {'val acc':>8} {'test acc':>8}")
    for member in record["members"]:
        candidate = member["candidate"]
        print(
            f"{member['name']:<34} {candidate['macs']:>11,} {candidate['latency_s'] * 1e6:>10.0f} "
            f"{member['val_accuracy']:>8.2%} {member['test_accuracy']:>8.2%}"
        )
    dropped = [c["name"] for c in record["candidates"] if not c["kept"]]
    if dropped:
        print(f"not trained (slower than offloading over {record['fastest_link']}): {', '.join(dropped)}")
    print(f"pool written to {args.out}")
    return 0


def _cmd_pair(args: argparse.Namespace) -> int:
    record, entries = read_pool(args.pool)
    splits = load_splits(args)
    master_path = Path(args.master or record["master"])
    master_loaded = load_artifact(master_path)
    if master_loaded.spec.num_classes != splits.num_classes or master_loaded.spec.image_shape != splits.image_shape:
        raise ConfigError(f"pool {args.pool} was built for other data than {splits.name!r}")
    # analytic device costs: latency and energy from one profile (the calibrated host latencies are this machine's)
    members = [
        pool_member(e.name, Path(e.path), splits, device=args.device, threads=args.device_threads) for e in entries
    ]
    master = pool_member("master", master_path, splits, device=args.device, threads=args.device_threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kind == "minions":
        reference, link_costs = master_reference(master, splits), link_offload_costs(args.links, splits)
        single = (
            None
            if args.single is None
            else pool_member("single", args.single, splits, device=args.device, threads=args.device_threads)
        )
        analysis = analyse_minions(members, reference, link_costs, target=args.target, single=single)
        json_path, md_path = write_report(args.out, "minions", minions_report(analysis), minions_markdown(analysis))
        print(md_path.read_text())
    else:
        analysis_duo = analyse_duo([*members, master], splits.val.labels, splits.test.labels, target=args.target)
        # duo-pairs.*: the analysis; duo.json (written by write_duo): what the server loads
        json_path, md_path = write_report(args.out, "duo-pairs", duo_report(analysis_duo), duo_markdown(analysis_duo))
        if analysis_duo.probe is not None:
            print(f"little/big pair for the cloud: {write_duo(args.out, analysis_duo.probe)}")
        print(md_path.read_text())
    print(f"wrote {json_path} and {md_path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``pool`` and ``pair``."""
    pool = subparsers.add_parser(
        "pool",
        help="build and train a pool of minions from a master's architecture family",
        description="M&MNet's minion pool (thesis 5.3): candidates over width (alpha) and resolution (rho) "
        "multipliers of the master's architecture, timed untrained on the device backend, kept only if faster "
        "than offloading over the fastest link, then trained from labels and distilled from the master. "
        "Resumable: trained members are kept.",
    )
    pool.add_argument("--master", type=Path, required=True, metavar="DIR", help="the master's artifact folder")
    add_dataset(pool)
    pool.add_argument("--out", type=Path, required=True, metavar="DIR", help="the pool folder")
    pool.add_argument(
        "--alphas", type=_floats, default=DEFAULT_ALPHAS, help="width multipliers (default: 0.25,0.5,0.75,1)"
    )
    pool.add_argument("--rhos", type=_floats, default=DEFAULT_RHOS, help="resolution multipliers (default: 1,0.75,0.5)")
    pool.add_argument(
        "--methods",
        type=lambda text: tuple(m.strip() for m in text.split(",") if m.strip()),
        default=METHODS,
        help="how members are trained: labels, distilled or both (default: labels,distilled)",
    )
    add_links(pool)
    pool.add_argument("--device-threads", type=positive_int, default=1, help="threads for the latency calibration")
    add_training(pool, epochs=10)
    add_common(pool)
    pool.set_defaults(func=_cmd_pool)

    pair = subparsers.add_parser(
        "pair",
        help="choose minion pairs per link (M&MNet) or a little/big pair for the server (Dynamic Duo)",
        description="Pair the members of a pool on the validation split and judge them on test. "
        "--kind minions: the pair rule's recovery rate at the target, L_m1 + L_m2 + P_r x L_master and energy "
        "per link, the chosen pair per network against the single speculative model (thesis 5.2.3, Table 5.4). "
        "--kind duo: little/big pairs with the master as the biggest, recomputation rates, the odd-subset top-3 "
        "heuristic against exhaustive search, and duo.json for the cloud (thesis 6.2-6.4). Writes JSON and Markdown.",
    )
    pair.add_argument("--kind", choices=("minions", "duo"), required=True, help="what to pair")
    pair.add_argument("--pool", type=Path, required=True, metavar="DIR", help="a pool folder from specedge pool")
    pair.add_argument("--master", type=Path, metavar="DIR", help="the master (default: the pool's)")
    pair.add_argument("--single", type=Path, metavar="DIR", help="a single speculative model to compare with")
    add_dataset(pair)
    pair.add_argument(
        "--target", type=fraction, default=1.0, help="accuracy as a fraction of the master's (default: 1.0)"
    )
    pair.add_argument(
        "--device", choices=tuple(DEVICE_PROFILES), default="tegra-k1", help="device profile (default: tegra-k1)"
    )
    add_links(pair)
    pair.add_argument("--device-threads", type=positive_int, default=1, help="threads of the device backend")
    pair.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the JSON and Markdown")
    add_common(pair)
    pair.set_defaults(func=_cmd_pair)
