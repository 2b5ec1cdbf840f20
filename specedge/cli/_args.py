"""Argument parsing shared by all subcommands: one-line usage errors, typed values, defaults.

This is the only layer that reads the environment (``SPECEDGE_DATA_ROOT``); everything below
receives explicit paths.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from specedge.cloud.security import check_token, read_token_file
from specedge.data import DatasetSplits, list_datasets, load_dataset
from specedge.detector import POLICIES, QUALITIES
from specedge.simulator import LINK_PROFILES
from specedge.training.trainer import AUGMENTATIONS, DEFAULT_TRAIN_CONFIG, MAX_RESTARTS, TrainConfig

__all__ = [
    "DEFAULT_LINKS",
    "TOKEN_ENV",
    "ArgumentParser",
    "add_common",
    "add_dataset",
    "add_detector_options",
    "add_links",
    "add_options",
    "add_training",
    "bearer_token",
    "comma_names",
    "default_cache_dir",
    "default_data_root",
    "fraction",
    "key_values",
    "load_splits",
    "non_negative_int",
    "port_number",
    "positive_float",
    "positive_int",
    "say",
    "train_config",
    "unit_interval",
]

DATA_ROOT_ENV = "SPECEDGE_DATA_ROOT"
DEFAULT_LINKS = ("3g", "lte", "wifi")  # SIEVE's three technologies; the assumed 5G profile only on request


class ArgumentParser(argparse.ArgumentParser):
    """argparse with usage errors on one line (plus a pointer to --help) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        """Print ``prog: error: message`` on one line and exit 2."""
        sys.stderr.write(f"{self.prog}: error: {message} (see '{self.prog} --help')\n")
        raise SystemExit(2)


def _int_in(text: str, low: int, high: float, expected: str) -> int:
    """``int(text)`` if it lies in ``[low, high]``; otherwise argparse's error saying ``expected``."""
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _int_in(text, 1, float("inf"), "a positive integer")


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return _int_in(text, 0, float("inf"), "an integer >= 0")


def port_number(text: str) -> int:
    """A TCP port, 0 meaning 'any free port'."""
    return _int_in(text, 0, 65535, "a port in 0..65535")


def positive_float(text: str) -> float:
    """A finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def fraction(text: str) -> float:
    """A float in (0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1], got {text!r}")
    return value


def unit_interval(text: str) -> float:
    """A float in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return value


def comma_names(valid: Sequence[str], what: str) -> Callable[[str], tuple[str, ...]]:
    """An argparse type for a comma-separated list of names from ``valid`` (case-insensitive)."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
        unknown = [n for n in names if n not in valid]
        if not names or unknown:
            raise argparse.ArgumentTypeError(
                f"unknown {what} {', '.join(map(repr, unknown)) or repr(text)}; expected a comma-separated list of: "
                f"{', '.join(valid)}"
            )
        return names

    return parse


