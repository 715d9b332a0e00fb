"""The README's quick start, the `send` example of docs/cli.md and the shelter worked
example of docs/simulator-api.md, run as printed against a real `ansim-edge sim` (on a real
mosquitto, other ports: the only changes to the commands, each checked to apply). Also
`sim`'s banner, its human-readable log when stderr is a file, and that nothing in the quick
start leaves an alarm running (issue 10.6)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.mqtt import Mosquitto
from tests.support.site import REPO
from tests.support.wait import wait_until

README = (REPO / "README.md").read_text(encoding="utf-8")
CLI_DOC = (REPO / "docs" / "cli.md").read_text(encoding="utf-8")
SIM_DOC = (REPO / "docs" / "simulator-api.md").read_text(encoding="utf-8")
CONFIG = "config/examples/shelter.yaml"
ANSIM = f"{sys.executable} -m edge.cli"


def block(text: str, marker: str) -> str:
    """The fenced block right after ``<!-- quickstart: MARKER -->``."""
    m = re.search(rf"<!-- quickstart: {marker} -->\n```\w*\n(.*?)```", text, re.S)
    assert m, f"no quickstart: {marker} block"
    return m.group(1)


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the doc's command changed: no {old!r} in {text!r}"
    return text.replace(old, new)


@dataclass
class Sim:
    proc: subprocess.Popen[str]
    control: int
    broker: str
    data: Path
    stdout: list[str]
    stderr: Path

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.control}{path}", timeout=5) as r:
            return json.loads(r.read())

    def commands(self, text: str, *, data_dir: str | None = None) -> str:
        """The doc's commands with this sim's ports and paths."""
        text = replace(text, "ansim-edge ", f"{ANSIM} ").replace(f".venv/bin/{ANSIM}", ANSIM)
        text = replace(text, f"--config {CONFIG}", f"--config {CONFIG} --broker {self.broker}")
        if data_dir is not None:
            text = replace(text, data_dir, f"{self.data}/")
        for api in ("localhost:8765", "127.0.0.1:8765"):
            text = text.replace(api, f"127.0.0.1:{self.control}")
        assert "8765" not in text
        return text


@pytest.fixture
def sim(mosquitto: Mosquitto, tmp_path: Path) -> Iterator[Sim]:
    err = tmp_path / "sim.err"
    with err.open("w") as err_file:
        # Port 0: the sim binds a free port itself and its banner says which. A port picked
        # here (free_port) could be taken by another process before the sim, slow to start
        # on a loaded machine, bound it: it then exited and its banner never came.
        proc = subprocess.Popen(
            [*ANSIM.split(), "sim", "--config", CONFIG, "--data-dir", str(tmp_path / "data")]  # noqa: RUF005
            + ["--control", "127.0.0.1:0", "--broker", mosquitto.url],
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()

    def banner() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the sim exited ({proc.returncode}): {err.read_text()}")
        return any(ln.startswith("  stop") for ln in lines)

    try:
        wait_until(banner, timeout=30, message=f"the sim's banner ({err})")
        console = re.search(r"^  console     http://127\.0\.0\.1:(\d+)/", "".join(lines), re.M)
        assert console, lines
        s = Sim(proc, int(console.group(1)), mosquitto.url, tmp_path / "data", lines, err)
        wait_until(lambda: s.get("/state")["site"]["online"], timeout=20, message="online")
        yield s
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(20) == 0
        finally:
            if proc.poll() is None:
                proc.kill()


def run(cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-e", "-c", cmd], capture_output=True, text=True, cwd=REPO, timeout=60
    )


def test_the_quick_start_works_as_printed(sim: Sim) -> None:
    # The banner: where everything is (stdout), as the README shows it.
    banner = [ln.rstrip("\n") for ln in sim.stdout]
    assert banner[0] == f"ansim-edge sim: site shelter-gangnam-0001 ({CONFIG})"
    shown = re.search(
        r"`scripts/sim.sh` says where everything is:\n\n```text\n(.*?)```", README, re.S
    )
    assert shown, "the README shows the banner"
    labels = [ln[:14] for ln in shown.group(1).splitlines()[1:]]
    assert [ln[:14] for ln in banner[1:]] == labels
    assert (
        banner[1]
        == f"  console     http://127.0.0.1:{sim.control}/  (control API: docs/simulator-api.md)"
    )
    assert banner[2] == f"  broker      {sim.broker}"
    assert banner[3] == f"  data dir    {sim.data}"
    assert banner[4] == f"  dev key     {sim.data}/dev-keys/dev.key  (key id dev)"
    assert banner[5] == f"  watch it    ansim-edge watch --config {CONFIG} --broker {sim.broker}"
    # Its log, to a file, is human-readable (no longer JSON off a terminal).
    log = sim.stderr.read_text("utf-8")
    ready = [ln for ln in log.splitlines() if " sim_ready " in ln]
    assert len(ready) == 1 and not ready[0].startswith("{"), log
    assert "[info     ] sim_ready" in ready[0] and f"broker={sim.broker}" in ready[0]

    data_dir = "data/shelter-gangnam-0001/"
    watch_cmd = sim.commands(block(README, "watch")).strip()
    press = sim.commands(block(README, "press"), data_dir=data_dir)
    watch = subprocess.Popen(
        ["bash", "-c", f"exec {watch_cmd}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen: list[str] = []
    threading.Thread(target=lambda: seen.extend(watch.stdout or []), daemon=True).start()
    try:
        wait_until(lambda: any("alarm " in ln and "(retained)" in ln for ln in seen), timeout=20)
        p = run(press)
        assert p.returncode == 0, p.stderr
        result = json.loads(p.stdout.splitlines()[-1])
        assert result["ok"] is True and result["data"]["state"] == "idle"

        def has(*parts: str) -> bool:
            return any(all(x in ln for x in parts) for ln in seen)

        wait_until(lambda: has(" event ", "alarm.raised", "button=panic-counter"), timeout=10)
        wait_until(lambda: has(" result ", "alarm.clear", " ok "), timeout=10)
        wait_until(lambda: has(" event ", "alarm.cleared", "by=dev"), timeout=10)
    finally:
        watch.send_signal(signal.SIGINT)
        assert watch.wait(10) == 0
    # Nothing left running: the alarm is idle, so no SMS or call will follow.
    assert sim.get("/state")["site"]["states"]["alarm"]["state"] == "idle"
    modem = sim.get("/modem")
    assert modem["sms"] == [] and modem["calls"] == []

    # docs/cli.md: send with no alarm active: the result, exit 1.
    m = re.search(r"\$ (\.venv/bin/ansim-edge send alarm\.clear '\{\}' [^\n]+)\n", CLI_DOC)
    assert m, "the send example of docs/cli.md"
    p = run(sim.commands(m.group(1), data_dir=data_dir))
    assert p.returncode == 1
    body = json.loads(p.stdout)
    assert body["error"] == {"code": "wrong_state", "message": "no alarm is active at this site"}
    assert "FAILED wrong_state: no alarm is active at this site" in p.stderr

    # docs/simulator-api.md: the worked example (terminal 3), an ack then the key.
    section = SIM_DOC[SIM_DOC.index("## Worked example\n") :]
    worked = re.findall(r"```sh\n(.*?)```", section[: section.index("\n## ", 5)], re.S)[-1]
    p = run(sim.commands(worked, data_dir="/tmp/ansim-sim/"))
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "acknowledged {'sent_led': True, 'ack_led': True, 'buzzer': False}" in out, out
    assert "idle {'sent_led': False, 'ack_led': False, 'buzzer': False}" in out, out
    assert '"ok":true' in out and '"state":"acknowledged"' in out
