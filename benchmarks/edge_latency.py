"""Per-input latency of the three ways to answer an input, measured side by side.

For the master and speculative artifacts of a demo run it measures, one input at a time as a
camera delivers them: the speculative model on this machine, the master on this machine
(mobile-only), and a ModelInfer round trip to the master served by a separate
``specedge serve`` process over localhost gRPC (cloud-only without the network). The three are
interleaved in shuffled rounds so machine noise hits them alike, and the ratios are taken per
round before the median: compare ratios, not absolute times, across machines.

    python benchmarks/edge_latency.py --models demo-output/models        # after `specedge demo`
    python benchmarks/edge_latency.py --models DIR --rounds 7 --inputs 300 --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from specedge.cloud.process import CloudServerProcess
from specedge.data import load_dataset
from specedge.edge.cloud_client import CloudClient
from specedge.models import ImageClassifier, load_artifact

Measure = Callable[[np.ndarray, int], None]


def _local(model: ImageClassifier) -> Measure:
    def run(image: np.ndarray, _i: int) -> None:
        with torch.inference_mode():
            torch.softmax(model(torch.from_numpy(image[None])), dim=1)

    return run


def _cloud(client: CloudClient) -> Measure:
    def run(image: np.ndarray, i: int) -> None:
        client.infer(image[None], request_id=f"bench/{i}")

    return run


def _per_input_us(measure: Measure, images: np.ndarray) -> list[float]:
    times = []
    for i, image in enumerate(images):
        start = time.perf_counter_ns()
        measure(image, i)
        times.append((time.perf_counter_ns() - start) / 1e3)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", type=Path, default=Path("demo-output/models"), help="folder with master/ and speculative/"
    )
    parser.add_argument("--dataset", default="digits", help="dataset whose test images are used (default: digits)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--inputs", type=int, default=200, help="test inputs per configuration and round")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on the 'device' (default: 1)")
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/edge_latency.json"))
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    master = load_artifact(args.models / "master").classifier
    speculative = load_artifact(args.models / "speculative").classifier
    images = load_dataset(args.dataset).test.images[: args.inputs]

    rounds: list[dict[str, float]] = []
    with (
        CloudServerProcess([args.models / "master"]) as server,
        CloudClient(server.target, model_name="master") as client,
    ):
        configs = {
            "speculative-local": _local(speculative),
            "master-local": _local(master),
            "cloud-rtt": _cloud(client),
        }
        for measure in configs.values():  # warm-up: first calls allocate and connect
            _per_input_us(measure, images[:10])
        order = list(configs)
        rng = random.Random(0)
        for r in range(args.rounds):
            rng.shuffle(order)
            medians = {name: statistics.median(_per_input_us(configs[name], images)) for name in order}
            rounds.append(medians)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v:8.1f} us" for k, v in sorted(medians.items())))

    def ratio(a: str, b: str) -> float:
        return statistics.median(rnd[a] / rnd[b] for rnd in rounds)

    summary = {
        "median_per_input_us": {k: statistics.median(rnd[k] for rnd in rounds) for k in rounds[0]},
        "ratios": {
            "master_local / speculative_local": ratio("master-local", "speculative-local"),
            "cloud_rtt / master_local": ratio("cloud-rtt", "master-local"),
            "cloud_rtt / speculative_local": ratio("cloud-rtt", "speculative-local"),
        },
        "macs": {
            "master": int(load_artifact(args.models / "master").manifest["macs"]),
            "speculative": int(load_artifact(args.models / "speculative").manifest["macs"]),
        },
        "config": {"rounds": args.rounds, "inputs": len(images), "threads": args.threads, "dataset": args.dataset},
        "machine": {"python": platform.python_version(), "torch": torch.__version__, "cpu": platform.processor()},
        "rounds": rounds,
    }
    print("\nmedian per-input latency (us):")
    for k, v in summary["median_per_input_us"].items():
        print(f"  {k:<18} {v:9.1f}")
    print("ratios (median of per-round ratios):")
    for k, v in summary["ratios"].items():
        print(f"  {k:<32} {v:6.2f}x")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
