"""Every message the docs quote is what the program really prints.

A block marked ``<!-- quoted: NAME -->`` in docs/*.md is produced here by the case NAME
and compared with the real output. In a quoted block, ``<...>`` stands for any text
(a port, a path, a parser's detail); everything else must match exactly. Paths under the
test's temporary directory are shown as the docs' example paths (/etc/ansim-edge,
/var/lib/ansim-edge). A few quotes inside sentences (README, the sim_ready line, the
simulated supervision input) are checked by name below.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.mqtt import free_port
from tests.support.site import make_keys
from tests.support.wait import wait_until

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
ETC, VAR = "/etc/ansim-edge", "/var/lib/ansim-edge"

QUOTED_RE = re.compile(r"<!-- quoted: ([a-z0-9-]+) -->\n```text\n(.*?)```", re.S)
PLACEHOLDER_RE = re.compile(r"<[^<>\n]+>")


@dataclass(frozen=True)
class Quote:
    name: str
    doc: Path
    text: str

    def regex(self) -> re.Pattern[str]:
        parts = PLACEHOLDER_RE.split(self.text.rstrip("\n"))
        return re.compile(".+?".join(re.escape(p) for p in parts))


def quotes() -> dict[str, Quote]:
    out: dict[str, Quote] = {}
    for doc in sorted(DOCS.glob("*.md")):
        for m in QUOTED_RE.finditer(doc.read_text(encoding="utf-8")):
            assert m.group(1) not in out, f"quoted block {m.group(1)} appears twice"
            out[m.group(1)] = Quote(m.group(1), doc, m.group(2))
    return out


def cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edge.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)},
    )


class Case:
    """A temporary /etc/ansim-edge (``etc``) and /var/lib/ansim-edge (``var``)."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.etc = tmp_path / "etc"
        self.var = tmp_path / "var"
        self.etc.mkdir()

    def config(self, data: Any) -> Path:
        path = self.etc / "site.yaml"
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return path

    def shown(self, text: str) -> str:
        """Output with the temporary paths shown as the docs' example paths."""
        return text.replace(str(self.var), VAR).replace(str(self.etc), ETC)

    def base(self) -> dict[str, Any]:
        keys = make_keys(self.etc / "keys")
        return {
            "site": {"id": "shelter-gangnam-0001"},
            "data_dir": str(self.var),
            "keys": keys.trusted(),
            "devices": {"panic_buttons": [{"name": "panic-counter", "pin": 17}]},
        }


def doc_example_public_key() -> str:
    text = (DOCS / "mqtt-api.md").read_text(encoding="utf-8")
    m = re.search(r"<!-- signing: public-key -->\n```text\n(.*?)```", text, re.S)
    assert m, "docs/mqtt-api.md has no <!-- signing: public-key --> block"
    return m.group(1)


# --------------------------------------------------------------------------- the cases


def case_sim_control_port_busy(c: Case) -> str:
    cfg = c.config(c.base())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        p = cli(["sim", "--config", str(cfg), "--control", f"127.0.0.1:{port}"], c.tmp)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    return p.stderr


def case_run_missing_password_file(c: Case) -> str:
    d = c.base()
    d["broker"] = {"username": "shelter-gangnam-0001", "password_file": "mqtt.pw"}
    p = cli(["run", "--config", str(c.config(d))], c.tmp)
    assert p.returncode == 1
    return c.shown(p.stderr)


def case_sim_refuses_run_data_dir(c: Case) -> str:
    c.var.mkdir()
    (c.var / "ansim-edge.mode").write_text("run\n")
    p = cli(["sim", "--config", str(c.config(c.base()))], c.tmp)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    return p.stderr


def case_run_refuses_sim_data_dir(c: Case) -> str:
    c.var.mkdir()
    (c.var / "ansim-edge.mode").write_text("sim\n")
    p = cli(["run", "--config", str(c.config(c.base()))], c.tmp)
    assert p.returncode == 1 and len(p.stderr.splitlines()) == 1, p.stderr
    return p.stderr


