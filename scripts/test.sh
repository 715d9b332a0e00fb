#!/usr/bin/env bash
# The one test command (CI runs it through .ci/run):
#
#   scripts/test.sh [pytest args]
#
# Installs mosquitto, nats-server, chromium and chromium-driver if missing (apt-get), bootstraps
# the venv, then runs - all gating - ruff check, ruff format --check, mypy, and pytest with
# ANSIM_REQUIRE_MOSQUITTO=1, ANSIM_REQUIRE_BROKERS=1 and ANSIM_REQUIRE_BROWSER=1 (the broker
# tests and the console's headless-browser tests fail instead of skipping when a broker or
# chromium is missing; docs/brokers.md lists the brokers). Every step runs even if an earlier
# one failed, so one run shows every problem; the exit code is non-zero if any did. Tests start
# their own brokers on free 127.0.0.1 ports, so system services the Debian packages start
# (mosquitto on 1883, nats-server on 4222) do not matter and are left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${ANSIM_VENV:-.venv}"
export ANSIM_VENV="$VENV"

log() { printf '[test] %s\n' "$*"; }
die() { printf '[test] error: %s\n' "$*" >&2; exit 1; }

# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

find_mosquitto() {
    command -v mosquitto 2>/dev/null && return 0
    local candidate
    for candidate in /usr/sbin/mosquitto /usr/local/sbin/mosquitto; do
        [ -x "$candidate" ] && { echo "$candidate"; return 0; }
    done
    return 1
}

install_mosquitto() {
    command -v apt-get >/dev/null 2>&1 || die "mosquitto not found and no apt-get: install mosquitto by hand"
    # The package's postinst also starts a system broker service; if only that start fails
    # (no init system, port 1883 busy) the binary is still there and is enough.
    apt_install mosquitto || log "warning: apt-get reported an error (checking for the binary anyway)"
}

if ! mosquitto_bin="$(find_mosquitto)"; then
    install_mosquitto
    mosquitto_bin="$(find_mosquitto)" || die "mosquitto is still missing after apt-get install"
fi
log "mosquitto: $mosquitto_bin ($("$mosquitto_bin" -h 2>/dev/null | head -n 1 || true))"

find_nats_server() {
    if [ -n "${ANSIM_NATS_SERVER:-}" ]; then
        [ -x "$ANSIM_NATS_SERVER" ] && { echo "$ANSIM_NATS_SERVER"; return 0; }
        return 1
    fi
    command -v nats-server 2>/dev/null && return 0
    local candidate
    for candidate in /usr/sbin/nats-server /usr/local/bin/nats-server /usr/bin/nats-server; do
        [ -x "$candidate" ] && { echo "$candidate"; return 0; }
    done
    return 1
}

if ! nats_bin="$(find_nats_server)"; then
    # Debian 12 ships nats-server 2.9 (JetStream + MQTT 3.1.1); the tests run a 3-node cluster.
    apt_install nats-server || log "warning: apt-get reported an error (checking for the binary anyway)"
    nats_bin="$(find_nats_server)" || die "nats-server is still missing after apt-get install"
fi
log "nats-server: $nats_bin ($("$nats_bin" --version 2>/dev/null || true))"

# The console's tests drive Debian's chromium through its chromedriver (selenium, with the
# driver's path given: nothing is downloaded).
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    command -v apt-get >/dev/null 2>&1 || die "chromium not found and no apt-get: install chromium and chromium-driver by hand"
    apt_install chromium chromium-driver
    [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || die "chromium is still missing after apt-get install"
fi
log "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1 || true)"

bash scripts/bootstrap.sh

failed=()
run_step() {
    local name="$1"
    shift
    log "$name: $*"
    if "$@"; then
        return 0
    else
        local rc=$?
        log "$name FAILED (exit $rc)"
        failed+=("$name")
    fi
}

run_step "ruff check" "$VENV/bin/ruff" check .
run_step "ruff format" "$VENV/bin/ruff" format --check .
run_step "mypy" "$VENV/bin/mypy"
run_step "pytest" env ANSIM_REQUIRE_MOSQUITTO=1 ANSIM_REQUIRE_BROKERS=1 ANSIM_REQUIRE_BROWSER=1 \
    "$VENV/bin/pytest" -q "$@"

if [ "${#failed[@]}" -gt 0 ]; then
    printf '[test] FAILED steps: %s\n' "${failed[*]}" >&2
    exit 1
fi
