"""The committed gRPC stubs are exactly what scripts/gen_protos.py makes from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
GENERATED = REPO_ROOT / "specedge" / "protocol" / "_generated"


def test_regenerated_stubs_match_committed(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "gen_protos.py"), "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    fresh_dir = tmp_path / "specedge" / "protocol" / "_generated"
    fresh = sorted(p.name for p in fresh_dir.iterdir() if p.suffix in {".py", ".pyi"})
    assert fresh == ["grpc_service_pb2.py", "grpc_service_pb2.pyi", "grpc_service_pb2_grpc.py"]
    for name in fresh:
        assert (fresh_dir / name).read_bytes() == (GENERATED / name).read_bytes(), (
            f"{name} is stale; run `python scripts/gen_protos.py` and commit the result"
        )
