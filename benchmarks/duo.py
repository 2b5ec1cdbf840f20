"""Dynamic Duo on the server (thesis ch. 6): a little model answers, a big one recomputes the doubtful inputs.

On Fashion-MNIST, the minion pool of ``benchmarks/minions.py`` (built if missing) plus its master
form the candidates. For each (little, big) pair: the recomputation rate at 100% of the big
model's accuracy (fitted on validation, judged on test), L_pair / L_big and E_pair / E_big on the
tegra-k1-class cost model, the odd-subset top-3 heuristic against exhaustive search, and the
chosen pair's probe with one threshold and per-class thresholds. JSON keys: ``recompute_rate``,
``latency_ratio``, ``energy_ratio``, ``heuristic_agrees`` (plus the full tables). The live server
throughput figure (thesis: 2.1x) needs the cloud service's big/little mode.

    python benchmarks/duo.py --quick
    python benchmarks/duo.py --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

from _trained import CACHE, prepare
from minions import DEVICE, run

from specedge.compression.pool import pool_member, read_pool
from specedge.pairing import analyse_duo, duo_report, write_duo


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a small pool on a quick master (same code path)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "duo.json")
    parser.add_argument("--dataset", default="fashion", help="setup whose pool is paired (default: fashion)")
    args = parser.parse_args()
    started = time.time()
    setup = run(args.dataset, quick=args.quick, log=_log)  # builds (or reuses) the pool and its master
    trained = prepare(args.dataset, quick=args.quick, log=_log)
    splits = trained.splits
    folder = CACHE / (f"pool-{args.dataset}-quick" if args.quick else f"pool-{args.dataset}")
    _, entries = read_pool(folder)
    members = [pool_member(e.name, Path(e.path), splits, device=DEVICE) for e in entries]
    members.append(pool_member("master", trained.master, splits, device=DEVICE))
    analysis = analyse_duo(members, splits.val.labels, splits.test.labels, target=1.0)
    table = duo_report(analysis)
    selection = analysis.selection
    # the exhaustive choice; when no pair is cheaper than the single model, the cheapest reachable pair
    # whose big is that model, so the rates are still reported (and "pair_beats_single" says it lost)
    fallback = [p for p in analysis.pairs if p.big == selection.single and p.cost is not None]
    chosen = selection.exhaustive or (min(fallback, key=lambda p: p.cost or (0.0, 0.0)) if fallback else None)
    ratios = None if chosen is None else chosen.ratios
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/duo.py", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": platform.platform(),
        "dataset": setup["dataset"],
        "device": DEVICE,
        "target": 1.0,
        "chosen": None if chosen is None else {"little": chosen.little, "big": chosen.big},
        "recompute_rate": None if chosen is None else chosen.fit.escalation_rate,
        "test_recompute_rate": None if chosen is None else chosen.fit.test_escalation_rate,
        "latency_ratio": None if ratios is None else ratios[0],
        "energy_ratio": None if ratios is None else ratios[1],
        "pair_beats_single": selection.exhaustive is not None,
        "heuristic_agrees": selection.heuristic_agrees,
        "tables": table,
    }
    if analysis.probe is not None:
        report["duo_file"] = str(write_duo(folder / "duo", analysis.probe))
    report["seconds"] = time.time() - started
    print(json.dumps({k: v for k, v in report.items() if k != "tables"}, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
