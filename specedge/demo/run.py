"""Run SpecEdge end to end on one dataset and compare it with cloud-only and mobile-only.

1. load the dataset (train / validation / test);
2. train the master CNN (or load the user's artifact);
3. derive the speculative CNN by distillation (or load the user's artifact);
4. calibrate the misspeculation detector on validation: a Learn-then-Test threshold that keeps
   the target (agreement with the master, or a fraction of its accuracy) with probability at
   least 1 - delta (or the user's calibrated detector file);
5. start the cloud server with the master as a separate process on an ephemeral localhost port;
6. run the test set three times through the edge runtime: SpecEdge (speculate + escalate over
   gRPC, auditing a small share of kept answers), cloud-only (every input over gRPC) and
   mobile-only (the master on the device);
7. feed those real records (escalations, audits, message sizes, server times) to the
   simulator: a camera at ``fps`` frames per second on 3G / LTE / WiFi with radio promotion and
   tails, compute priced on a named device profile, and the selector's choice per link;
8. write an edge bundle (every candidate with its detector, and the master) and stream the test set
   through the edge runtime with its per-input selector on, once per link, the real server behind
   the loopback link emulator (:mod:`specedge.demo.live`);
9. write records, the server's request log, a JSON report and plots into the output folder.

Everything transient (the server process, its port file) is removed on exit, also on Ctrl-C.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from specedge.cloud.process import CloudServerProcess, read_request_log
from specedge.compression import distill
from specedge.data import Dataset, DatasetSplits, load_dataset
from specedge.demo.candidates import (
    Candidate,
    build_candidates,
    choose_candidate,
    evaluate_candidate,
    minion_pair,
    on_device,
)
from specedge.demo.live import LiveLinkRun, run_live_links, write_demo_bundle
from specedge.demo.report import DemoReport, ModelSummary, StrategyRun
from specedge.detector import MisspeculationDetector, ModelOutputs, check_target
from specedge.detector.audit import AgreementAudit
from specedge.detector.bank import choose_detector, read_detectors, write_detectors
from specedge.detector.plots import plot_outcomes, plot_tradeoff
from specedge.detector.report import evaluate_detector, tradeoff_curve
from specedge.edge.cloud_client import CloudClient
from specedge.edge.policy import Mode
from specedge.edge.records import InferenceRecord
from specedge.edge.runtime import EdgeRuntime, LocalModel
from specedge.errors import ConfigError
from specedge.models import ImageClassifier, load_artifact
from specedge.models.profiler import profile_classifier
from specedge.simulator import DEVICE_PROFILES, constant_rate_arrivals, get_link_profile
from specedge.simulator.plots import plot_breakdown
from specedge.simulator.system import SystemEvaluation, evaluate_system
from specedge.simulator.workloads import HOST_MEASURED, workload_from_records
from specedge.training import EvalResult, TrainConfig, check_fits, evaluate, save_evaluated, train_new

__all__ = ["DEFAULT_SPECULATIVE_OPTIONS", "DemoConfig", "run_demo"]

#: The demo's detector certifies agreement with the master: digits has 359 validation inputs, and
#: certifying accuracy relative to the master needs thousands (``specedge calibrate`` says how many).
DEFAULT_QUALITY = "agreement"
DEFAULT_TARGET = 0.99

#: LeNet-5 at half width: 62x fewer MACs than ResNet-20, yet few enough errors that matching the
#: master on digits escalates ~5% of inputs (a quarter width needs 20-35%).
DEFAULT_SPECULATIVE_OPTIONS: dict[str, Any] = {"width": 0.5}

#: One camera frame per second: requests close enough to share LTE and 3G radio tails in cloud-only,
#: far enough apart that a 3G cloud-only stream does not queue without end.
DEFAULT_FPS = 1.0
DEVICE_CHOICES = (*DEVICE_PROFILES, HOST_MEASURED)

Log = Callable[[str], None]

#: What the device runs: the speculative model (and its compressed variants) or a minion pair.
LOCAL_MODELS = ("speculative", "minion-pair")


@dataclass(frozen=True)
class DemoConfig:
    """Options of one demo run (the CLI's ``specedge demo`` flags)."""

    out_dir: Path
    dataset: str = "digits"
    data_root: Path | None = None
    cache_dir: Path | None = None
    master_arch: str = "resnet20"
    master_kwargs: dict[str, Any] = field(default_factory=dict)
    speculative_arch: str = "lenet5"
    speculative_kwargs: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_SPECULATIVE_OPTIONS))
    master_artifact: Path | None = None
    speculative_artifact: Path | None = None
    train: TrainConfig = field(default_factory=TrainConfig)
    policy: str = "threshold"
    quality: str = DEFAULT_QUALITY
    target: float = DEFAULT_TARGET
    delta: float | None = 0.05
    detector_file: Path | None = None
    audit_share: float = 0.02
    limit: int | None = None
    links: tuple[str, ...] = ("3g", "lte", "wifi")
    device: str = "tegra-k1"
    fps: float = DEFAULT_FPS
    device_threads: int = 1  # threads of the edge runs (training uses all cores)
    compress: bool = True  # also try SIEVE and int8 variants of the speculative model
    local: str = "speculative"  # or "minion-pair": two distilled minions and the pair rule (M&MNet)
    plots: bool = True
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.detector_file is None:
            check_target(self.quality, self.target)
        elif not self.detector_file.is_file():  # before any training, not after
            raise ConfigError(f"detector file {self.detector_file} does not exist; write one with specedge calibrate")
        if not 0 <= self.audit_share <= 1:
            raise ConfigError(f"audit share must lie in [0, 1]; got {self.audit_share}")
        if self.device_threads < 1:
            raise ConfigError(f"device threads must be >= 1; got {self.device_threads}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of test inputs; got {self.limit}")
        for name in self.links:
            get_link_profile(name)
        if self.device not in (*DEVICE_PROFILES, HOST_MEASURED):
            raise ConfigError(f"unknown device {self.device!r}; expected one of: {', '.join(DEVICE_CHOICES)}")
        if self.local not in LOCAL_MODELS:
            raise ConfigError(f"unknown local model {self.local!r}; expected one of: {', '.join(LOCAL_MODELS)}")
        if self.local == "minion-pair" and self.detector_file is not None:
            raise ConfigError("--detector FILE holds a single-model detector; a minion pair calibrates its own")
        if not self.fps > 0:
            raise ConfigError(f"fps must be > 0 frames per second; got {self.fps}")


