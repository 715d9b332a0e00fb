#!/usr/bin/env bash
# Install ansim-edge as a systemd service on Raspberry Pi OS (Bookworm, 64-bit), from a
# clone of this repository:
#
#   sudo scripts/install.sh [--example shelter|locker] [--root DIR]
#
# Idempotent (run it again to upgrade; it never overwrites /etc/ansim-edge/site.yaml):
#   - system user and group `ansim-edge` (supplementary groups gpio and dialout);
#   - the code in /opt/ansim-edge, its venv /opt/ansim-edge/.venv with the `pi` extra
#     (lgpio), precompiled (the service cannot write there), `ansim-edge` on the PATH;
#   - /etc/ansim-edge/site.yaml from config/examples/<example>.yaml if absent (data_dir set
#     to /var/lib/ansim-edge), mode 0640 root:ansim-edge;
#   - /etc/ansim-edge/keys/ (0700) and every file in it (0600), owned by ansim-edge;
#   - the data dir /var/lib/ansim-edge (0700, ansim-edge);
#   - /etc/modules-load.d/ansim-edge.conf (usbserial, cdc_acm: the unit's device policy
#     needs the ttyUSB/ttyACM drivers loaded when it starts);
#   - dtparam=strict_gpiod in /boot/firmware/config.txt (released GPIO lines revert to
#     inputs, docs/wiring.md; takes effect after a reboot);
#   - /etc/systemd/system/ansim-edge.service, enabled (restarted if it was running).
#
# --root DIR installs the files into DIR instead of / (for tests and image builds): the
# steps that change the running system (useradd, chown, the venv/pip, modprobe,
# systemctl daemon-reload/restart) are printed, not run; the unit is enabled with
# `systemctl --root`.
set -euo pipefail

SRC="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROOT=""
EXAMPLE="shelter"
SERVICE_USER="ansim-edge"
PREFIX="/opt/ansim-edge"
ETC="/etc/ansim-edge"
DATA="/var/lib/ansim-edge"
UNIT="/etc/systemd/system/ansim-edge.service"

log() { printf '[install] %s\n' "$*"; }
die() { printf '[install] error: %s\n' "$*" >&2; exit 1; }

