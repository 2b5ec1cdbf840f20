"""The specedge CLI: working subcommands and one-line errors for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from specedge.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse usage errors
        code = int(exc.code)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _assert_one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "tiny"
    assert (
        main(["train", "--arch", "lenet5", "--arch-opt", "width=0.25", "--epochs", "2", "--quiet", "--out", str(out)])
        == 0
    )
    return out


def test_train_eval_profile_distill_round_trip(trained, tmp_path, capsys):
    code, out, _ = _run(capsys, "eval", "--model", str(trained), "--dataset", "digits", "--quiet")
    assert code == 0 and "accuracy" in out
    code, out, _ = _run(capsys, "eval", "--model", str(trained), "--split", "val", "--json", "--quiet")
    report = json.loads(out)
    assert code == 0 and 0 <= report["accuracy"] <= 1 and report["items"] == 359
    manifest = json.loads((trained / "manifest.json").read_text())
    assert manifest["metrics"]["val_accuracy"] == pytest.approx(report["accuracy"])
    code, out, _ = _run(capsys, "profile", "--model", str(trained))
    assert code == 0 and "Conv2d" in out and f"{manifest['macs']:,}" in out
    code, out, _ = _run(
        capsys,
        "distill",
        "--master",
        str(trained),
        "--arch",
        "lenet5",
        "--arch-opt",
        "width=0.1",
        "--epochs",
        "1",
        "--quiet",
        "--out",
        str(tmp_path / "student"),
    )
    assert code == 0 and "fewer MACs" in out
    assert (tmp_path / "student" / "manifest.json").exists()


def test_listing_commands(capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0 and "lenet5" in out and "2,293,000" in out
    code, out, _ = _run(capsys, "datasets")
    assert code == 0 and "digits" in out and "embedded" in out
    code, out, _ = _run(capsys, "profile", "--arch", "mobilenet_v1", "--arch-opt", "alpha=0.25", "--json")
    assert code == 0 and json.loads(out)["total_macs"] > 0


def test_help_lists_every_subcommand(capsys):
    code, out, _ = _run(capsys, "--help")
    assert code == 0
    for command in (
        "demo",
        "train",
        "distill",
        "calibrate",
        "simulate",
        "eval",
        "models",
        "datasets",
        "profile",
        "serve",
    ):
        assert command in out


@pytest.mark.parametrize(
    ("argv", "needles"),
    [
        (["train", "--dataset", "nope", "--out", "{tmp}/m", "--quiet"], ["unknown dataset 'nope'", "digits"]),
        (["train", "--dataset", "{tmp}/missing-folder", "--out", "{tmp}/m", "--quiet"], ["missing-folder"]),
        (["train", "--dataset", "{tmp}/corrupt.npz", "--out", "{tmp}/m", "--quiet"], ["corrupt.npz"]),
        (["train", "--arch", "nonet", "--out", "{tmp}/m", "--quiet"], ["unknown model 'nonet'", "lenet5"]),
        (["train", "--arch-opt", "depth=3", "--out", "{tmp}/m", "--quiet"], ["cannot build 'lenet5'"]),
        (["train", "--out", "{tmp}/afile/m", "--quiet", "--epochs", "1"], ["afile"]),
        (["eval", "--model", "{tmp}/no-model", "--quiet"], ["no-model"]),
        (["eval", "--model", "{tmp}/bad-manifest", "--quiet"], ["bad-manifest"]),
        (["eval", "--model", "{trained}", "--dataset", "{tmp}/other.npz", "--quiet"], ["expects images"]),
        (["profile"], ["exactly one of --model DIR or --arch NAME"]),
        (["models", "--plugin", "no.such.module"], ["cannot import plugin module 'no.such.module'"]),
        (["demo", "--target", "1.5", "--out", "{tmp}/d"], ["an agreement target must lie in (0, 1); got 1.5"]),
        (["demo", "--detector", "{tmp}/none.json", "--out", "{tmp}/d", "--quiet", "--epochs", "1"], ["none.json"]),
        (
            [
                "calibrate",
                "--speculative",
                "{trained}",
                "--master",
                "{trained}",
                "--quality",
                "agreement",
                "--target",
                "1.0",
                "--out",
                "{tmp}/c.json",
                "--quiet",
            ],
            ["no policy and target could be calibrated"],
        ),
    ],
)
def test_bad_input_gives_one_line_and_exit_1(argv, needles, trained, tmp_path, capsys):
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (tmp_path / "afile").write_text("a file, not a folder")
    (tmp_path / "bad-manifest").mkdir()
    (tmp_path / "bad-manifest" / "manifest.json").write_text("{not json")
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "other.npz",
        x_train=rng.integers(0, 255, (20, 12, 12), dtype=np.uint8),
        y_train=np.arange(20) % 10,
        x_test=rng.integers(0, 255, (10, 12, 12), dtype=np.uint8),
        y_test=np.arange(10),
    )
    argv = [a.format(tmp=tmp_path, trained=trained) for a in argv]
    code, _, err = _run(capsys, *argv)
    assert code == 1
    _assert_one_line_error(err, *needles)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["train", "--epochs", "-3", "--out", "x"], "--epochs: expected a positive integer, got '-3'"),
        (["train", "--lr", "fast", "--out", "x"], "--lr: expected a positive number, got 'fast'"),
        (["train", "--augment", "rotate", "--out", "x"], "invalid choice: 'rotate'"),
        (["train", "--arch-opt", "width", "--out", "x"], "expected KEY=VALUE"),
        (["train"], "the following arguments are required: --out"),
        (["demo", "--delta", "1.5"], "--delta: expected a number in (0, 1], got '1.5'"),
        (["demo", "--links", "lte5"], "unknown link profile 'lte5'; expected a comma-separated list of: 3g, lte, wifi"),
        (["demo", "--device", "toaster"], "invalid choice: 'toaster'"),
        (["demo", "--limit", "0"], "--limit: expected a positive integer"),
        (["serve", "--model", "m", "--port", "70000"], "--port: expected a port in 0..65535"),
        (["eval", "--split", "holdout", "--model", "m"], "invalid choice: 'holdout'"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_flags_give_one_line_and_exit_2(argv, needle, capsys):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    _assert_one_line_error(err, needle)


def test_real_entry_point_exit_codes_and_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "specedge", "eval", "--model", str(tmp_path / "nothing-here"), "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    _assert_one_line_error(result.stderr, "specedge eval: error:", "nothing-here")


def test_train_that_does_not_learn_exits_1_with_one_line_and_saves_nothing(tmp_path, capsys):
    out = tmp_path / "diverged"
    argv = ["train", "--lr", "10000", "--epochs", "3", "--arch-opt", "width=0.25", "--out", str(out), "--quiet"]
    code, stdout, err = _run(capsys, *argv)
    assert code == 1 and stdout == ""
    _assert_one_line_error(err, "specedge train: error: lenet5 did not learn in 3 attempts", "at lr 10000")
    assert not out.exists()


def test_train_that_recovers_says_so_and_records_the_restart(tmp_path, capsys):
    out = tmp_path / "recovered"
    argv = ["train", "--lr", "0.3", "--epochs", "3", "--arch-opt", "width=0.25", "--out", str(out), "--quiet"]
    code, stdout, _ = _run(capsys, *argv)
    assert code == 0 and "after 1 restart at lr 0.03" in stdout
    training = json.loads((out / "manifest.json").read_text())["training"]
    assert training["lr"] == pytest.approx(0.03) and len(training["restarts"]) == 1


def test_mobilenet_alpha_option_through_train_and_distill(tmp_path, capsys):
    """MobileNet's width ``alpha`` no longer collides with distillation's ``alpha`` (review item 9)."""
    master, student = tmp_path / "master", tmp_path / "student"
    mobile = ["--arch", "mobilenet_v1", "--arch-opt", "alpha=0.25", "--dataset", "digits", "--epochs", "5"]
    code, _, err = _run(capsys, "train", *mobile, "--out", str(master), "--quiet")
    assert code == 0, err
    code, out, err = _run(capsys, "distill", "--master", str(master), *mobile, "--out", str(student), "--quiet")
    assert code == 0 and "fewer MACs" in out, err
    manifest = json.loads((student / "manifest.json").read_text())
    assert manifest["spec"]["arch_kwargs"] == {"alpha": 0.25}
    assert manifest["training"]["alpha"] == 0.7  # the distillation weight kept its default


def test_training_flags_share_one_set_of_defaults():
    from specedge.cli import build_parser
    from specedge.training import DEFAULT_TRAIN_CONFIG

    parser = build_parser()
    for command in (["train", "--out", "x"], ["distill", "--master", "m", "--out", "x"]):
        args = parser.parse_args(command)
        assert (args.epochs, args.lr, args.augment, args.batch_size, args.patience, args.seed) == (
            DEFAULT_TRAIN_CONFIG.epochs,
            DEFAULT_TRAIN_CONFIG.lr,
            DEFAULT_TRAIN_CONFIG.augment,
            DEFAULT_TRAIN_CONFIG.batch_size,
            DEFAULT_TRAIN_CONFIG.patience,
            DEFAULT_TRAIN_CONFIG.seed,
        )


def test_demo_verdict_is_refused_when_a_model_is_at_chance():
    from types import SimpleNamespace

    from specedge.demo.report import ModelSummary, _verdict_refusal

    master = ModelSummary(role="master", architecture="resnet20", params=1, macs=1, test_accuracy=0.098)
    speculative = ModelSummary(role="speculative", architecture="lenet5", params=1, macs=1, test_accuracy=0.9)
    report = SimpleNamespace(dataset={"num_classes": 10}, models=[master, speculative])
    refusal = _verdict_refusal(report)
    assert refusal.startswith("NO VERDICT: the master resnet20 scores 9.80% on test, at chance for 10 classes")
    report.models = [speculative]
    assert _verdict_refusal(report) is None