@dataclass(frozen=True)
class _Model:
    """A model of the demo with its artifact folder and its one evaluation per split."""

    classifier: ImageClassifier
    path: Path  # the artifact folder
    val: EvalResult
    test: EvalResult
    serving_name: str = ""  # the name the cloud server gives it; "" = the folder's name

    @property
    def name(self) -> str:
        """What the client asks the server for (the server's own rule: ``LoadedModel.serving_name``)."""
        return self.serving_name or self.path.name

    def summary(self, role: str) -> ModelSummary:
        profile = profile_classifier(self.classifier)
        return ModelSummary(
            role=role,
            architecture=self.classifier.spec.label,
            params=profile.total_params,
            macs=profile.total_macs,
            test_accuracy=self.test.accuracy,
        )


def _loaded(path: Path, splits: DatasetSplits, role: str) -> _Model:
    """A user's artifact (its folder or its manifest.json), checked against the dataset and evaluated once."""
    loaded = load_artifact(path)
    classifier = loaded.classifier
    check_fits(classifier.spec, splits, what=f"{role} model {path}")
    return _Model(
        classifier,
        loaded.path,
        evaluate(classifier, splits.val, num_classes=splits.num_classes),
        evaluate(classifier, splits.test, num_classes=splits.num_classes),
        loaded.serving_name,
    )


