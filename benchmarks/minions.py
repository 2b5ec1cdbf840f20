"""M&MNet minion pools and pairs per link (thesis 5.3, Table 5.4) on MNIST and Fashion-MNIST.

For each dataset the cached benchmark master (``_trained.py``, LeNet-5) seeds a pool: width
(alpha) x resolution (rho) multipliers of its family, timed untrained on ONNX Runtime, kept when
faster than offloading over the fastest link, trained from labels and distilled. Every pair of
members is fitted with the pair rule on validation at 100% of the master's accuracy and judged
on test; per link the cheapest pair (L_m1 + L_m2 + P_r x L_master on the tegra-k1 profile) is set
against the single distilled speculative model and its int8 variant. JSON keys: ``pool``,
``pairs_by_link``, ``single_model``.

    python benchmarks/minions.py --quick      # one small pool, a few epochs: same code path
    python benchmarks/minions.py --out FILE.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _trained import CACHE, prepare

from specedge.compression.pipeline import compress
from specedge.compression.pool import build_pool, link_offload_costs, master_reference, pool_member, read_pool
from specedge.models import load_artifact
from specedge.pairing import analyse_minions, minions_report
from specedge.training import TrainConfig

DEVICE = "tegra-k1"
LINKS = ("3g", "lte", "wifi")


def _pool_table(record: dict[str, Any]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for member in record["members"]:
        c = member["candidate"]
        row = rows.setdefault(
            c["name"],
            {
                "candidate": c["name"],
                "alpha": c["alpha"],
                "rho": c["rho"],
                "macs": c["macs"],
                "params": c["params"],
                "calibrated_latency_us": c["latency_s"] * 1e6,
            },
        )
        row[f"{member['method']}_test_accuracy"] = member["test_accuracy"]
    dropped = [
        {"candidate": c["name"], "alpha": c["alpha"], "rho": c["rho"], "macs": c["macs"], "dropped": True}
        for c in record["candidates"]
        if not c["kept"]
    ]
    return [*rows.values(), *dropped]


def run(name: str, *, quick: bool, log: Any) -> dict[str, Any]:
    """Pool, pairs per link and the single-model comparison for one setup."""
    trained = prepare(name, quick=quick, log=log)
    torch.set_num_threads(2)
    splits = trained.splits
    folder = CACHE / (f"pool-{name}-quick" if quick else f"pool-{name}")
    if quick:  # the pool trains on the same slice as the quick master
        splits = dataclasses.replace(splits, train=splits.train.subset(np.arange(min(6000, len(splits.train)))))
    config = TrainConfig(epochs=1 if quick else 3, lr=2e-3)
    alphas, rhos = ((0.25, 0.5), (1.0, 0.75)) if quick else ((0.25, 0.5, 1.0), (1.0, 0.75))
    started = time.perf_counter()
    record = build_pool(trained.master, splits, folder, config=config, alphas=alphas, rhos=rhos, log=log)
    pool_s = time.perf_counter() - started
    _, entries = read_pool(folder)
    members = [pool_member(e.name, Path(e.path), splits, device=DEVICE) for e in entries]
    master = pool_member("master", trained.master, splits, device=DEVICE)
    reference, link_costs = master_reference(master, splits), link_offload_costs(LINKS, splits)
    singles = {"distilled": pool_member("single:distilled", trained.speculative, splits, device=DEVICE)}
    int8_dir = folder / "single-int8"
    if not (int8_dir / "int8" / "manifest.json").is_file():
        compress(load_artifact(trained.speculative), splits, method="int8", out=int8_dir)
    singles["int8"] = pool_member("single:int8", int8_dir / "int8", splits, device=DEVICE)
    reports = {
        kind: minions_report(analyse_minions(members, reference, link_costs, target=1.0, single=single))
        for kind, single in singles.items()
    }
    main = reports["distilled"]
    return {
        "dataset": splits.name,
        "master": load_artifact(trained.master).spec.label,
        "master_test_accuracy": reference.test_accuracy,
        "pool_build_s": pool_s,
        "fastest_link": record["fastest_link"],
        "offload_ms": record["offload_s"] * 1e3,
        "pool": _pool_table(record),
        "pairs_by_link": main["pairs_by_link"],
        "single_model": {kind: r["single"] for kind, r in reports.items()},
        "pairs_by_link_vs_int8": reports["int8"]["pairs_by_link"],
        "pairs": main["pairs"],
    }


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small pool on a quick master (same code path)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "minions.json")
    parser.add_argument("--datasets", default="mnist,fashion", help="comma-separated setups (default: mnist,fashion)")
    args = parser.parse_args()
    started = time.time()
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/minions.py", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": platform.platform(),
        "device": DEVICE,
        "target": 1.0,
        "setups": [run(name, quick=args.quick, log=_log) for name in args.datasets.split(",")],
    }
    report["seconds"] = time.time() - started
    for setup in report["setups"]:
        print(f"\n{setup['dataset']}: master {setup['master']} ({setup['master_test_accuracy']:.2%} test)")
        print(f"  {'candidate':<22} {'MACs':>10} {'us':>6} {'labels':>8} {'distilled':>9}")
        for row in setup["pool"]:
            if row.get("dropped"):
                print(f"  {row['candidate']:<22} {row['macs']:>10,} dropped (slower than offloading)")
                continue
            print(
                f"  {row['candidate']:<22} {row['macs']:>10,} {row['calibrated_latency_us']:>6.0f} "
                f"{row.get('labels_test_accuracy', float('nan')):>8.2%} "
                f"{row.get('distilled_test_accuracy', float('nan')):>9.2%}"
            )
        print(f"  {'link':<6} {'pair':<56} {'P_r':>7} {'L ms':>8} {'E mJ':>8}  best alternative (L ms / E mJ)")
        for row in setup["pairs_by_link"]:
            pair = " + ".join(row["pair"] or ["(no pair reaches the target)"])
            alt = row["best_alternative"]
            print(
                f"  {row['link']:<6} {pair:<56} {row['escalation_rate'] or 0:>7.2%} {row['latency_ms'] or 0:>8.3f} "
                f"{row['energy_mj'] or 0:>8.3f}  {alt['option']} ({alt['latency_ms']:.3f} / {alt['energy_mj']:.3f}); "
                f"pair wins: {row['pair_wins']}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
