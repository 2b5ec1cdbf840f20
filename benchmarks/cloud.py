"""The cloud server under load: batched throughput against the raw model, and latency per offered load.

The CIFAR-10 master of ``_trained.py`` is served by ``python -m specedge serve`` in a child
process (dynamic batching on: ``--max-batch``, ``--max-delay-us``, ``--max-queue``,
``--workers``, ``--rpc-workers``, ``--threads``); the clients run in worker processes (their
GIL is not the server's), each sending batch-1 KServe v2 ModelInfer requests with real test
images over loopback gRPC. On this 2-core host clients and server share the cores: the figures
are the whole system's, as a user measuring from a client on the same machine would see them.

- ``raw_img_per_s``: the same model's batched forward in one process (uint8 -> logits, torch
  eager), per torch thread count and batch size, the better of a measurement before and one after
  the server phases (the host is shared); its best entry is the throughput ceiling.
- ``server_img_per_s``: closed loop, ``clients`` concurrent clients each re-sending at once.
  ``server_vs_raw`` = that / the best raw figure (goal >= 0.8); ``server_vs_raw_same_threads``
  uses the raw figure at the server's torch threads.
- ``batched_vs_batch1``: the same saturated load against a server with ``--max-batch 1``.
- ``latency_ms``: open loop (Poisson arrivals) at fractions of the saturated throughput: p50 and
  p99 of the client-observed latency per offered load (requests/s), plus the share answered.
- ``duo_vs_big``: big/little (Dynamic Duo, ``specedge serve --duo``) vs big-only saturated throughput
  on Fashion-MNIST with the pair ``benchmarks/duo.py`` exported, and both accuracies (null with a
  note if that benchmark has not run).

    python benchmarks/cloud.py --quick       # same code path, shorter phases, quick-trained model
    python benchmarks/cloud.py --out FILE.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import psutil
import torch
from _trained import CACHE, DATA_ROOT, ROOT, prepare

from specedge.data import load_dataset
from specedge.models import load_artifact
from specedge.protocol import tensors
from specedge.protocol._generated import grpc_service_pb2 as pb
from specedge.protocol._generated.grpc_service_pb2_grpc import GRPCInferenceServiceStub

CLIENT_PROCESSES = 2


# --- the server under test -------------------------------------------------------------------


@contextmanager
def serve(
    model: Path | None, *, flags: dict[str, int], models: tuple[str, ...] = ()
) -> Iterator[tuple[str, psutil.Process]]:
    """``python -m specedge serve`` with ``flags`` in a child process; yields its target and process.

    ``model`` is served with ``--model``; ``models`` are other model flags (e.g. ``--duo FILE --little DIR``).
    """
    with tempfile.TemporaryDirectory(prefix="specedge-bench-cloud-") as tmp:
        port_file = Path(tmp) / "port"
        command = [sys.executable, "-m", "specedge", "serve", "--host", "127.0.0.1", *models]
        if model is not None:
            command += ["--model", str(model)]
        command += ["--port", "0", "--port-file", str(port_file)]
        for flag, value in flags.items():
            command += [f"--{flag}", str(value)]
        env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        stderr = (Path(tmp) / "stderr.log").open("wb")
        proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            deadline = time.monotonic() + 120
            while not port_file.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    stderr.flush()
                    raise RuntimeError(f"server did not start: {(Path(tmp) / 'stderr.log').read_text()[-2000:]}")
                time.sleep(0.05)
            target = f"127.0.0.1:{int(port_file.read_text())}"
            with grpc.insecure_channel(target) as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
            yield target, psutil.Process(proc.pid)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stderr.close()


# --- clients (run in worker processes) -----------------------------------------------------


def _requests(images: np.ndarray, model_name: str) -> list[pb.ModelInferRequest]:
    out = []
    for i in range(len(images)):
        request = pb.ModelInferRequest(model_name=model_name)
        tensor = request.inputs.add(name="images")
        tensor.datatype, shape, raw = tensors.encode_raw(images[i : i + 1])
        tensor.shape.extend(shape)
        request.raw_input_contents.append(raw)
        out.append(request)
    return out


def _closed_loop(
    target: str, images: np.ndarray, *, model_name: str, clients: int, duration_s: float, seed: int
) -> dict[str, Any]:
    """``clients`` threads, each on its own channel, re-sending as soon as answered."""
    requests = _requests(images, model_name)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()
    start = threading.Barrier(clients)
    stop_at: list[float] = []

    def client(index: int) -> None:
        rng = np.random.default_rng(seed * 1000 + index)
        mine: list[float] = []
        mine_codes: dict[str, int] = {}
        with grpc.insecure_channel(target) as channel:
            stub = GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
            stub.ServerLive(pb.ServerLiveRequest(), timeout=30)
            if start.wait() == 0:
                stop_at.append(time.perf_counter() + duration_s)
            while not stop_at:
                time.sleep(0.001)
            while time.perf_counter() < stop_at[0]:
                request = requests[int(rng.integers(len(requests)))]
                sent = time.perf_counter()
                try:
                    stub.ModelInfer(request, timeout=60)
                    code = "OK"
                    mine.append((time.perf_counter() - sent) * 1e3)
                except grpc.RpcError as exc:
                    code = exc.code().name
                    time.sleep(0.01)
                mine_codes[code] = mine_codes.get(code, 0) + 1
        with lock:
            latencies.extend(mine)
            for code, n in mine_codes.items():
                codes[code] = codes.get(code, 0) + n

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"ok": codes.get("OK", 0), "codes": codes, "latencies_ms": latencies, "duration_s": duration_s}


def _open_loop(
    target: str, images: np.ndarray, *, model_name: str, rate_per_s: float, duration_s: float, seed: int
) -> dict[str, Any]:
    """Poisson arrivals at ``rate_per_s``: each request is sent on time whatever the others do."""
    requests = _requests(images, model_name)
    rng = np.random.default_rng(seed)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    lock = threading.Lock()
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        stub.ServerLive(pb.ServerLiveRequest(), timeout=30)
        pending = []
        begin = time.perf_counter()
        due = begin
        while True:
            due += float(rng.exponential(1.0 / rate_per_s))
            if due - begin > duration_s:
                break
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            future = stub.ModelInfer.future(requests[int(rng.integers(len(requests)))], timeout=60)

            def done(f: Any, sent: float = sent) -> None:
                took = (time.perf_counter() - sent) * 1e3
                code = f.code().name
                with lock:
                    codes[code] = codes.get(code, 0) + 1
                    if code == "OK":
                        latencies.append(took)

            future.add_done_callback(done)
            pending.append(future)
        for future in pending:
            with suppress(grpc.RpcError):
                future.result()
    time.sleep(0.05)  # the last callbacks
    return {"ok": codes.get("OK", 0), "codes": codes, "latencies_ms": latencies, "duration_s": duration_s}


def _merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    codes: dict[str, int] = {}
    for part in parts:
        for code, n in part["codes"].items():
            codes[code] = codes.get(code, 0) + n
    latencies = [x for part in parts for x in part["latencies_ms"]]
    duration_s = max(part["duration_s"] for part in parts)
    sent = sum(codes.values())
    return {
        "img_per_s": codes.get("OK", 0) / duration_s,
        "answered_share": codes.get("OK", 0) / sent if sent else 0.0,
        "codes": codes,
        "p50_ms": float(np.percentile(latencies, 50)) if latencies else None,
        "p99_ms": float(np.percentile(latencies, 99)) if latencies else None,
    }


def _drive(pool: ProcessPoolExecutor, kind: str, target: str, images: np.ndarray, **kw: Any) -> dict[str, Any]:
    if kind == "closed":
        per = kw["clients"] // CLIENT_PROCESSES
        futures = [
            pool.submit(
                _closed_loop,
                target,
                images,
                model_name=kw["model_name"],
                clients=per,
                duration_s=kw["duration_s"],
                seed=seed,
            )
            for seed in range(CLIENT_PROCESSES)
        ]
    else:
        rate = kw["rate_per_s"] / CLIENT_PROCESSES
        futures = [
            pool.submit(
                _open_loop,
                target,
                images,
                model_name=kw["model_name"],
                rate_per_s=rate,
                duration_s=kw["duration_s"],
                seed=seed,
            )
            for seed in range(CLIENT_PROCESSES)
        ]
    return _merge([f.result() for f in futures])


def _saturate(
    pool: ProcessPoolExecutor, target: str, server: psutil.Process, images: np.ndarray, **kw: Any
) -> dict[str, Any]:
    """A closed-loop phase plus the server's CPU time and batch sizes over it (ModelStatistics)."""
    before_stats, cpu = _model_stats(target, kw["model_name"]), server.cpu_times()
    run = _drive(pool, "closed", target, images, **kw)
    after_stats, cpu_after = _model_stats(target, kw["model_name"]), server.cpu_times()
    inferences = after_stats.inference_count - before_stats.inference_count
    executions = after_stats.execution_count - before_stats.execution_count
    server_cpu_s = (cpu_after.user + cpu_after.system) - (cpu.user + cpu.system)
    run["mean_batch_size"] = inferences / executions if executions else None
    run["server_cpu_ms_per_img"] = server_cpu_s * 1e3 / inferences if inferences else None
    run["server_cores_busy"] = server_cpu_s / kw["duration_s"]
    forward_ns = sum(b.compute_infer.ns for b in after_stats.batch_stats) - sum(
        b.compute_infer.ns for b in before_stats.batch_stats
    )
    run["forward_ms_per_img"] = forward_ns / 1e6 / inferences if inferences else None
    return run


