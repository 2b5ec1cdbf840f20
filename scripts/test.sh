#!/usr/bin/env bash
# Quick start, command 2: set up .venv (first run only), lint, and run the test suite.
# Extra arguments go to pytest (e.g. -k loader, -x).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/bootstrap.sh
source "$here/bootstrap.sh"
cd "$here/.."
echo "[test] ruff check, ruff format --check, mypy"
ruff check .
ruff format --check .
mypy
echo "[test] pytest"
exec python -m pytest "$@"