def key_values(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE parsed as JSON when it can be (numbers, booleans), else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as width=0.5, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


def default_data_root() -> Path | None:
    """Where named datasets (mnist, fashion-mnist, cifar10-jpeg) are looked up by default.

    ``$SPECEDGE_DATA_ROOT`` if set; else ``./data`` if it exists; else the ``shared/datasets``
    folder beside a source checkout (the layout of the SpecEdge development machines).
    """
    if os.environ.get(DATA_ROOT_ENV):
        return Path(os.environ[DATA_ROOT_ENV])
    candidates = [Path.cwd() / "data", Path(__file__).resolve().parents[3] / "shared" / "datasets"]
    return next((c for c in candidates if c.is_dir()), None)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/specedge`` or ``~/.cache/specedge`` (decoded image folders live here)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "specedge"


def add_dataset(parser: argparse.ArgumentParser) -> None:
    """``--dataset NAME|PATH``, default digits, with the accepted names and layouts in its help."""
    parser.add_argument(
        "--dataset",
        default="digits",
        help=f"dataset name ({', '.join(list_datasets())}) or a path to an IDX folder, an image folder with "
        "train/ and test/, or a .npz (default: digits, embedded)",
    )


def add_options(parser: argparse.ArgumentParser, flag: str, *, what: str, example: str) -> None:
    """A repeatable ``flag KEY=VALUE`` collecting architecture options into a list of pairs."""
    parser.add_argument(
        flag,
        type=key_values,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"{what} option, e.g. {example} (repeatable)",
    )


def add_links(parser: argparse.ArgumentParser) -> None:
    """``--links 3g,lte,wifi``: named link profiles."""
    parser.add_argument(
        "--links",
        type=comma_names(tuple(LINK_PROFILES), "link profile"),
        default=DEFAULT_LINKS,
        help=f"comma-separated link profiles from {','.join(LINK_PROFILES)} (default: {','.join(DEFAULT_LINKS)})",
    )


def add_detector_options(parser: argparse.ArgumentParser, *, quality: str, target: float) -> None:
    """How a command that runs SpecEdge gets its misspeculation detector: calibrated here, or from a file."""
    group = parser.add_argument_group("misspeculation detector")
    group.add_argument(
        "--detector", type=Path, metavar="FILE", help="use detectors from `specedge calibrate` instead of calibrating"
    )
    group.add_argument(
        "--policy", choices=[p for p in POLICIES if p != "pair"], default="threshold", help="escalation policy"
    )
    group.add_argument(
        "--quality",
        choices=QUALITIES,
        default=quality,
        help=f"what the target is about: agreement with the master (label-free) or accuracy relative to it "
        f"(default: {quality})",
    )
    group.add_argument(
        "--target",
        type=float,
        default=target,
        help="for agreement, the fraction of answers equal to the master's; for accuracy, the fraction of the "
        f"master's accuracy (default: {target})",
    )
    group.add_argument(
        "--delta", type=fraction, default=0.05, help="failure probability of the guarantee (default: 0.05)"
    )
    group.add_argument(
        "--no-guarantee", action="store_true", help="fit the threshold to validation only (no guarantee)"
    )


def add_common(parser: argparse.ArgumentParser, *, data: bool = True) -> None:
    """Options every model/data command takes."""
    parser.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first so the architectures it registers can be used (repeatable)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or progress messages")
    if data:
        parser.add_argument(
            "--data-root",
            type=Path,
            default=None,
            metavar="DIR",
            help=f"folder holding mnist/, fashion-mnist/, cifar-10-jpeg/ (default: ${DATA_ROOT_ENV}, ./data, "
            "or ../shared/datasets beside the source checkout)",
        )
        parser.add_argument(
            "--cache-dir",
            type=Path,
            default=None,
            metavar="DIR",
            help="where decoded image folders are cached (default: ~/.cache/specedge)",
        )


def add_training(
    parser: argparse.ArgumentParser,
    *,
    epochs: int = DEFAULT_TRAIN_CONFIG.epochs,
    augment: str = DEFAULT_TRAIN_CONFIG.augment,
    lr: float = DEFAULT_TRAIN_CONFIG.lr,
) -> None:
    """Training hyper-parameters, defaulting to :data:`~specedge.training.DEFAULT_TRAIN_CONFIG`.

    ``train``, ``distill`` and the demo share those defaults: per-command defaults let the demo
    train at a rate that left its master at chance while ``train`` learned (foundation review,
    "Silent training failure"). The keyword overrides remain only until every command drops them.
    """
    defaults = DEFAULT_TRAIN_CONFIG
    group = parser.add_argument_group("training")
    group.add_argument("--epochs", type=positive_int, default=epochs, help=f"maximum epochs (default: {epochs})")
    group.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.batch_size,
        help=f"mini-batch size (default: {defaults.batch_size})",
    )
    group.add_argument(
        "--lr",
        type=positive_float,
        default=lr,
        help=f"initial learning rate; a run that diverges or stays at chance restarts at a tenth of it, at most "
        f"{MAX_RESTARTS} times (default: {lr:g})",
    )
    group.add_argument(
        "--patience",
        type=positive_int,
        default=defaults.patience,
        help="stop after this many epochs without a better validation score; the learning rate drops "
        f"after a third of them (default: {defaults.patience})",
    )
    group.add_argument(
        "--seed",
        type=non_negative_int,
        default=defaults.seed,
        help=f"seed for weights, shuffling, augmentation (default: {defaults.seed})",
    )
    group.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default=augment,
        help=f"data augmentation: shift = random translations, shift-flip = also mirror (natural images only) "
        f"(default: {augment})",
    )


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` that the options of :func:`add_training` describe."""
    return TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        augment=args.augment,
    )


def load_splits(args: argparse.Namespace) -> DatasetSplits:
    """The dataset that ``--dataset``, ``--data-root``, ``--cache-dir`` and ``--quiet`` describe."""
    return load_dataset(
        args.dataset,
        data_root=args.data_root or default_data_root(),
        cache_dir=args.cache_dir or default_cache_dir(),
        show_progress=not args.quiet,
    )


def say(args: argparse.Namespace, message: str) -> None:
    """A progress message on stderr, unless ``--quiet``."""
    if not args.quiet:
        print(message, file=sys.stderr)


#: Where ``specedge serve`` and ``specedge edge`` find the bearer token when no --token-file is given.
TOKEN_ENV = "SPECEDGE_TOKEN"


def bearer_token(token_file: Path | None) -> str | None:
    """The bearer token from ``token_file``, else from ``$SPECEDGE_TOKEN``, else None."""
    if token_file is not None:
        return read_token_file(token_file)
    value = os.environ.get(TOKEN_ENV)
    if value is None:
        return None
    return check_token(value.strip(), source=f"environment variable {TOKEN_ENV}")