def case_check_config_contact_no_warning(c: Case) -> str:
    d = c.base()
    d["devices"]["panic_buttons"][0]["contact"] = "no"
    p = cli(["check-config", str(c.config(d))], c.tmp)
    assert p.returncode == 0 and "ok" in p.stdout
    return p.stderr


def case_check_config_field_errors(c: Case) -> str:
    d = c.base()
    d["site"]["id"] = "Shelter 1"
    d["devices"]["panic_buttons"][0]["pin"] = 40
    d["brokr"] = {}
    p = cli(["check-config", str(c.config(d))], c.tmp)
    assert p.returncode == 1
    return c.shown(p.stderr)


def case_check_config_key_commands(c: Case) -> str:
    d = c.base()
    del d["keys"][0]["commands"]
    d["keys"][1]["commands"] = ["alarm.ack", "alarm.clea"]
    p = cli(["check-config", str(c.config(d))], c.tmp)
    assert p.returncode == 1
    return c.shown(p.stderr)


def case_check_config_file_errors(c: Case) -> str:
    d = c.base()
    (c.etc / "keys" / "centre.pub").unlink()
    (c.etc / "keys" / "tech.pub").write_text("not a key\n")
    (c.etc / "keys" / "example.pub").write_text(doc_example_public_key())
    d["keys"].append({"key_id": "ex", "public_key": "keys/example.pub", "commands": ["*"]})
    c.var.write_text("a file, not a directory\n")
    p = cli(["check-config", str(c.config(d))], c.tmp)
    assert p.returncode == 1
    return c.shown(p.stderr)


def case_check_config_yaml_error(c: Case) -> str:
    out = []
    p = cli(["check-config", str(c.etc / "site.yaml")], c.tmp)  # not there yet
    out.append(p.stderr)
    p = cli(["check-config", str(c.config("- a list\n"))], c.tmp)
    out.append(p.stderr)
    p = cli(
        ["check-config", str(c.config("site: {id: s1}\ndevices:\n  buzzer: {pin: 24\n"))], c.tmp
    )
    out.append(p.stderr)
    assert "<unicode string>" not in "".join(out)
    return c.shown("".join(out))


CASES: dict[str, Callable[[Case], str]] = {
    "sim-control-port-busy": case_sim_control_port_busy,
    "run-missing-password-file": case_run_missing_password_file,
    "sim-refuses-run-data-dir": case_sim_refuses_run_data_dir,
    "run-refuses-sim-data-dir": case_run_refuses_sim_data_dir,
    "check-config-contact-no-warning": case_check_config_contact_no_warning,
    "check-config-field-errors": case_check_config_field_errors,
    "check-config-key-commands": case_check_config_key_commands,
    "check-config-file-errors": case_check_config_file_errors,
    "check-config-yaml-error": case_check_config_yaml_error,
}


def test_every_quoted_block_has_a_case_and_every_case_a_quote() -> None:
    assert set(quotes()) == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_quoted_message_is_what_the_program_prints(name: str, tmp_path: Path) -> None:
    quote = quotes()[name]
    actual = CASES[name](Case(tmp_path))
    assert "Traceback" not in actual
    assert quote.regex().fullmatch(actual.rstrip("\n")), (
        f"{quote.doc.relative_to(REPO)} quotes ({name}):\n{quote.text}\nbut the program "
        f"printed:\n{actual}"
    )


# --------------------------------------------------------------------------- sim_ready, inputs


def sim_config(tmp_path: Path) -> Path:
    """The example shelter store, with wiring supervision on its panic button."""
    d = yaml.safe_load((REPO / "config" / "examples" / "shelter.yaml").read_text("utf-8"))
    d["data_dir"] = str(tmp_path / "data")
    d["devices"]["panic_buttons"][0]["supervision"] = {"pin": 5, "debounce_ms": 20}
    path = tmp_path / "site.yaml"
    path.write_text(json.dumps(d), encoding="utf-8")
    return path


