"""Tables of the pairing analyses: JSON-ready dicts and Markdown.

``minions_*`` render M&MNet's pairing (every pair, then the choice per link in the shape of thesis
Table 5.4 with the single-model, cloud-only and mobile-only alternatives); ``duo_*`` render Dynamic
Duo's pairs (correct sets, recomputation rates, cost ratios against the big model), the pair search
(heuristic against exhaustive, thesis section 6.5.5) and the chosen probe (single against per-class
thresholds, section 6.4.2). Latencies are reported in ms; NaN and infinities become ``null``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from specedge.detector import probability_from_score
from specedge.pairing.duo import DuoAnalysis, DuoPair, DuoSelection
from specedge.pairing.minions import LinkChoice, MinionsAnalysis, Speculation

__all__ = ["duo_markdown", "duo_report", "minions_markdown", "minions_report", "write_report"]


def _num(value: float | None) -> float | None:
    """JSON has no NaN or infinity: those become None."""
    return None if value is None or not math.isfinite(value) else float(value)


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, spec)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _cost(cost: tuple[float, float] | None) -> dict[str, float | None]:
    return (
        {"latency_ms": None, "energy_mj": None} if cost is None else {"latency_ms": cost[0] * 1e3, "energy_mj": cost[1]}
    )


def _speculation(spec: Speculation) -> dict[str, Any]:
    detector = spec.detector
    thresholds = None
    if detector is not None and detector.policy in ("pair", "threshold"):
        thresholds = detector.offsets_.tolist() if detector.policy == "pair" else [detector.threshold_]
    return {
        "members": list(spec.members),
        "reachable": spec.reachable,
        "escalation_rate": spec.escalation_rate,
        "test_escalation_rate": spec.test_escalation_rate,
        "test_accuracy_ratio": _num(spec.test_accuracy_ratio),
        "thresholds": thresholds,
        "device_latency_ms": spec.latency_s * 1e3,
        "device_energy_mj": spec.energy_mj,
        "reason": spec.reason,
    }


def _link(choice: LinkChoice, single: Speculation | None) -> dict[str, Any]:
    best = choice.best_alternative
    single_cost = None if single is None else choice.alternatives.get(f"single:{single.label}")
    return {
        "link": choice.link,
        "transfer": _cost(choice.transfer),
        "recovery_host": choice.recovery_host,
        "pair": None if choice.pair is None else list(choice.pair.members),
        "reachable": choice.pair is not None,
        "escalation_rate": None if choice.pair is None else choice.pair.escalation_rate,
        **_cost(choice.pair_cost),
        "single": None if single is None else {"model": single.label, **_cost(single_cost)},
        "best_alternative": {"option": best, **_cost(choice.alternatives[best])},
        "pair_wins": choice.pair_wins,
    }


def minions_report(analysis: MinionsAnalysis) -> dict[str, Any]:
    """M&MNet's pairing as a JSON-ready dict; ``pairs_by_link`` is the lookup table (thesis Table 5.4)."""
    master = analysis.master
    return {
        "target": analysis.target,
        "master": {
            "name": master.name,
            "val_accuracy": master.val_accuracy,
            "test_accuracy": master.test_accuracy,
            "on_device": None if master.on_device is None else _cost(master.on_device),
        },
        "reachable": analysis.reachable,
        "pairs": [_speculation(pair) for pair in analysis.pairs],
        "single": None if analysis.single is None else _speculation(analysis.single),
        "pairs_by_link": [_link(choice, analysis.single) for choice in analysis.links],
    }