usage() { sed -n '2,/^set /p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a directory"; ROOT="$(cd "$2" && pwd)"; shift 2 ;;
        --example) [ $# -ge 2 ] || die "--example needs shelter or locker"; EXAMPLE="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done
[ -f "$SRC/config/examples/$EXAMPLE.yaml" ] || die "no example config '$EXAMPLE' (shelter or locker)"

# shellcheck source=scripts/lib.sh
source "$SRC/scripts/lib.sh"

# A step that changes the running system: run it, or under --root only print it.
system() {
    if [ -n "$ROOT" ]; then
        log "skipped under --root: $*"
    else
        log "$*"
        "$@"
    fi
}

if [ -z "$ROOT" ] && [ "$(id -u)" -ne 0 ]; then
    die "run as root: sudo scripts/install.sh"
fi

# ---- the user
groups=()
for g in gpio dialout; do
    if getent group "$g" >/dev/null 2>&1; then
        groups+=("$g")
    else
        log "warning: group $g does not exist on this machine (not Raspberry Pi OS?)"
    fi
done
group_list="$(IFS=,; echo "${groups[*]}")"
if [ -n "$ROOT" ] || ! getent passwd "$SERVICE_USER" >/dev/null 2>&1; then
    system useradd --system --user-group --home-dir "$DATA" --no-create-home \
        --shell /usr/sbin/nologin ${group_list:+--groups "$group_list"} "$SERVICE_USER"
elif [ -n "$group_list" ]; then
    system usermod --append --groups "$group_list" "$SERVICE_USER"
fi

# chown to the service user (printed only under --root: the user exists only on the system)
own() { system chown "$@"; }

# ---- the code and its venv
install -d -m 0755 "$ROOT$PREFIX"
if [ "$(cd "$ROOT$PREFIX" && pwd -P)" != "$(cd "$SRC" && pwd -P)" ]; then
    log "copying $SRC to $ROOT$PREFIX"
    tar -C "$SRC" --exclude=./.venv --exclude=./.git --exclude=./data \
        --exclude='__pycache__' --exclude='*.egg-info' --exclude=./.mypy_cache \
        --exclude=./.ruff_cache --exclude=./.hypothesis --exclude=./.pytest_cache \
        -cf - . | tar -C "$ROOT$PREFIX" --no-same-owner -xf -
fi
system env ANSIM_VENV="$PREFIX/.venv" bash "$PREFIX/scripts/bootstrap.sh" pi
# ProtectSystem=strict: the service cannot write __pycache__ next to the code.
system "$PREFIX/.venv/bin/python" -m compileall -q "$PREFIX/edge" "$PREFIX/drivers" "$PREFIX/simulator"
# The unit runs Python with PYTHONOPTIMIZE=2 and PYTHONPYCACHEPREFIX=$PREFIX/.pycache: that
# bytecode too, the Python library's included (a module that does not compile here is one
# nothing imports; without its bytecode a module is compiled at every start).
stdlib="$("${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_paths()["stdlib"])')"
system env PYTHONPYCACHEPREFIX="$PREFIX/.pycache" "$PREFIX/.venv/bin/python" -OO -m compileall \
    -q -x '/(test|tests|idlelib|turtledemo|lib2to3|ensurepip)/' \
    "$stdlib" "$PREFIX/.venv/lib" "$PREFIX/edge" "$PREFIX/drivers" "$PREFIX/simulator" \
    || log "warning: some modules did not compile with -OO (they are compiled when imported)"
install -d -m 0755 "$ROOT/usr/local/bin"
ln -sfn "$PREFIX/.venv/bin/ansim-edge" "$ROOT/usr/local/bin/ansim-edge"

# ---- configuration and keys
install -d -m 0755 "$ROOT$ETC"
if [ -e "$ROOT$ETC/site.yaml" ]; then
    log "keeping the existing $ETC/site.yaml"
else
    log "writing $ETC/site.yaml from config/examples/$EXAMPLE.yaml"
    sed -e "s#^data_dir:.*#data_dir: $DATA#" "$SRC/config/examples/$EXAMPLE.yaml" \
        >"$ROOT$ETC/site.yaml.new"
    chmod 0640 "$ROOT$ETC/site.yaml.new"
    mv "$ROOT$ETC/site.yaml.new" "$ROOT$ETC/site.yaml"
fi
chmod 0640 "$ROOT$ETC/site.yaml"
own "root:$SERVICE_USER" "$ETC/site.yaml"

install -d -m 0700 "$ROOT$ETC/keys"
find "$ROOT$ETC/keys" -mindepth 1 -type f -exec chmod 0600 {} +
own -R "$SERVICE_USER:$SERVICE_USER" "$ETC/keys"

# ---- data dir (systemd's StateDirectory= would create it too; this makes it visible now)
install -d -m 0700 "$ROOT$DATA"
own "$SERVICE_USER:$SERVICE_USER" "$DATA"

# ---- kernel: serial drivers loaded at boot, GPIO lines that revert when released
install -d -m 0755 "$ROOT/etc/modules-load.d"
printf '# ansim-edge: the unit allows char-ttyUSB / char-ttyACM, looked up when it starts\nusbserial\ncdc_acm\n' \
    >"$ROOT/etc/modules-load.d/ansim-edge.conf"
chmod 0644 "$ROOT/etc/modules-load.d/ansim-edge.conf"
system modprobe -a usbserial cdc_acm || log "warning: modprobe failed (loaded at the next boot)"
bootcfg="$ROOT/boot/firmware/config.txt"
if [ -f "$bootcfg" ]; then
    if grep -Eq '^[[:space:]]*dtparam=strict_gpiod' "$bootcfg"; then
        log "$bootcfg already has dtparam=strict_gpiod"
    else
        printf '\n# ansim-edge: GPIO outputs revert to inputs when released (docs/wiring.md)\ndtparam=strict_gpiod\n' \
            >>"$bootcfg"
        log "added dtparam=strict_gpiod to $bootcfg: reboot to apply it"
    fi
else
    log "no $bootcfg (not Raspberry Pi OS Bookworm?): set dtparam=strict_gpiod by hand (docs/wiring.md)"
fi

# ---- the unit
install -d -m 0755 "$ROOT/etc/systemd/system"
install -m 0644 "$SRC/systemd/ansim-edge.service" "$ROOT$UNIT"
if [ -n "$ROOT" ] && command -v systemctl >/dev/null 2>&1; then
    log "systemctl --root=$ROOT enable ansim-edge.service"
    systemctl --root="$ROOT" enable ansim-edge.service 2>&1
elif [ -n "$ROOT" ]; then
    install -d -m 0755 "$ROOT/etc/systemd/system/multi-user.target.wants"
    ln -sfn "$UNIT" "$ROOT/etc/systemd/system/multi-user.target.wants/ansim-edge.service"
    log "enabled: $ROOT/etc/systemd/system/multi-user.target.wants/ansim-edge.service"
else
    system systemctl daemon-reload
    system systemctl enable ansim-edge.service
    system systemctl try-restart ansim-edge.service
fi

cat <<EOF
[install] done. Next:
  1. put the centre's public key into $ETC/keys/ (e.g. centre.pub) and list it under keys:
     in $ETC/site.yaml; secrets (broker password_file, TLS key) go into $ETC/keys/ too;
     then run this script again (it makes them readable only by $SERVICE_USER);
  2. ansim-edge check-config $ETC/site.yaml
  3. systemctl start ansim-edge && systemctl status ansim-edge
EOF
