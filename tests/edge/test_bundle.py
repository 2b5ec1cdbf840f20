"""The edge bundle: write then read, a clear error for each way a copy can go wrong, the CLI, runners."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from specedge.detector import MisspeculationDetector
from specedge.detector.bank import write_detectors
from specedge.edge.bundle import (
    BUNDLE_NAME,
    FORMAT,
    Bundle,
    SpeculativeEntry,
    read_bundle,
    write_bundle,
)
from specedge.errors import ArtifactError, ConfigError
from specedge.models import build_classifier, load_artifact, save_artifact
from specedge.simulator.wire import infer_message_sizes
from specedge.training import predict_logits
from tests.detector.conftest import draw_outputs

SHAPE = (1, 8, 8)


def _model(root: Path, name: str, *, seed: int, num_classes: int = 10, width: float = 0.25) -> Path:
    torch.manual_seed(seed)
    classifier = build_classifier("lenet5", num_classes=num_classes, image_shape=SHAPE, width=width)
    return save_artifact(root / name, classifier, dataset={"name": "random"}, metrics={}, model_name=name)


def _detectors(path: Path, *, seed: int, pair: bool = False, num_classes: int = 10, target: float = 0.99) -> Path:
    rng = np.random.default_rng(seed)
    outputs = draw_outputs(2000, rng)
    logits = outputs.speculative_logits[:, :num_classes]
    master = outputs.master_predictions % num_classes
    if pair:
        logits = np.stack([logits, logits + rng.normal(0, 1.0, logits.shape).astype(np.float32)], axis=1)
    detector = MisspeculationDetector(
        policy="pair" if pair else "threshold", quality="agreement", target=target, delta=None
    )
    return write_detectors(path, [detector.fit(logits, master)])


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sources")
    return {
        "fast": _model(root, "fast", seed=1),
        "first": _model(root, "minion-a", seed=2),
        "second": _model(root, "minion-b", seed=3),
        "master": _model(root, "master", seed=4, width=0.5),
        "five": _model(root, "five-classes", seed=5, num_classes=5),
        "single_detector": _detectors(root / "single.json", seed=6),
        "pair_detector": _detectors(root / "pair.json", seed=7, pair=True),
        "five_detector": _detectors(root / "five.json", seed=8, num_classes=5),
        "other_detector": _detectors(root / "other.json", seed=9, target=0.9),
    }


def _write(out: Path, sources: dict[str, Path], **overrides) -> Bundle:
    options = {
        "speculative": [
            SpeculativeEntry("fast", (sources["fast"],), sources["single_detector"]),
            SpeculativeEntry("pair", (sources["first"], sources["second"]), sources["pair_detector"]),
        ],
        "master": sources["master"],
        "cloud_model": sources["master"],
        "device": "tegra-k1",
        "link": "lte",
        "server_s": 0.002,
        **overrides,
    }
    return write_bundle(out, **options)


@pytest.fixture(scope="module")
def written(sources, tmp_path_factory) -> Bundle:
    return _write(tmp_path_factory.mktemp("bundle") / "edge", sources)


@pytest.fixture
def copy(written, tmp_path) -> Path:
    """A private copy of the written bundle, to break."""
    return Path(shutil.copytree(written.path, tmp_path / "edge"))


# --- round trip ------------------------------------------------------------------------------------


def test_write_then_read_round_trips(written, sources):
    bundle = read_bundle(written.path)
    assert bundle == written
    assert read_bundle(written.path / BUNDLE_NAME) == written
    record = json.loads((written.path / BUNDLE_NAME).read_text())
    assert record["format"] == FORMAT and record["version"] == 1
    assert record["cloud_model"] == {"name": "master", "version": "1"}
    assert (bundle.classes, bundle.input_shape, bundle.device, bundle.link) == (10, SHAPE, "tegra-k1", "lte")
    sizes = infer_message_sizes(SHAPE, 10, model_name="master", model_version="1")
    assert (bundle.payload.request_bytes, bundle.payload.response_bytes) == (sizes.request_bytes, sizes.response_bytes)
    assert bundle.payload.server_s == 0.002

    fast, pair, master = bundle.local_models
    assert (fast.id, fast.role, fast.artifacts, fast.detector) == (
        "fast",
        "speculative",
        ("models/fast",),
        "detectors/fast.json",
    )
    assert pair.role == "pair" and pair.artifacts == ("models/pair/first", "models/pair/second")
    assert bundle.master == master and master.role == "master" and master.detector is None
    assert master.escalation_probability is None
    for entry in bundle.local_models:
        assert entry.latency_s > 0 and entry.energy_mj > 0
        for folder in entry.artifacts:
            assert (bundle.path / folder / "manifest.json").is_file()
    # a pair costs both minions; the wider master costs more than a minion
    assert pair.latency_s == pytest.approx(2 * fast.latency_s, rel=1e-9)
    assert master.energy_mj > fast.energy_mj
    detectors = bundle.detectors()
    assert set(detectors) == {"fast", "pair"} and detectors["pair"].policy == "pair"
    assert fast.escalation_probability == detectors["fast"].escalation_rate_


def test_master_left_out_and_cloud_model_by_name(sources, tmp_path):
    bundle = _write(tmp_path / "edge", sources, master=None, cloud_model="resnet-master", server_s=0.0)
    assert bundle.master is None and [m.id for m in bundle.local_models] == ["fast", "pair"]
    assert bundle.cloud_model.name == "resnet-master" and bundle.payload.server_s == 0.0
    with pytest.raises(ConfigError, match="cannot measure the server's time"):
        _write(tmp_path / "other", sources, master=None, cloud_model="resnet-master", server_s=None)


def test_server_time_is_measured_when_not_given(sources, tmp_path):
    bundle = _write(tmp_path / "edge", sources, server_s=None)
    assert 0 < bundle.payload.server_s < 1


def test_rewriting_replaces_a_bundle_but_not_other_folders(written, sources, tmp_path):
    out = Path(shutil.copytree(written.path, tmp_path / "edge"))
    assert _write(out, sources, master=None).master is None
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="is not an edge bundle"):
        _write(other, sources)
    assert (other / "keep.txt").read_text() == "mine"


# --- bad input when writing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"device": "pixel-9"}, "unknown device profile 'pixel-9'; expected one of: tegra-k1"),
        ({"link": "lte5"}, "unknown link profile 'lte5'"),
        ({"speculative": []}, "at least one speculative model"),
        ({"speculative": "five-classes"}, "models must read the same images into the same classes"),
        ({"speculative": "wrong-classes"}, "the detector is for 5 classes but the model has 10"),
        ({"speculative": "pair-on-single"}, "a speculative model needs a single-model policy"),
        ({"speculative": "single-on-pair"}, "a pair model needs a 'pair' policy detector"),
        ({"speculative": "reserved"}, "'master' is reserved"),
        ({"speculative": "bad-id"}, "model id 'a/b' must be letters"),
    ],
)
def test_bad_input_when_writing(overrides, needle, sources, tmp_path):
    s = sources
    cases = {
        "five-classes": [SpeculativeEntry("five", (s["five"],), s["five_detector"])],
        "wrong-classes": [SpeculativeEntry("fast", (s["fast"],), s["five_detector"])],
        "pair-on-single": [SpeculativeEntry("fast", (s["fast"],), s["pair_detector"])],
        "single-on-pair": [SpeculativeEntry("pair", (s["first"], s["second"]), s["single_detector"])],
        "reserved": [SpeculativeEntry("master", (s["fast"],), s["single_detector"])],
        "bad-id": [SpeculativeEntry("a/b", (s["fast"],), s["single_detector"])],
    }
    if isinstance(overrides.get("speculative"), str):
        overrides = {"speculative": cases[overrides["speculative"]]}
    with pytest.raises(ConfigError, match=needle):
        _write(tmp_path / "edge", sources, **overrides)
    assert not (tmp_path / "edge").exists()


# --- a bundle that does not match its models ---------------------------------------------------------


def _edit_record(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:
        record = json.loads((root / BUNDLE_NAME).read_text())
        change(record)
        (root / BUNDLE_NAME).write_text(json.dumps(record))

    return edit


def _append(relative: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_text((root / relative).read_text() + text)


def _replace_with(relative: str, source: str, sources: dict[str, Path]) -> Callable[[Path], None]:
    return lambda root: shutil.copyfile(sources[source], root / relative)


CORRUPTIONS = {
    "tampered manifest": (
        _append("models/fast/manifest.json", " "),
        r"does not match its models: models/fast/manifest.json changed",
    ),
    "missing folder": (
        lambda root: shutil.rmtree(root / "models/pair/second"),
        r"does not match its models: models/pair/second/manifest.json is missing",
    ),
    "wrong class count": (
        "five_detector",
        r"local model 'fast' \(detectors/fast.json\): the detector is for 5 classes but the model has 10",
    ),
    "pair policy on a single model": ("pair_detector", r"policy 'pair'; a speculative model needs"),
    "swapped detector": ("other_detector", r"does not match its models: detectors/fast.json escalates"),
    "bad JSON": (lambda root: (root / BUNDLE_NAME).write_text("{"), r"edge bundle .*bundle.json is not valid JSON"),
    "not a bundle": (lambda root: (root / BUNDLE_NAME).unlink(), r"is not an edge bundle: it has no bundle.json"),
    "wrong format": (_edit_record(lambda r: r.update(format="specedge-model")), r"format 'specedge-model'"),
    "unknown version": (_edit_record(lambda r: r.update(version=2)), r"unsupported version 2; .* reads version 1"),
    "missing field": (_edit_record(lambda r: r.pop("payload")), r"field 'payload' must be dict; missing"),
    "negative cost": (
        _edit_record(lambda r: r["local_models"][0].update(latency_s=-1.0)),
        r"local model 'fast': latency_s must be a finite number >= 0; got -1.0",
    ),
    "infinite server time": (
        _edit_record(lambda r: r["payload"].update(server_s=float("inf"))),
        r"server_s must be a finite number >= 0",
    ),
    "unknown role": (
        _edit_record(lambda r: r["local_models"][0].update(role="minion")),
        r"unknown role 'minion'; expected one of: speculative, pair, master",
    ),
    "path leaving the bundle": (
        _edit_record(lambda r: r["local_models"][0].update(artifacts=["../elsewhere"])),
        r"path '../elsewhere' must be relative and inside the bundle",
    ),
    "classes differ from the models": (
        _edit_record(lambda r: r.update(classes=5)),
        r"local model 'fast' reads \[1, 8, 8\] images into 10 classes, but the bundle records \[1, 8, 8\] and 5",
    ),
    "duplicate ids": (
        _edit_record(lambda r: r["local_models"][1].update(id="fast")),
        r"model ids must be unique; repeated: fast",
    ),
}


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_each_corruption_gives_one_clear_line(name, copy, sources):
    corrupt, needle = CORRUPTIONS[name]
    if isinstance(corrupt, str):
        corrupt = _replace_with("detectors/fast.json", corrupt, sources)
    corrupt(copy)
    with pytest.raises(ArtifactError, match=needle) as caught:
        read_bundle(copy)
    assert "\n" not in str(caught.value)


def test_a_missing_bundle_is_named(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_bundle(tmp_path / "nowhere")


# --- runners ------------------------------------------------------------------------------------------


def test_load_runners_compute_the_models_logits(written, sources):
    images = np.random.default_rng(0).integers(0, 256, (16, *SHAPE), dtype=np.uint8)
    runners = written.load_runners(val_images=images, only=["fast", "pair"])
    assert set(runners) == {"fast", "pair"}

    def logits(name: str) -> np.ndarray:
        return predict_logits(load_artifact(sources[name]).classifier, images)

    np.testing.assert_allclose(runners["fast"].logits(images), logits("fast"), atol=1e-4)
    pair = runners["pair"].logits(images)
    assert pair.shape == (16, 2, 10)
    np.testing.assert_allclose(pair[:, 0], logits("first"), atol=1e-4)
    np.testing.assert_allclose(pair[:, 1], logits("second"), atol=1e-4)
    written.detectors()["pair"].decide(pair)  # the pair detector reads the pair runner's logits
    with pytest.raises(ConfigError, match="no local model 'slow'"):
        written.load_runners(only=["slow"])


# --- CLI ----------------------------------------------------------------------------------------------


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    from specedge.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:  # usage errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_cli_writes_a_bundle(sources, tmp_path, capsys):
    s = {k: str(v) for k, v in sources.items()}
    out = tmp_path / "edge"
    code, stdout, err = _cli(
        capsys,
        "bundle", "--master", s["master"], "--speculative", s["fast"], "--detector", s["single_detector"],
        "--pair", s["first"], s["second"], "--detector", s["pair_detector"], "--device", "rpi4",
        "--server-ms", "3", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    bundle = read_bundle(out)
    assert [(m.id, m.role) for m in bundle.local_models] == [
        ("fast", "speculative"),
        ("pair", "pair"),
        ("master", "master"),
    ]
    assert bundle.device == "rpi4" and bundle.payload.server_s == pytest.approx(0.003)
    assert "latency ms" in stdout and "P_r" in stdout and "pair" in stdout

    code, _, err = _cli(
        capsys, "bundle", "--master", s["master"], "--speculative", s["fast"], "--detector", s["single_detector"],
        "--no-master-on-device", "--cloud-model", "big", "--out", str(out), "--quiet",
    )  # fmt: skip
    assert code == 0, err
    bundle = read_bundle(out)
    assert bundle.master is None and bundle.cloud_model.name == "big" and bundle.payload.server_s > 0

    code, _, err = _cli(
        capsys, "bundle", "--master", s["master"], "--speculative", s["fast"], "--no-master-on-device",
        "--detector", s["single_detector"], "--detector", s["pair_detector"], "--out", str(out),
    )  # fmt: skip
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "give one --detector per --speculative/--pair" in err


def test_cli_help_and_usage_errors(capsys):
    code, stdout, _ = _cli(capsys, "bundle", "--help")
    assert code == 0 and "--pair DIR DIR" in stdout and "--no-master-on-device" in stdout
    code, _, err = _cli(capsys, "bundle", "--master", "m", "--detector", "d")
    assert code == 2 and "--out" in err
    code, _, err = _cli(capsys, "bundle", "--master", "m", "--detector", "d", "--out", "o", "--device", "pixel-9")
    assert code == 2 and "tegra-k1" in err
