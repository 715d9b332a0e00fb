"""scripts/install.sh into a temporary root (`--root DIR`): the files it writes, their modes
and the unit it enables. Steps that change the running system (useradd, chown, pip,
systemctl daemon-reload) are only printed under --root."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
import structlog
import yaml

from edge.cli import main as cli_main
from edge.config import load_config
from edge.core.signing import generate_keypair

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "install.sh"


def main(argv: list[str]) -> int:
    """edge.cli.main, then structlog's configuration put back (main() points it at this
    test's captured stderr, closed after the test)."""
    saved = structlog.get_config()
    try:
        return cli_main(argv)
    finally:
        structlog.configure(**saved)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def _install(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    (r / "boot" / "firmware").mkdir(parents=True)
    (r / "boot" / "firmware" / "config.txt").write_text("[all]\ndtparam=audio=on\n")
    return r


def test_install_into_a_temporary_root(root: Path) -> None:
    p = _install(root)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout

    # The code (without the developer's venv or data) and a command on the PATH.
    assert (root / "opt/ansim-edge/pyproject.toml").is_file()
    assert (root / "opt/ansim-edge/edge/cli.py").is_file()
    assert not (root / "opt/ansim-edge/.venv").exists()
    assert not (root / "opt/ansim-edge/.git").exists()
    link = root / "usr/local/bin/ansim-edge"
    assert os.readlink(link) == "/opt/ansim-edge/.venv/bin/ansim-edge"

    # The config from the example, with the service's data dir; readable by its group only.
    site = root / "etc/ansim-edge/site.yaml"
    assert _mode(site) == 0o640
    data = yaml.safe_load(site.read_text())
    assert data["data_dir"] == "/var/lib/ansim-edge"
    assert data["site"]["id"] == "shelter-gangnam-0001"
    assert load_config(site).data_dir == Path("/var/lib/ansim-edge")

    # Key dir and data dir: the service user's only.
    assert _mode(root / "etc/ansim-edge/keys") == 0o700
    assert _mode(root / "var/lib/ansim-edge") == 0o700

    # The unit, byte for byte, enabled for multi-user.target.
    unit = root / "etc/systemd/system/ansim-edge.service"
    assert unit.read_bytes() == (REPO / "systemd/ansim-edge.service").read_bytes()
    assert _mode(unit) == 0o644
    wants = root / "etc/systemd/system/multi-user.target.wants/ansim-edge.service"
    assert os.readlink(wants) == "/etc/systemd/system/ansim-edge.service"

    # Serial drivers at boot (the unit's char-ttyUSB / char-ttyACM), strict_gpiod once.
    modules = (root / "etc/modules-load.d/ansim-edge.conf").read_text().split()
    assert "usbserial" in modules and "cdc_acm" in modules
    boot = (root / "boot/firmware/config.txt").read_text()
    assert boot.startswith("[all]\ndtparam=audio=on\n")
    assert boot.count("dtparam=strict_gpiod") == 1

    # What would change the running system is printed, not done.
    for step in ("useradd --system", "ansim-edge", "bootstrap.sh pi", "chown", "modprobe"):
        assert step in out, step
    assert "skipped under --root: useradd" in out
    assert "skipped under --root: env ANSIM_VENV=/opt/ansim-edge/.venv" in out
    # the -OO bytecode the unit's PYTHONPYCACHEPREFIX points at, the Python library's included
    assert (
        "skipped under --root: env PYTHONPYCACHEPREFIX=/opt/ansim-edge/.pycache "
        "/opt/ansim-edge/.venv/bin/python -OO -m compileall"
    ) in out


def test_a_second_run_keeps_the_config_and_locks_down_key_files(root: Path) -> None:
    assert _install(root).returncode == 0
    site = root / "etc/ansim-edge/site.yaml"
    site.write_text(site.read_text().replace("shelter-gangnam-0001", "shelter-mapo-0007"))
    site.chmod(0o644)
    keys = root / "etc/ansim-edge/keys"
    (keys / "centre.pub").write_text("public\n")
    (keys / "centre.pub").chmod(0o644)
    (keys / "mqtt.password").write_text("secret\n")
    (keys / "mqtt.password").chmod(0o666)
    keys.chmod(0o755)

    p = _install(root)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "keeping the existing /etc/ansim-edge/site.yaml" in p.stdout
    assert "shelter-mapo-0007" in site.read_text()
    assert _mode(site) == 0o640
    assert _mode(keys) == 0o700
    assert _mode(keys / "centre.pub") == 0o600
    assert _mode(keys / "mqtt.password") == 0o600
    boot = (root / "boot/firmware/config.txt").read_text()
    assert boot.count("dtparam=strict_gpiod") == 1


def test_the_locker_example_and_bad_arguments(root: Path) -> None:
    p = _install(root, "--example", "locker")
    assert p.returncode == 0, p.stderr
    data = yaml.safe_load((root / "etc/ansim-edge/site.yaml").read_text())
    assert data["site"]["id"] == "locker-seoulstation-01"
    bad = _install(root, "--example", "bank")
    assert bad.returncode == 1
    assert "no example config 'bank'" in bad.stderr


def test_the_readme_steps_give_a_valid_site(root: Path) -> None:
    """README "Running on a Raspberry Pi": install, key into keys/, the keys: line, then
    check-config accepts the site with one trusted key."""
    assert _install(root).returncode == 0
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Running on a Raspberry Pi")[1].split("\n## ")[0]
    keys_line = re.search(r"`(keys: \[.*\])`", section)
    assert keys_line, "README shows the keys: line"
    centre = root.parent / "centre"
    generate_keypair(centre.with_suffix(".key"), centre.with_suffix(".pub"))
    shutil.copy(centre.with_suffix(".pub"), root / "etc/ansim-edge/keys/centre.pub")
    site = root / "etc/ansim-edge/site.yaml"
    assert site.read_text().count("\nkeys: []\n") == 1
    site.write_text(site.read_text().replace("\nkeys: []\n", f"\n{keys_line.group(1)}\n"))
    assert main(["check-config", str(site)]) == 0
    assert load_config(site).keys[0].public_key == root / "etc/ansim-edge/keys/centre.pub"