def _model_stats(target: str, model_name: str) -> pb.ModelStatistics:
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        response = stub.ModelStatistics(pb.ModelStatisticsRequest(name=model_name), timeout=30)
    stats: pb.ModelStatistics = response.model_stats[0]
    return stats


# --- the raw model ---------------------------------------------------------------------------


def _accuracy(target: str, model_name: str, images: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the served answers (one request per image, in order)."""
    with grpc.insecure_channel(target) as channel:
        stub = GRPCInferenceServiceStub(channel)  # type: ignore[no-untyped-call]
        right = 0
        for request, label in zip(_requests(images, model_name), labels, strict=True):
            response = stub.ModelInfer(request, timeout=60)
            logits = tensors.decode_outputs(response)["logits"]
            right += int(logits[0].argmax() == label)
    return right / len(labels)


def duo_vs_big(
    pool: ProcessPoolExecutor, *, clients: int, phase_s: float, flags: dict[str, int], quick: bool
) -> dict[str, Any]:
    """Big/little (Dynamic Duo, ``specedge serve --duo``) against the big model alone, same load and flags.

    The pair is the one ``benchmarks/duo.py`` chose on Fashion-MNIST (its ``duo.json``, little model from
    the minion pool, big = the master); both servers get the same saturated closed loop of batch-1
    requests, and both answer the same test images once more for accuracy.
    """
    pool_dir = CACHE / ("pool-fashion-quick" if quick else "pool-fashion")
    duo_json = pool_dir / "duo" / "duo.json"
    big = CACHE / ("fashion-quick" if quick else "fashion") / "master"
    if not duo_json.is_file() or not big.is_dir():
        return {"ratio": None, "note": f"not measured: run python benchmarks/duo.py{' --quick' if quick else ''} first"}
    little = pool_dir / json.loads(duo_json.read_text())["little"]
    splits = load_dataset("fashion-mnist", data_root=DATA_ROOT, cache_dir=CACHE / "data-cache")
    images, labels = splits.test.images[:1000], splits.test.labels[:1000]
    name = load_artifact(big).serving_name
    runs: dict[str, Any] = {}
    for label, model, models in (
        ("big", big, ()),
        ("duo", None, ("--duo", str(duo_json), "--little", str(little), "--big", str(big))),
    ):
        print(f"saturated, {label} server (Fashion-MNIST)...", file=sys.stderr)
        with serve(model, flags=flags, models=models) as (target, server):
            _drive(pool, "closed", target, images[:256], clients=8, duration_s=1.0, model_name=name)  # warm-up
            run = _saturate(pool, target, server, images[:256], clients=clients, duration_s=phase_s, model_name=name)
            run["accuracy"] = _accuracy(target, name, images, labels)
            run.pop("latencies_ms", None)
            runs[label] = run
    return {
        "ratio": runs["duo"]["img_per_s"] / runs["big"]["img_per_s"],
        "accuracy_big": runs["big"]["accuracy"],
        "accuracy_duo": runs["duo"]["accuracy"],
        "little": little.name,
        "runs": runs,
        "note": "throughput ratio at the duo's exported thresholds (100% of the big model's validation accuracy)",
    }


def raw_throughput(model: Path, images: np.ndarray, *, threads: int, seconds: float) -> dict[str, float]:
    """Images/s of the batched forward (uint8 -> float32 logits) per batch size, in this process."""
    classifier = load_artifact(model).classifier.eval()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    out = {}
    try:
        for batch in (16, 64, 128):
            x = images[:batch]
            with torch.inference_mode():
                classifier(torch.from_numpy(x.copy()))  # warm-up
                done, started = 0, time.perf_counter()
                while time.perf_counter() - started < seconds:
                    classifier(torch.from_numpy(x.copy())).to(torch.float32).numpy()
                    done += batch
            out[str(batch)] = done / (time.perf_counter() - started)
    finally:
        torch.set_num_threads(previous)
    return out


# --- main --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="shorter phases, quick-trained model (same code path)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cloud.json")
    parser.add_argument("--clients", type=int, default=64, help="concurrent clients at saturation (default: 64)")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (default: 1)")
    args = parser.parse_args()
    started = time.time()
    trained = prepare("cifar10", quick=args.quick, log=lambda m: print(m, file=sys.stderr))
    images = trained.splits.test.images[:256]
    phase_s = 3.0 if args.quick else 10.0
    batching = {"max-batch": 64, "max-delay-us": 0, "max-queue": 1024, "workers": 1}
    common = {"rpc-workers": args.clients + 32, "threads": args.threads}
    report: dict[str, Any] = {
        "command": " ".join(["python", "benchmarks/cloud.py", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": platform.platform(),
        "cores": os.cpu_count(),
        "model": f"cifar10/{load_artifact(trained.master).classifier.spec.label}",
        "clients": args.clients,
        "client_processes": CLIENT_PROCESSES,
        "server_flags": {**batching, **common},
        "phase_s": phase_s,
    }
    print("raw forward throughput...", file=sys.stderr)
    raw_runs = [{str(t): raw_throughput(trained.master, images, threads=t, seconds=phase_s / 3) for t in (1, 2)}]
    model_name = trained.master.name
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=CLIENT_PROCESSES, mp_context=context) as pool:
        list(pool.map(time.sleep, [0.0] * CLIENT_PROCESSES))  # start the workers (imports) before timing
        print("saturated, batched server...", file=sys.stderr)
        with serve(trained.master, flags={**batching, **common}) as (target, server):
            _drive(pool, "closed", target, images, clients=8, duration_s=1.0, model_name=model_name)  # warm-up
            saturated = _saturate(
                pool, target, server, images, clients=args.clients, duration_s=phase_s, model_name=model_name
            )
            latency: dict[str, Any] = {}
            for fraction in (0.25, 0.5, 0.75, 0.9):
                rate = max(1.0, fraction * saturated["img_per_s"])
                print(f"open loop at {rate:.0f} req/s...", file=sys.stderr)
                run = _drive(pool, "open", target, images, rate_per_s=rate, duration_s=phase_s, model_name=model_name)
                latency[f"{rate:.0f}"] = {
                    "fraction_of_saturation": fraction,
                    "p50": run["p50_ms"],
                    "p99": run["p99_ms"],
                    "answered_share": run["answered_share"],
                    "codes": run["codes"],
                }
        print("saturated, batch-1 server...", file=sys.stderr)
        with serve(trained.master, flags={**batching, "max-batch": 1, **common}) as (target, server):
            _drive(pool, "closed", target, images, clients=8, duration_s=1.0, model_name=model_name)
            batch1 = _saturate(
                pool, target, server, images, clients=args.clients, duration_s=phase_s, model_name=model_name
            )
        duo = duo_vs_big(pool, clients=args.clients, phase_s=phase_s, flags={**batching, **common}, quick=args.quick)
    print("raw forward throughput again...", file=sys.stderr)
    raw_runs.append({str(t): raw_throughput(trained.master, images, threads=t, seconds=phase_s / 3) for t in (1, 2)})
    # The ceiling: the better of the two measurements (before and after the server phases) per
    # threads and batch size, so a busy moment on the shared host does not flatter the server.
    report["raw_img_per_s"] = {t: {b: max(run[t][b] for run in raw_runs) for b in raw_runs[0][t]} for t in raw_runs[0]}
    report["raw_runs"] = raw_runs
    report["load_average"] = os.getloadavg()
    best_raw = max(v for per in report["raw_img_per_s"].values() for v in per.values())
    same_raw = max(report["raw_img_per_s"][str(args.threads)].values())
    report["saturated"] = saturated
    report["batch1"] = batch1
    report["server_img_per_s"] = saturated["img_per_s"]
    report["server_vs_raw"] = saturated["img_per_s"] / best_raw
    report["server_vs_raw_same_threads"] = saturated["img_per_s"] / same_raw
    report["batched_vs_batch1"] = saturated["img_per_s"] / batch1["img_per_s"] if batch1["img_per_s"] else None
    report["latency_ms"] = latency
    report["duo"] = duo
    report["duo_vs_big"] = duo["ratio"]
    report["duo_note"] = duo["note"]
    report["seconds"] = time.time() - started

    print(f"model {report['model']}, {args.clients} clients in {CLIENT_PROCESSES} processes, {os.cpu_count()} cores")
    for t, per in report["raw_img_per_s"].items():
        print(f"raw forward, {t} torch thread(s): " + ", ".join(f"b{b} {v:.0f}" for b, v in per.items()) + " img/s")
    print(f"{'server':<10} {'img/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'batch':>6} {'fwd ms/img':>10} "
          f"{'cpu ms/img':>10} {'cores':>6} codes")  # fmt: skip
    for label, run in (("batched", saturated), ("batch 1", batch1)):
        print(
            f"{label:<10} {run['img_per_s']:7.0f} {run['p50_ms']:7.1f} {run['p99_ms']:7.1f} "
            f"{run['mean_batch_size'] or 0:6.1f} {run['forward_ms_per_img'] or 0:10.3f} "
            f"{run['server_cpu_ms_per_img'] or 0:10.3f} {run['server_cores_busy']:6.2f} {run['codes']}"
        )
    print(
        f"server_vs_raw {report['server_vs_raw']:.2f} (same threads {report['server_vs_raw_same_threads']:.2f}), "
        f"batched_vs_batch1 {report['batched_vs_batch1']:.2f}"
    )
    print(f"{'offered req/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'answered':>8}")
    for rate, row in latency.items():
        p50 = f"{row['p50']:8.1f}" if row["p50"] is not None else f"{'-':>8}"
        p99 = f"{row['p99']:8.1f}" if row["p99"] is not None else f"{'-':>8}"
        print(f"{rate:>13} {p50} {p99} {row['answered_share']:8.3f}")
    if duo["ratio"] is None:
        print(f"duo_vs_big: {duo['note']}")
    else:
        print(
            f"duo_vs_big {duo['ratio']:.2f} (duo {duo['runs']['duo']['img_per_s']:.0f} vs big "
            f"{duo['runs']['big']['img_per_s']:.0f} img/s; accuracy {duo['accuracy_duo']:.4f} vs "
            f"{duo['accuracy_big']:.4f})"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