@contextmanager
def sim(
    cfg: Path, control: int, *, stderr: int | None, log_format: str | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    args = ["sim", "--config", str(cfg), "--embedded-port", "0"]
    if log_format is not None:
        args = ["--log-format", log_format, *args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge.cli", *args, "--control", f"127.0.0.1:{control}"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        cwd=REPO,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()  # never leave a hung sim behind; the test fails on the exit code
            proc.wait(10)
            raise


def http(port: int, method: str, path: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def test_sim_ready_json_line_and_supervision_input_are_as_documented(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    cli_doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    sim_doc = (DOCS / "simulator-api.md").read_text(encoding="utf-8")
    json_quote = '`"broker": "mqtt://127.0.0.1:PORT"`'
    assert json_quote in cli_doc and "`--log-format json`" in cli_doc
    assert "`<button>-supervision`" in sim_doc
    assert "broker=mqtt://127.0.0.1:PORT" in readme

    log = tmp_path / "sim.log"
    control = free_port()
    cfg = sim_config(tmp_path)
    with log.open("wb") as err, sim(cfg, control, stderr=err.fileno(), log_format="json") as proc:

        def ready() -> dict[str, Any] | None:
            assert proc.poll() is None, log.read_text()
            for line in log.read_text("utf-8").splitlines():
                if '"sim_ready"' in line:
                    return dict(json.loads(line)) | {"_line": line}
            return None

        event = wait_until(ready, timeout=30, message="sim_ready")
        wanted = json_quote.strip("`").replace("PORT", r"\d+")
        assert re.search(wanted, event["_line"]), event["_line"]

        # the simulated supervision input, named as the doc says
        state = wait_until(lambda: http(control, "GET", "/state"), timeout=10)
        assert "panic-counter-supervision" in state["inputs"]
        assert state["inputs"]["panic-counter-supervision"]["pin"] == 5
        http(control, "POST", "/inputs/panic-counter-supervision", {"active": True})

        def wiring() -> Any:
            return http(control, "GET", "/state")["site"]["states"]["panic-counter"]["wiring"]

        assert wait_until(wiring, timeout=10) == ["supervision"]
        http(control, "POST", "/inputs/panic-counter-supervision", {"active": False})
        wait_until(lambda: wiring() is None, timeout=10, message="wiring restored")


CONSOLE_READY = re.compile(r"\] sim_ready .*\n")  # structlog's console line, complete


def test_sim_ready_line_on_a_terminal_is_as_documented(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    cli_doc = (DOCS / "cli.md").read_text(encoding="utf-8")
    quote = "`broker=mqtt://127.0.0.1:PORT`"
    assert quote in readme and quote in cli_doc
    wanted = re.compile(quote.strip("`").replace(".", r"\.").replace("PORT", r"\d+"))

    master, slave = pty.openpty()
    seen = b""

    def drain(timeout: float) -> None:
        nonlocal seen
        ready, _, _ = select.select([master], [], [], timeout)
        if ready:
            try:
                seen += os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                pass

    try:
        with sim(sim_config(tmp_path), free_port(), stderr=slave) as proc:
            os.close(slave)
            slave = -1
            deadline = time.monotonic() + 30
            while not CONSOLE_READY.search(seen.decode("utf-8", "replace")):
                assert proc.poll() is None and time.monotonic() < deadline, seen.decode()
                drain(0.5)
            # keep reading while it shuts down: a full terminal buffer would block its logging
            proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                drain(0.1)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    [line] = [ln for ln in seen.decode("utf-8", "replace").splitlines() if " sim_ready " in ln]
    assert not line.lstrip().startswith("{"), line  # the console format, not JSON
    assert wanted.search(line), line


# --------------------------------------------------------------------------- links


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = doc.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # '# comments' in code are no headings
    return {_slug(m.group(1)) for m in re.finditer(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("doc", [DOCS / "security.md", REPO / "README.md"], ids=lambda p: p.name)
def test_relative_links_and_anchors_resolve(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        assert dest.exists(), f"{doc.name}: link to missing {target}"
        if anchor:
            assert anchor in _anchors(dest), f"{doc.name}: no heading for {target}"
