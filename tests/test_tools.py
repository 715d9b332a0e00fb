"""`ansim-edge watch` and `ansim-edge send` (docs/cli.md) against a real site on a real
mosquitto: the centre's view one readable line per message, a signed command's result
and exit code, and the readable line of each kind of message."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from edge.cli import main as cli_main
from edge.tools.centre import default_key_id, parse_message
from edge.tools.render import is_heartbeat, render, value_text
from tests.support.mqtt import Mosquitto, free_port
from tests.support.site import REPO, Keys, ThreadedSite, make_keys, site_dict
from tests.support.wait import wait_until

SITE = "tools-0001"


def main(argv: list[str]) -> int:
    """edge.cli.main without its logging setup: it would point structlog, with logger
    caching on, at this test's captured stderr, and the loggers of a site running in this
    process meanwhile would keep writing there after the test (closed by then)."""
    with mock.patch("edge.logs.configure"):
        return cli_main(argv)


def result_of(out: str) -> Any:
    """send's result line (the in-process site's own log lines go to stdout too)."""
    [line] = [ln for ln in out.splitlines() if ln.startswith('{"command_id"')]
    return json.loads(line)


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return make_keys(tmp_path / "keys")


@pytest.fixture
def site(mosquitto: Mosquitto, keys: Keys, tmp_path: Path) -> Iterator[ThreadedSite]:
    with ThreadedSite(site_dict(SITE, mosquitto.url, tmp_path / "d", keys)) as rs:
        wait_until(lambda: rs.site.call(lambda: rs.site.outbox.online), message="online")
        yield rs


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Watch:
    """`ansim-edge watch` as a child process; its stdout lines collected as they come."""

    def __init__(self, *args: str, sigint_ignored: bool = False) -> None:
        """``sigint_ignored``: start it as a background job or nohup would, SIGINT ignored
        (Python then raises no KeyboardInterrupt on Ctrl-C by itself)."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "edge.cli", "watch", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=REPO,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            text=True,
            preexec_fn=_ignore_sigint if sigint_ignored else None,
        )
        self.lines: list[str] = []
        self.errors: list[str] = []
        for stream, out in ((self.proc.stdout, self.lines), (self.proc.stderr, self.errors)):
            threading.Thread(target=self._read, args=(stream, out), daemon=True).start()

    @staticmethod
    def _read(stream: Any, out: list[str]) -> None:
        for line in stream:
            out.append(line.rstrip("\n"))

    def wait_line(self, *parts: str, timeout: float = 10) -> str:
        def seen() -> str | None:
            assert self.proc.poll() is None or self.lines, self.errors
            return next((ln for ln in self.lines if all(p in ln for p in parts)), None)

        return wait_until(seen, timeout=timeout, message=f"a watch line with {parts}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


@pytest.fixture
def watch() -> Iterator[list[Watch]]:
    made: list[Watch] = []
    yield made
    for w in made:
        w.stop()


def test_watch_prints_a_press_and_a_command_readably_and_stops_on_ctrl_c(
    site: ThreadedSite, mosquitto: Mosquitto, keys: Keys, watch: list[Watch]
) -> None:
    w = Watch("--broker", mosquitto.url, "--site", SITE)
    watch.append(w)
    wait_until(lambda: any("watching" in e for e in w.errors), message="watch started")
    assert f"watching ansim/v1/{SITE}/# on 127.0.0.1:{mosquitto.port}" in w.errors[0]
    status = w.wait_line(" status ", "online")
    assert status.endswith("(retained)") and "version=0.1.0" in status
    w.wait_line(" state ", "alarm", "state=idle", "(retained)")

    site.press()
    wait_until(lambda: site.alarm()["state"] == "active", message="the press seen")
    site.press(False)
    raised = w.wait_line(" event ", "alarm.raised")
    alarm_id = site.alarm()["alarm_id"]
    assert f"alarm_id={alarm_id}" in raised and " panic-1 " in raised and "#" in raised
    assert "button=panic-1 mode=silent test=false" in raised
    assert raised.split()[1] == SITE
    w.wait_line(" state ", "sent_led", "on=true")

    key = str(keys.dir / "centre.key")
    rc = main(
        ["send", "alarm.clear", "{}", "--broker", mosquitto.url, "--site", SITE, "--key", key]
    )
    assert rc == 0
    command = w.wait_line(" command ", "alarm.clear")
    assert "key_id=centre" in command
    result = w.wait_line(" result ", "alarm.clear", " ok ")
    assert f"alarm_id={alarm_id} state=idle" in result
    w.wait_line(" event ", "alarm.cleared", "by=centre")
    assert w.stop() == 0  # Ctrl-C: a clean exit, no traceback
    assert not any("Traceback" in e for e in w.errors), w.errors


def test_watch_raw_and_every_site(
    site: ThreadedSite, mosquitto: Mosquitto, watch: list[Watch]
) -> None:
    w = Watch("--broker", mosquitto.url, "--raw")
    watch.append(w)
    line = w.wait_line(f"ansim/v1/{SITE}/status ")
    _topic, payload = line.split(" ", 1)
    assert json.loads(payload)["state"] == "online"
    assert w.errors[0].startswith("watching ansim/v1/+/# on ")


def test_watch_stops_on_ctrl_c_even_when_started_with_sigint_ignored(
    site: ThreadedSite, mosquitto: Mosquitto
) -> None:
    w = Watch("--broker", mosquitto.url, "--site", SITE, sigint_ignored=True)
    try:
        w.wait_line(" status ", "online")
        assert w.stop() == 0
        assert not any("Traceback" in e for e in w.errors), w.errors
    finally:
        if w.proc.poll() is None:
            w.proc.kill()


def test_watch_without_a_broker_says_so() -> None:
    port = free_port()
    p = subprocess.run(
        [sys.executable, "-m", "edge.cli", "watch", "--broker", f"mqtt://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )
    assert p.returncode == 1
    assert p.stderr.strip() == (
        f"ansim-edge: cannot connect to the MQTT broker at 127.0.0.1:{port}: Connection refused "
        "(is the simulator running? right --broker?)"
    )


def test_send_exit_codes_and_output(
    site: ThreadedSite, mosquitto: Mosquitto, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--broker", mosquitto.url, "--site", SITE, "--key", str(keys.dir / "centre.key")]
    # refused by the site: the result on stdout, exit 1
    assert main(["send", "alarm.clear", "{}", *base]) == 1
    out, err = capsys.readouterr()
    result = result_of(out)
    assert result["ok"] is False and result["error"]["code"] == "wrong_state"
    assert "result   alarm.clear           FAILED wrong_state: " in err
    # a key the site does not trust: refused too
    stranger = ["--key", str(keys.dir / "stranger.key")]
    assert main(["send", "alarm.clear", "{}", *base[:4], *stranger]) == 1
    assert result_of(capsys.readouterr().out)["error"]["code"] == "unknown_key"
    # the tech key may not clear alarms
    tech = ["--key", str(keys.dir / "tech.key")]
    assert main(["send", "alarm.clear", "{}", *base[:4], *tech]) == 1
    assert result_of(capsys.readouterr().out)["error"]["code"] == "not_allowed"
    # ok: exit 0
    assert main(["send", "site.test_mode", '{"on": true, "minutes": 5}', *base]) == 0
    data = result_of(capsys.readouterr().out)["data"]
    assert data["on"] is True and data["until"]
    # no such site: no result within the timeout, exit 2
    other = ["--broker", mosquitto.url, "--site", "nosuch", "--key", str(keys.dir / "centre.key")]
    assert main(["send", "alarm.clear", "{}", *other, "--timeout", "0.5"]) == 2
    out, err = capsys.readouterr()
    assert '{"command_id"' not in out
    assert "ansim-edge send: no result for alarm.clear (command_id " in err
    assert "from site nosuch within 0.5 s; no status retained for it" in err


def test_send_timeout_names_an_offline_site(
    mosquitto: Mosquitto, keys: Keys, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with ThreadedSite(site_dict(SITE, mosquitto.url, tmp_path / "d", keys)) as rs:
        wait_until(lambda: rs.site.call(lambda: rs.site.outbox.online), message="online")
    # stopped cleanly: its retained status is offline
    base = ["--broker", mosquitto.url, "--site", SITE, "--key", str(keys.dir / "centre.key")]
    assert main(["send", "alarm.clear", "{}", *base, "--timeout", "0.5"]) == 2
    assert "its status is 'offline'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("[1]", "ansim-edge: send: ARGS must be a JSON object"),
        ("{oops", "ansim-edge: send: ARGS is not JSON"),
        ('{"a": 1, "a": 2}', "ansim-edge: send: ARGS is not JSON: duplicate key 'a'"),
    ],
)
def test_send_refuses_bad_args(
    args: str, message: str, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    key = str(keys.dir / "centre.key")
    assert main(["send", "x.y", args, "--site", "s", "--key", key]) == 1
    assert capsys.readouterr().err.startswith(message)


def test_send_needs_a_site(keys: Keys, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", "alarm.clear", "--key", str(keys.dir / "centre.key")]) == 1
    assert "say which site: --config FILE or --site ID" in capsys.readouterr().err


def test_default_key_id() -> None:
    assert default_key_id(Path("data/x/dev-keys/dev.key")) == "dev"
    assert default_key_id(Path("keys/centre.key")) == "centre"
    assert default_key_id(Path("tech.pem")) == "tech.pem"


# --------------------------------------------------------------------------- the lines


def msg(topic: str, body: Any, *, retained: bool = False, received: float = 1e9) -> Any:
    return parse_message("ansim/v1", topic, json.dumps(body).encode(), retained, received)


def test_render_kinds() -> None:
    names: dict[str, str] = {}
    t = 1_800_000_000.0
    ts = "2027-01-15T08:00:00.000Z"
    cmd = msg(
        "ansim/v1/s1/commands/locker/open",
        {
            "command_id": "c-1",
            "site": "s1",
            "name": "locker.open",
            "args": {"locker": 5, "reason": "service"},
            "key_id": "dev",
            "sig": "00",
            "expires_at": ts,
        },
        received=t,
    )
    line = render(cmd, names)
    assert line.split()[1:4] == ["s1", "command", "locker.open"]
    assert line.endswith("command_id=c-1 key_id=dev  locker=5 reason=service")
    ok = msg(
        "ansim/v1/s1/results",
        {
            "command_id": "c-1",
            "ok": True,
            "error": None,
            "data": {"locker": 5, "queued": 0},
            "ts": ts,
        },
        received=t,
    )
    assert render(ok, names).split()[2:] == [
        "result",
        "locker.open",
        "ok",
        "locker=5",
        "queued=0",
        "command_id=c-1",
    ]
    bad = msg(
        "ansim/v1/s1/results",
        {
            "command_id": "c-2",
            "ok": False,
            "data": None,
            "ts": ts,
            "error": {"code": "busy", "message": "locker 5 is opening"},
        },
        received=t,
    )
    assert render(bad, names).endswith(
        "result   ?                     FAILED busy: locker 5 is opening  command_id=c-2"
    )
    late = msg(
        "ansim/v1/s1/events/door/forced",
        {
            "event_id": "e",
            "seq": 7,
            "site": "s1",
            "device": "locker-6",
            "type": "door.forced",
            "ts": "2027-01-15T08:00:00.000Z",
            "data": {"locker": 6, "parcel_id": None},
        },
        received=t + 60,
    )
    text = render(late)
    assert "event    door.forced           #7 locker-6  locker=6  (happened " in text
    assert "parcel_id" not in text  # null members are left out
    state = msg(
        "ansim/v1/s1/state/alarm", {"state": "idle", "device": "alarm", "ts": ts}, retained=True
    )
    assert render(state).endswith("state    alarm                 state=idle  (retained)")
    other = msg("elsewhere/x", {"a": 1})
    assert " -  other    elsewhere/x" in render(other)


def test_value_text() -> None:
    assert value_text("panic-1") == "panic-1"
    assert value_text("관제센터 김민준") == '"관제센터 김민준"'
    assert value_text("") == '""'
    assert value_text(True) == "true" and value_text(None) == "null"
    assert value_text(2.5) == "2.5"
    assert value_text({"ok": True}) == '{"ok":true}'


def test_heartbeats_are_not_shown() -> None:
    assert is_heartbeat(msg("ansim/v1/s1/heartbeat", {}))
    assert not is_heartbeat(msg("ansim/v1/s1/status", {"state": "online"}))
    assert not is_heartbeat(msg("ansim/v1/s1/state/heartbeat", {"on": True}))


def test_the_broker_of_a_config_with_several_urls(keys: Keys, tmp_path: Path) -> None:
    from edge.config import parse_config
    from edge.tools.centre import broker_config

    d = site_dict("s1", "mqtt://127.0.0.1:1", tmp_path / "d", keys)
    del d["broker"]["url"]
    d["broker"]["urls"] = ["mqtt://10.0.0.1:1883", "mqtt://10.0.0.2:1883"]
    cfg = parse_config(d)
    assert broker_config(cfg, None).host == "10.0.0.1"  # the first
    other = broker_config(cfg, "mqtt://127.0.0.1:18830")
    assert (other.host, other.port, other.urls) == ("127.0.0.1", 18830, None)
    assert other.keepalive_s == 5  # the rest of the config's broker section
