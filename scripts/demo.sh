#!/usr/bin/env bash
# Quick start, command 1: set up .venv (first run only) and run the end-to-end demo.
# Extra arguments go to `specedge demo` (try --help).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=scripts/bootstrap.sh
source "$here/bootstrap.sh"
cd "$here/.."
exec specedge demo "$@"