def _write_records(path: Path, runs: list[StrategyRun], labels: np.ndarray) -> None:
    fields = ["strategy", "index", "label", *InferenceRecord.__dataclass_fields__, "outcome"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for run in runs:
            for index, record in enumerate(run.records):
                writer.writerow(
                    {
                        "strategy": run.strategy,
                        "index": index,
                        "label": int(labels[index]),
                        **record.to_dict(),
                    }
                )


def _run_strategies(
    config: DemoConfig,
    *,
    master: Candidate,
    speculative: Candidate,
    detector: MisspeculationDetector,
    audit: AgreementAudit | None,
    client: CloudClient,
    test: Dataset,
) -> list[StrategyRun]:
    """Every test input through SpecEdge, cloud-only and mobile-only; ids say which run sent it."""
    plans = [
        (
            "SpecEdge",
            EdgeRuntime(
                speculative=[LocalModel(speculative.label, speculative.runner, detector)],
                cloud=client,
                audit=audit,
            ),
        ),
        ("cloud-only", EdgeRuntime(cloud=client, mode=Mode.MISSION_CRITICAL)),
        ("mobile-only", EdgeRuntime(master=LocalModel(master.label, master.runner), mode=Mode.PRIVATE)),
    ]
    runs = []
    for strategy, runtime in plans:
        ids = [f"{strategy}/{i}" for i in range(len(test))]
        records = runtime.run(test.images, ids=ids, show_progress=config.show_progress, description=strategy)
        runs.append(StrategyRun(strategy=strategy, records=records, labels=test.labels))
    return runs


#: The demo's cloud batches concurrent requests (up to 32 images, waiting at most 200 us for company);
#: the edge sends one frame at a time, so its requests mostly run alone, as on a lightly loaded server.
CLOUD_BATCHING = ("--max-batch", "32", "--max-delay-us", "200")

#: A minion pair learns its two per-minion offsets on this share of validation and certifies on the rest:
#: two numbers need few inputs, and certifying 99% agreement needs ~300 (digits has 359).
PAIR_LEARN_FRACTION = 0.1


def _detector(config: DemoConfig, validation: ModelOutputs, *, policy: str | None = None) -> MisspeculationDetector:
    """The user's calibrated detector (matching the demo's policy and target if it has several), or a fresh one."""
    if config.detector_file is not None:
        detectors = read_detectors(config.detector_file)
        chosen = (
            detectors[0]
            if len(detectors) == 1
            else choose_detector(detectors, policy=config.policy, target=config.target)
        )
        if chosen.num_classes_ != validation.num_classes or chosen.policy == "pair":
            raise ConfigError(
                f"detector file {config.detector_file}: its {chosen.policy} detector is for {chosen.num_classes_} "
                f"classes and one speculative model; this demo has {validation.num_classes} classes"
            )
        return chosen
    return MisspeculationDetector(
        policy=policy or config.policy,
        learn_fraction=PAIR_LEARN_FRACTION if policy == "pair" else 0.5,
        quality=config.quality,
        target=config.target,
        delta=config.delta,
        random_state=config.train.seed,
    ).fit(validation.speculative_logits, validation.master_predictions, validation.labels)


def _models(config: DemoConfig, splits: DatasetSplits, log: Log) -> tuple[_Model, _Model]:
    """The master and speculative models: the user's artifacts, or trained and distilled here."""
    out = config.out_dir / "models"
    if config.master_artifact is not None:
        master = _loaded(config.master_artifact, splits, "master")
    else:
        log(f"training master {config.master_arch} on {splits.name} ({len(splits.train)} train images)")
        classifier, trained = train_new(
            config.master_arch,
            splits,
            config.train,
            show_progress=config.show_progress,
            description="master",
            arch_options=config.master_kwargs,
        )
        for restart in trained.restarts:
            log(f"  restarted: {restart}")
        log(f"  best validation accuracy {trained.best_val_accuracy:.2%} at epoch {trained.best_epoch}")
        training = {"config": config.train.to_dict(), **trained.to_dict()}
        master = _Model(classifier, *save_evaluated(out / "master", classifier, splits, training=training))
    if config.speculative_artifact is not None:
        return master, _loaded(config.speculative_artifact, splits, "speculative")
    log(f"distilling speculative {config.speculative_arch} {config.speculative_kwargs} from the master")
    classifier, distilled = distill(
        master.classifier,
        splits,
        config.speculative_arch,
        config.train,
        show_progress=config.show_progress,
        arch_options=config.speculative_kwargs,
    )
    log(f"  {distilled.mac_reduction:.1f}x fewer MACs than the master")
    training = {"config": config.train.to_dict(), **distilled.to_dict()}
    return master, _Model(classifier, *save_evaluated(out / "speculative", classifier, splits, training=training))


def _serve_and_run(
    config: DemoConfig,
    *,
    master: _Model,
    master_device: Candidate,
    speculative: Candidate,
    candidates: list[Candidate],
    detector: MisspeculationDetector,
    audit: AgreementAudit | None,
    test: Dataset,
    log: Log,
) -> tuple[list[StrategyRun], list[str], list[LiveLinkRun]]:
    """The three runs against a real server in a child process, then the live runs on emulated links."""
    request_log_path = config.out_dir / "cloud_requests.jsonl"
    request_log_path.unlink(missing_ok=True)
    training_threads = torch.get_num_threads()
    torch.set_num_threads(config.device_threads)  # the device answers one frame at a time
    try:
        with CloudServerProcess([master.path], request_log_path=request_log_path, server_args=CLOUD_BATCHING) as server:
            log(f"cloud server (separate process, dynamic batching {' '.join(CLOUD_BATCHING)}) on {server.target}")
            with CloudClient(server.target, model_name=master.name) as client:
                runs = _run_strategies(
                    config,
                    master=master_device,
                    speculative=speculative,
                    detector=detector,
                    audit=audit,
                    client=client,
                    test=test,
                )
            cloud_only = next(run for run in runs if run.strategy == "cloud-only").records
            bundle = write_demo_bundle(
                config.out_dir / "bundle",
                candidates=candidates,
                chosen=speculative,
                master=master.path,
                device="host-x86" if config.device == HOST_MEASURED else config.device,
                link=config.links[0],
                server_s=float(np.median([(r.cloud_queue_us or 0) + (r.cloud_compute_us or 0) for r in cloud_only]))
                / 1e6,
            )
            log(f"edge bundle written to {bundle.path}; live runs with the selector on " + ", ".join(config.links))
            live = [
                run
                for device_master in (True, False)
                for run in run_live_links(
                    bundle,
                    candidates=candidates,
                    master=master_device,
                    server_target=server.target,
                    model_name=master.name,
                    links=config.links,
                    test=test,
                    fps=config.fps,
                    device_master=device_master,
                )
            ]
    finally:
        torch.set_num_threads(training_threads)
    return runs, [entry.request_id for entry in read_request_log(request_log_path)], live


def _simulate(
    config: DemoConfig,
    runs: list[StrategyRun],
    *,
    test: Dataset,
    master: _Model,
    speculative: Candidate,
    detector: MisspeculationDetector,
) -> dict[str, list[SystemEvaluation]]:
    """The measured records replayed on each link by the simulator, per selector objective."""
    by_name = {run.strategy: run.records for run in runs}
    workload = workload_from_records(
        "demo",
        speculative=by_name["SpecEdge"],
        cloud_only=by_name["cloud-only"],
        mobile_only=by_name["mobile-only"],
        labels=test.labels,
        images=test.images,
        device=config.device,
        speculative_model=speculative.structures,
        master_model=master.classifier,
        escalation_probability=detector.escalation_rate_,
        audit_share=config.audit_share,
        speculative_widths=speculative.widths,
    )
    arrivals = constant_rate_arrivals(len(test), rate_hz=config.fps)
    return {
        objective: [
            evaluate_system(workload, get_link_profile(link), arrival_s=arrivals, kind="realistic", objective=objective)
            for link in config.links
        ]
        for objective in ("energy", "latency")
    }


def _speculative(
    config: DemoConfig, splits: DatasetSplits, master: _Model, distilled: Path, log: Log
) -> tuple[Candidate, list[Candidate]]:
    """The speculative model the device runs, chosen among the distilled one and its compressed variants."""
    if config.local == "minion-pair":
        return _minion_pair(config, splits, master, distilled, log)
    candidates = build_candidates(
        distilled,
        splits,
        out=config.out_dir / "models" / "compressed",
        compressed=config.compress and config.detector_file is None,  # a given detector fits one model only
        threads=config.device_threads,
        log=log,
    )
    for candidate in candidates:
        _judge_candidate(config, splits, master, candidate)
    chosen = choose_candidate(candidates)
    if len(candidates) > 1:
        log(f"speculative model on the device: {chosen.name} (least simulated energy of {len(candidates)} candidates)")
    return chosen, candidates


def _judge_candidate(config: DemoConfig, splits: DatasetSplits, master: _Model, candidate: Candidate) -> None:
    """The candidate's own detector on validation and its simulated cost on every link."""
    validation = ModelOutputs(candidate.val_logits, master.val.predictions, splits.val.labels)
    evaluate_candidate(
        candidate,
        _detector(config, validation, policy="pair" if candidate.partner is not None else None),
        master=master.classifier,
        master_val=master.val,
        splits=splits,
        device=config.device,
        links=config.links,
        fps=config.fps,
    )


def _minion_pair(
    config: DemoConfig, splits: DatasetSplits, master: _Model, first: Path, log: Log
) -> tuple[Candidate, list[Candidate]]:
    """M&MNet on the device: the distilled minion and a second one distilled with another seed (thesis 5.2)."""
    second = config.out_dir / "models" / "minion-2"
    if not (second / "manifest.json").is_file():
        log(
            f"distilling a second minion {config.speculative_arch} {config.speculative_kwargs} "
            f"(seed {config.train.seed + 1})"
        )
        student, report = distill(
            master.classifier,
            splits,
            config.speculative_arch,
            dataclasses.replace(config.train, seed=config.train.seed + 1),
            show_progress=config.show_progress,
            arch_options=config.speculative_kwargs,
        )
        save_evaluated(second, student, splits, training={"config": config.train.to_dict(), **report.to_dict()})
    threads = config.device_threads
    pair = minion_pair(
        on_device("minion-1", load_artifact(first), splits, threads),
        on_device("minion-2", load_artifact(second), splits, threads),
    )
    _judge_candidate(config, splits, master, pair)
    return pair, [pair]


def _summary(chosen: Candidate) -> ModelSummary:
    structures = chosen.structures if isinstance(chosen.structures, list) else [chosen.structures]
    profiles = [profile_classifier(s) for s in structures]
    return ModelSummary(
        role="speculative",
        architecture=chosen.label,
        params=sum(p.total_params for p in profiles),
        macs=sum(p.total_macs for p in profiles),
        test_accuracy=chosen.test.accuracy,  # a pair: its first minion alone
    )


def run_demo(config: DemoConfig, *, log: Log = print) -> DemoReport:
    """Run the whole demo; see the module docstring for the steps."""
    out = config.out_dir
    (out / "models").mkdir(parents=True, exist_ok=True)
    splits = load_dataset(
        config.dataset,
        data_root=config.data_root,
        cache_dir=config.cache_dir,
        show_progress=config.show_progress,
    )
    log(f"dataset {splits.name}: {len(splits.train)} train / {len(splits.val)} validation / {len(splits.test)} test")
    master, distilled = _models(config, splits, log)
    chosen, candidates = _speculative(config, splits, master, distilled.path, log)
    detector = chosen.detector
    assert detector is not None
    write_detectors(out / "detector.json", [detector])
    log(f"detector: {detector.describe()}; escalates {detector.escalation_rate_:.2%} of validation inputs")
    audit = (
        AgreementAudit.for_detector(detector, share=config.audit_share, seed=config.train.seed)
        if config.audit_share > 0
        else None
    )
    master_device = on_device("master", load_artifact(master.path), splits, config.device_threads)
    log(f"master on the device (mobile-only) runs on {master_device.backend.backend}: {master_device.backend.reason}")

    test = splits.test if config.limit is None else splits.test.subset(np.arange(min(config.limit, len(splits.test))))
    n = len(test)
    runs, server_ids, live = _serve_and_run(
        config,
        master=master,
        master_device=master_device,
        speculative=chosen,
        candidates=candidates,
        detector=detector,
        audit=audit,
        test=test,
        log=log,
    )
    simulated = _simulate(config, runs, test=test, master=master, speculative=chosen, detector=detector)

    test_outputs = ModelOutputs(chosen.test_logits[:n], master.test.predictions[:n], test.labels)
    report = DemoReport(
        dataset=splits.describe(),
        models=[master.summary("master"), _summary(chosen)],
        candidates=[c.row(c is chosen) for c in candidates],
        backends={"speculative": chosen.backend.to_dict(), "master": master_device.backend.to_dict()},
        detector=detector,
        detector_test=evaluate_detector(detector, test_outputs),
        audit=None if audit is None else audit.status(),
        runs=runs,
        server_request_ids=server_ids,
        live=live,
        evaluations=simulated["energy"],
        latency_evaluations=simulated["latency"],
        device=config.device,
        fps=config.fps,
        out_dir=out,
    )
    _write_records(out / "records.csv", runs, test.labels)
    with (out / "live-records.jsonl").open("w") as handle:  # the same records as specedge edge --log writes
        for live_run in live:
            handle.writelines(json.dumps(r.to_dict()) + "\n" for r in live_run.records)
    (out / "report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    if config.plots:
        plot_outcomes(
            detector, out / "outcomes.png", title=f"Calibration outcomes on {splits.name}\n{detector.describe()}"
        )
        plot_tradeoff(
            {detector.policy: tradeoff_curve(detector, test_outputs)},
            report.detector_test.master_accuracy,
            out / "tradeoff.png",
            title=f"Accuracy against recomputation on the {splits.name} test split",
            points={
                "SpecEdge's threshold": (report.detector_test.escalation_rate, report.detector_test.system_accuracy)
            },
        )
        plot_breakdown(
            simulated["energy"],
            out / "costs.png",
            title=f"Simulated cost per input on {splits.name}, normalised by cloud-only "
            f"(device {config.device}, {config.fps:g} frame/s, radio tails)",
        )
    return report
