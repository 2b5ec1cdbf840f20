"""Trained models and stored outputs shared by the benchmarks (cached under ``runs/bench``).

Each benchmark setup names a dataset, a master, a speculative model distilled from it and a
second minion (same architecture, another seed) for the pair policy. Models are trained once
and cached as artifacts; their validation and test outputs are cached as
:class:`~specedge.detector.ModelOutputs` tables, so re-running a benchmark costs seconds.
``quick`` trains on a slice of the training set for two epochs: the same code path on small
data, for ``--quick`` runs.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from specedge.compression import distill
from specedge.data import DatasetSplits, load_dataset
from specedge.detector import ModelOutputs
from specedge.models import ImageClassifier, load_artifact
from specedge.training import TrainConfig, predict_logits, save_evaluated, train_new

ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "datasets"
CACHE = ROOT / "runs" / "bench"


@dataclass(frozen=True)
class Setup:
    """One benchmark configuration: dataset, master, speculative and second minion."""

    name: str
    dataset: str
    master: tuple[str, dict[str, Any]]
    speculative: tuple[str, dict[str, Any]]
    train: TrainConfig = field(default_factory=TrainConfig)


SETUPS = {
    "mnist": Setup("mnist", "mnist", ("lenet5", {}), ("lenet5", {"width": 0.25}), TrainConfig(epochs=15, lr=2e-3)),
    "fashion": Setup(
        "fashion", "fashion-mnist", ("lenet5", {}), ("lenet5", {"width": 0.25}), TrainConfig(epochs=8, lr=2e-3)
    ),
    "cifar10": Setup(
        "cifar10",
        "cifar10-jpeg",
        ("convnet", {}),
        ("convnet", {"width": 0.5}),
        TrainConfig(epochs=30, lr=2e-3, augment="shift-flip"),
    ),
}


@dataclass(frozen=True)
class Trained:
    """Paths and stored outputs of one setup."""

    setup: Setup
    splits: DatasetSplits
    master: Path
    speculative: Path
    second_minion: Path

    def classifier(self, role: str) -> ImageClassifier:
        """Load the ``master``, ``speculative`` or ``second_minion`` artifact."""
        return load_artifact(getattr(self, role)).classifier

    def outputs(self, split: str, *, pair: bool = False) -> ModelOutputs:
        """Cached outputs on ``val`` or ``test``; ``pair`` stacks both minions' logits."""
        path = self.master.parent / f"outputs-{split}.npz"
        if not path.exists():
            data = getattr(self.splits, split)
            master = predict_logits(self.classifier("master"), data.images).argmax(axis=1)
            minions = [predict_logits(self.classifier(r), data.images) for r in ("speculative", "second_minion")]
            np.savez_compressed(path, master=master, labels=data.labels, first=minions[0], second=minions[1])
        with np.load(path, allow_pickle=False) as stored:
            logits = np.stack([stored["first"], stored["second"]], axis=1) if pair else stored["first"]
            return ModelOutputs(logits, stored["master"], stored["labels"])


def _quick_splits(splits: DatasetSplits) -> DatasetSplits:
    rng = np.random.default_rng(0)
    keep = np.sort(rng.permutation(len(splits.train))[: min(len(splits.train), 6000)])
    return dataclasses.replace(splits, train=splits.train.subset(keep))


def prepare(name: str, *, quick: bool, log: Any = print) -> Trained:
    """Train (or load from the cache) the models of setup ``name`` and return their paths."""
    setup = SETUPS[name]
    folder = CACHE / (f"{name}-quick" if quick else name)
    splits = load_dataset(setup.dataset, data_root=DATA_ROOT, cache_dir=CACHE / "data-cache")
    train_splits = _quick_splits(splits) if quick else splits
    config = dataclasses.replace(setup.train, epochs=2) if quick else setup.train
    torch.set_num_threads(2)
    master_path = folder / "master"
    if not (master_path / "manifest.json").exists():
        log(f"[{name}] training master {setup.master[0]} {setup.master[1]}")
        model, result = train_new(setup.master[0], train_splits, config, arch_options=setup.master[1])
        save_evaluated(master_path, model, splits, training={"config": config.to_dict(), **result.to_dict()})
    master = load_artifact(master_path).classifier
    paths = {}
    for role, seed in (("speculative", config.seed), ("second_minion", config.seed + 1)):
        path = folder / role
        if not (path / "manifest.json").exists():
            log(f"[{name}] distilling {role} {setup.speculative[0]} {setup.speculative[1]} (seed {seed})")
            torch.manual_seed(seed)
            student, report = distill(
                master,
                train_splits,
                setup.speculative[0],
                dataclasses.replace(config, seed=seed),
                arch_options=setup.speculative[1],
            )
            save_evaluated(path, student, splits, training={"config": config.to_dict(), **report.to_dict()})
        paths[role] = path
    for role, path in (("master", master_path), *paths.items()):
        metrics = json.loads((path / "manifest.json").read_text()).get("metrics", {})
        log(f"[{name}] {role}: test accuracy {metrics.get('test_accuracy', float('nan')):.4f}")
    return Trained(setup, splits, master_path, paths["speculative"], paths["second_minion"])
