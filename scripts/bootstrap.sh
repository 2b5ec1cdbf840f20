#!/usr/bin/env bash
# Create .venv and install SpecEdge into it (sourced by scripts/demo.sh and scripts/test.sh).
#
# torch goes in first, pinned to the CPU build (`pip install torch==2.13.0` here resolves to a
# local CPU wheel), so that installing SpecEdge's own `torch>=2.2` range later finds it
# satisfied and never pulls CUDA wheels. Re-running is cheap: the install is skipped while
# pyproject.toml is unchanged. Override the interpreter with PYTHON=..., the torch pin with
# SPECEDGE_TORCH=... (e.g. "torch" to keep whatever your index offers).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
torch_req="${SPECEDGE_TORCH:-torch==2.13.0}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "specedge: error: needs Python >= 3.10; '$python' is $("$python" --version 2>&1)" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "[bootstrap] creating $venv"
    "$python" -m venv "$venv"
fi

stamp="$venv/.specedge-install-stamp"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1) $torch_req"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[bootstrap] installing $torch_req (CPU build) and specedge[dev] into .venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$torch_req"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$root[dev]"
    echo "$want" > "$stamp"
fi

export PATH="$venv/bin:$PATH"
