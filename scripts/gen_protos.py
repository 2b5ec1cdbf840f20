"""Regenerate the Python gRPC stubs in specedge/protocol/_generated from protos/.

The stubs are committed so that installing SpecEdge needs no protobuf compiler;
tests/protocol/test_generated_code.py runs this generator into a temporary folder and
fails if the result differs from the committed files. Run it after editing a .proto:

    python scripts/gen_protos.py            # rewrite the committed stubs
    python scripts/gen_protos.py --out DIR  # write them elsewhere (used by the test)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos"
PACKAGE_PATH = "specedge/protocol/_generated"


def generate(out_root: Path) -> list[Path]:
    """Compile every .proto under protos/ into ``out_root/specedge/protocol/_generated``.

    The proto folder is mapped onto the package path (``-I<package>=protos``) so that the
    generated modules import each other as ``specedge.protocol._generated.*``.
    """
    target = out_root / PACKAGE_PATH
    target.mkdir(parents=True, exist_ok=True)
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(PROTO_DIR.glob("*.proto"))
    for proto in protos:
        args = [
            "protoc",
            f"-I{PACKAGE_PATH}={PROTO_DIR}",
            f"-I{well_known}",
            f"--python_out={out_root}",
            f"--pyi_out={out_root}",
            f"--grpc_python_out={out_root}",
            f"{PACKAGE_PATH}/{proto.name}",
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {proto}")
    return sorted(p for p in target.iterdir() if p.suffix in {".py", ".pyi"} and p.name != "__init__.py")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT, help="root folder to write into (default: repo root)")
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path.relative_to(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