def minions_markdown(analysis: MinionsAnalysis, *, title: str = "M&MNet minion pairing") -> str:
    """Markdown: the choice per link, then every pair."""
    report = minions_report(analysis)
    master = report["master"]
    lines = [
        f"# {title}",
        "",
        f"Master {master['name']}: accuracy {master['val_accuracy']:.2%} (validation), {master['test_accuracy']:.2%} "
        f"(test); target {analysis.target:g} x the master's accuracy.",
        "",
        "## Pairs by link",
        "",
        "| link | pair | P_r | L ms | E mJ | recovery on | single model (L ms / E mJ) | best alternative (L ms / E mJ) "
        "| pair wins |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["pairs_by_link"]:
        pair = " + ".join(row["pair"]) if row["pair"] else "unreachable"
        single = row["single"]
        single_text = (
            "-"
            if single is None
            else f"{single['model']} ({_fmt(single['latency_ms'], '.3g')} / {_fmt(single['energy_mj'], '.3g')})"
        )
        best = row["best_alternative"]
        lines.append(
            f"| {row['link']} | {pair} | {_pct(row['escalation_rate'])} | {_fmt(row['latency_ms'], '.3g')} | "
            f"{_fmt(row['energy_mj'], '.3g')} | {row['recovery_host']} | {single_text} | {best['option']} "
            f"({best['latency_ms']:.3g} / {best['energy_mj']:.3g}) | {'yes' if row['pair_wins'] else 'no'} |"
        )
    lines += [
        "",
        "## Every pair (rule fitted on validation, judged on test)",
        "",
        "| pair | P_r validation | P_r test | accuracy / master (test) | device L ms | device E mJ |",
        "|---|---|---|---|---|---|",
    ]
    speculations = [*report["pairs"], *([report["single"]] if report["single"] else [])]
    for row in speculations:
        lines.append(
            f"| {' + '.join(row['members'])} | {_pct(row['escalation_rate'])} | {_pct(row['test_escalation_rate'])} | "
            f"{_fmt(row['test_accuracy_ratio'])} | {row['device_latency_ms']:.3g} | {row['device_energy_mj']:.3g} |"
        )
    return "\n".join(lines) + "\n"


def _curve(pair: DuoPair, score: str, points: int) -> dict[str, list[float]]:
    """About ``points`` evenly spaced samples of the curve, both ends included."""
    curve = pair.curve
    index = np.unique(np.round(np.linspace(0, len(curve.rate) - 1, points)).astype(np.int64))
    return {
        "rate": curve.rate[index].tolist(),
        "accuracy": curve.accuracy[index].tolist(),
        "threshold": probability_from_score(score, curve.thresholds[index]).tolist(),
    }


def _duo_pair(pair: DuoPair, score: str, curve_points: int) -> dict[str, Any]:
    detector = pair.fit.detector
    ratios = pair.ratios
    return {
        "little": pair.little,
        "big": pair.big,
        "sets": pair.sets.fractions(),
        "reachable": pair.reachable,
        "recompute_rate": pair.fit.escalation_rate,
        "test_recompute_rate": pair.fit.test_escalation_rate,
        "test_accuracy_ratio": _num(pair.fit.test_accuracy_ratio),
        "threshold": None if detector is None else float(probability_from_score(score, detector.threshold_)),
        **_cost(pair.cost),
        "latency_ratio": None if ratios is None else ratios[0],
        "energy_ratio": None if ratios is None else ratios[1],
        "curve": _curve(pair, score, curve_points),
    }


def _names(pair: DuoPair | None) -> dict[str, str] | None:
    return None if pair is None else {"little": pair.little, "big": pair.big}


def _selection(selection: DuoSelection) -> dict[str, Any]:
    return {
        "baseline": selection.baseline,
        "single": selection.single,
        "ranking": [{"little": name, "odd": odd} for name, odd in selection.ranking],
        "top_k": selection.top_k,
        "candidates": list(selection.candidates),
        "heuristic": _names(selection.heuristic),
        "exhaustive": _names(selection.exhaustive),
        "heuristic_agrees": selection.heuristic_agrees,
    }


def duo_report(analysis: DuoAnalysis, *, curve_points: int = 21) -> dict[str, Any]:
    """Dynamic Duo's analysis as a JSON-ready dict (curves sampled at about ``curve_points`` points)."""
    probe = analysis.probe
    return {
        "target": analysis.target,
        "score": analysis.score,
        "accuracy": {name: {"val": val, "test": test} for name, (val, test) in analysis.accuracy.items()},
        "pairs": [_duo_pair(pair, analysis.score, curve_points) for pair in analysis.pairs],
        "selection": _selection(analysis.selection),
        "probe": None
        if probe is None
        else {
            "little": probe.little,
            "big": probe.big,
            "best_policy": probe.best_policy,
            "policies": {
                policy: {
                    "recompute_rate": fit.escalation_rate,
                    "test_recompute_rate": fit.test_escalation_rate,
                    "test_accuracy_ratio": _num(fit.test_accuracy_ratio),
                }
                for policy, fit in probe.fits.items()
            },
        },
    }


def duo_markdown(analysis: DuoAnalysis, *, title: str = "Dynamic Duo pairing") -> str:
    """Markdown: every pair, the pair search and the chosen probe."""
    report = duo_report(analysis, curve_points=2)
    lines = [
        f"# {title}",
        "",
        f"Target {analysis.target:g} x the big model's validation accuracy; correct sets on validation.",
        "",
        "| little | big | common | odd | complex | neither | P_r validation | P_r test | accuracy / big (test) "
        "| L_pair / L_big | E_pair / E_big |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["pairs"]:
        sets = row["sets"]
        lines.append(
            f"| {row['little']} | {row['big']} | {sets['common']:.2%} | {sets['odd']:.2%} | {sets['complex']:.2%} | "
            f"{sets['neither']:.2%} | {_pct(row['recompute_rate'])} | {_pct(row['test_recompute_rate'])} | "
            f"{_fmt(row['test_accuracy_ratio'])} | {_fmt(row['latency_ratio'], '.3f')} | "
            f"{_fmt(row['energy_ratio'], '.3f')} |"
        )
    selection = report["selection"]
    ranking = ", ".join(f"{r['little']} ({r['odd']})" for r in selection["ranking"]) or "none"

    def picked(choice: dict[str, str] | None) -> str:
        return f"{choice['little']} -> {choice['big']}" if choice else f"single model {selection['single']}"

    lines += [
        "",
        "## Pair search",
        "",
        f"- baseline {selection['baseline']}; heuristic big (cheapest at least as accurate): {selection['single']}",
        f"- littles by odd-subset size: {ranking}; top {selection['top_k']} priced",
        f"- heuristic: {picked(selection['heuristic'])}; exhaustive: {picked(selection['exhaustive'])}; "
        f"agree: {'yes' if selection['heuristic_agrees'] else 'no'}",
    ]
    probe = report["probe"]
    if probe is not None:
        lines += [
            "",
            f"## Confidence probe of {probe['little']} -> {probe['big']} (exported: {probe['best_policy']})",
            "",
            "| policy | P_r validation | P_r test | accuracy / big (test) |",
            "|---|---|---|---|",
        ]
        for policy, row in probe["policies"].items():
            lines.append(
                f"| {policy} | {_pct(row['recompute_rate'])} | {_pct(row['test_recompute_rate'])} | "
                f"{_fmt(row['test_accuracy_ratio'])} |"
            )
    return "\n".join(lines) + "\n"


def write_report(directory: Path, stem: str, report: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write ``<stem>.json`` and ``<stem>.md`` under ``directory``; return both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")
    markdown_path.write_text(markdown)
    return json_path, markdown_path
