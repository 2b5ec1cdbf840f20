"""``specedge models``, ``specedge datasets`` and ``specedge profile``: look before you run."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from specedge.cli._args import add_common, add_options, default_data_root
from specedge.compression.tradeoff import tradeoff_table
from specedge.data import dataset_folder, list_datasets
from specedge.errors import ConfigError
from specedge.models import ImageClassifier, build_classifier, list_models, load_artifact, model_entry
from specedge.models.profiler import profile_classifier

__all__ = ["register"]


def _cmd_models(args: argparse.Namespace) -> int:
    print(f"{'name':<14} {'reference input':<16} {'params':>11} {'MACs':>13}  description")
    for name in list_models():
        e = model_entry(name)
        shape = "x".join(str(v) for v in e.reference_input)
        print(f"{name:<14} {shape:<16} {e.reference_params:>11,} {e.reference_macs:>13,}  {e.description}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    root = args.data_root or default_data_root()
    print(f"data root: {root if root else '(none found; pass --data-root or set SPECEDGE_DATA_ROOT)'}")
    for name, description in list_datasets().items():
        folder = dataset_folder(name)
        if folder is None:
            status = "embedded"
        elif root is not None and (root / folder).is_dir():
            status = f"found at {root / folder}"
        else:
            status = "not found"
        print(f"  {name:<14} {description}  [{status}]")
    return 0


def _parse_shape(text: str) -> tuple[int, int, int]:
    try:
        c, h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W such as 3,32,32, got {text!r}") from None
    if min(c, h, w) < 1:
        raise argparse.ArgumentTypeError(f"expected positive C,H,W, got {text!r}")
    return (c, h, w)


def _cmd_profile(args: argparse.Namespace) -> int:
    if (args.model is None) == (args.arch is None):
        raise ConfigError("profile needs exactly one of --model DIR or --arch NAME")
    tradeoff = None
    if args.model is not None:
        loaded = load_artifact(args.model)
        # an int8 graph has no torch form; its fp32 structure profiles the same layers
        model = loaded.torch_classifier or ImageClassifier(loaded.spec)
        tradeoff = loaded.manifest.get("tradeoff")
    else:
        entry = model_entry(args.arch)
        shape = args.input or entry.reference_input
        model = build_classifier(
            args.arch,
            num_classes=args.num_classes,
            image_shape=shape,
            input_size=shape[1],
            **dict(args.arch_opt),
        )
    profile = profile_classifier(model)
    if args.json:
        print(json.dumps({**profile.to_dict(), "tradeoff": tradeoff}, indent=2))
        return 0
    print(profile.to_table())
    if tradeoff is not None:
        print(f"\nstored as a compressed variant:\n{tradeoff_table(tradeoff)}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the three subcommands."""
    models = subparsers.add_parser(
        "models",
        help="list the model zoo with parameter and MAC counts",
        description="List registered architectures and their reference costs.",
    )
    add_common(models, data=False)
    models.set_defaults(func=_cmd_models)

    datasets = subparsers.add_parser(
        "datasets",
        help="list dataset names and whether their files are found",
        description="List the datasets SpecEdge knows by name.",
    )
    add_common(datasets)
    datasets.set_defaults(func=_cmd_datasets)

    profile = subparsers.add_parser(
        "profile",
        help="per-layer profile (shapes, kernel, stride, groups, MACs, bytes) of a model",
        description="Profile an artifact (--model) or a zoo architecture (--arch) layer by layer.",
    )
    profile.add_argument("--model", type=Path, metavar="DIR", help="artifact folder")
    profile.add_argument("--arch", help="zoo architecture name")
    add_options(profile, "--arch-opt", what="architecture", example="alpha=0.5, with --arch")
    profile.add_argument(
        "--input",
        type=_parse_shape,
        metavar="C,H,W",
        help="input shape for --arch (default: the architecture's reference input)",
    )
    profile.add_argument("--num-classes", type=int, default=10, help="classes for --arch (default: 10)")
    profile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_common(profile, data=False)
    profile.set_defaults(func=_cmd_profile)
