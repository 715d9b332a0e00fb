#!/usr/bin/env bash
# Run the simulator with the example shelter-store config:
#
#   scripts/sim.sh [extra ansim-edge sim args]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${ANSIM_VENV:-.venv}"
bash scripts/bootstrap.sh >&2
exec "$VENV/bin/ansim-edge" sim --config config/examples/shelter.yaml "$@"
