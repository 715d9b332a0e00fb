#!/usr/bin/env bash
# Create or refresh the project virtualenv.
#
#   scripts/bootstrap.sh [extras]      extras default: dev,sim  ("" = no extras)
#
# Works on a fresh Debian 12 with only python3: installs python3-venv with apt-get when
# `python3 -m venv` cannot create a venv. pip runs again only when pyproject.toml is newer
# than the stamp in the venv (or the extras changed), so repeated runs take well under a second.
#
# Environment: ANSIM_VENV (default .venv, relative to the repo root), PYTHON (default python3).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

EXTRAS="${1-dev,sim}"
VENV="${ANSIM_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
STAMP="$VENV/.ansim-bootstrap-stamp"

log() { printf '[bootstrap] %s\n' "$*"; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (install python3 >= 3.11)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "$("$PYTHON" -V 2>&1) is too old: ansim-edge needs Python >= 3.11"

venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }

make_venv() { rm -rf "$VENV" && "$PYTHON" -m venv "$VENV"; }

if ! venv_ok; then
    [ -e "$VENV" ] && log "$VENV is broken (no working pip); recreating it"
    log "creating $VENV with $("$PYTHON" -V 2>&1)"
    if ! make_venv >/tmp/ansim-venv.$$.log 2>&1; then
        # Debian ships the venv module without ensurepip unless python3-venv is installed.
        log "python3 -m venv failed ($(tail -n 1 /tmp/ansim-venv.$$.log)); installing python3-venv"
        pyver="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        apt_install python3-venv || true
        if ! make_venv >/tmp/ansim-venv.$$.log 2>&1; then
            apt_install "python${pyver}-venv"
            make_venv >/tmp/ansim-venv.$$.log 2>&1 \
                || { cat /tmp/ansim-venv.$$.log >&2; rm -f /tmp/ansim-venv.$$.log; die "cannot create $VENV"; }
        fi
    fi
    rm -f /tmp/ansim-venv.$$.log
    venv_ok || die "$VENV has no working pip"
fi

spec="."
[ -n "$EXTRAS" ] && spec=".[$EXTRAS]"

if [ -f "$STAMP" ] && [ ! pyproject.toml -nt "$STAMP" ] && [ "$(cat "$STAMP")" = "$spec" ]; then
    log "$VENV is up to date ($spec)"
    exit 0
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1
log "upgrading pip"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
log "pip install -e '$spec'"
"$VENV/bin/python" -m pip install --quiet -e "$spec"
printf '%s\n' "$spec" >"$STAMP"
log "done: $VENV ready"
