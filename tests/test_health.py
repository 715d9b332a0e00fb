"""Health (issue 11.5): the retained status carries uptime, outbox depth and the age of the
oldest unsent message, the broker, and every active fault; the status file and
`ansim-edge status` show the same for a technician without a broker."""

from __future__ import annotations

import dataclasses
import json
import os
import time
import typing
from pathlib import Path
from typing import Any

import pytest
import structlog

from edge import health
from edge.cli import main as cli_main
from edge.devices.kind import FaultEvents
from edge.devices.lockers.events import BoardFault, BoardRecovered
from edge.devices.modem.events import ModemFault, ModemRecovered
from edge.devices.panic.events import WiringFault, WiringRestored
from edge.devices.registry import EVENT_DATA, KINDS
from edge.health import FaultBoard, StatusFile, render_status, status_file_path
from edge.models import Fault, InputFault, InputRestored, Status, StoreFault, StoreRecovered
from edge.service import site_status
from edge.site import STATUS_REFRESH_S
from tests.support.site import SHELTER_BUTTON as BUTTON
from tests.support.site import SteppedSite, shelter_config
from tests.support.wait import wait_until


def main(argv: list[str]) -> int:
    """edge.cli.main, then structlog's configuration put back (main() points it at this
    test's captured stderr, closed after the test)."""
    saved = structlog.get_config()
    try:
        return cli_main(argv)
    finally:
        structlog.configure(**saved)


# ----------------------------------------------------------------- the fault list


def test_the_fault_board_follows_fault_and_recovery_events() -> None:
    board = FaultBoard()
    board.observe("board-rs485-0-1", BoardFault(bus="rs485-0", board=1, reason="silent"), "t1")
    board.observe("code-reader", InputFault(reason="unplugged"), "t2")
    board.observe(BUTTON, WiringFault(button=BUTTON, reason="chatter", loop_open=False), "t3")
    board.observe(BUTTON, WiringFault(button=BUTTON, reason="stuck_active", loop_open=True), "t4")
    board.observe("modem", ModemFault(reason="no answer"), "t5")
    board.observe("site", StoreFault(error="disk full", at_start=False), "t6")
    assert [(f.kind, f.device, f.reason, f.since) for f in board.active()] == [
        ("board", "board-rs485-0-1", "silent", "t1"),
        ("input", "code-reader", "unplugged", "t2"),
        ("wiring", BUTTON, "chatter", "t3"),
        ("wiring", BUTTON, "stuck_active", "t4"),
        ("modem", "modem", "no answer", "t5"),
        ("store", "site", "disk full", "t6"),
    ]
    changes = board.changes
    board.observe("code-reader", InputFault(reason="unplugged"), "t7")  # reported again
    assert board.changes == changes
    assert board.active()[1].since == "t2"

    board.observe("board-rs485-0-1", BoardRecovered(bus="rs485-0", board=1), "t8")
    board.observe("code-reader", InputRestored(), "t8")
    board.observe(BUTTON, WiringRestored(button=BUTTON, reason="chatter"), "t8")
    board.observe("modem", ModemRecovered(), "t8")
    board.observe("site", StoreRecovered(degraded_s=1.0, persisted=0), "t8")
    assert [(f.kind, f.reason) for f in board.active()] == [("wiring", "stuck_active")]
    board.observe(BUTTON, WiringRestored(button=BUTTON, reason=None), "t9")
    assert board.active() == []


def test_the_fault_board_takes_the_fault_pairs_the_kinds_declare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A kind's ``faults`` is all the board needs: a kind declaring a new pair is followed
    (here the modem's events re-declared as a 'board' pair by a made-up kind)."""
    made_up = dataclasses.replace(
        KINDS[0], name="made-up", faults=(FaultEvents("board", ModemFault, ModemRecovered),)
    )
    kinds = (*(k for k in KINDS if k.name != "modem"), made_up)
    monkeypatch.setattr(health, "KINDS", kinds)
    board = FaultBoard()
    board.observe("relay", ModemFault(reason="gone"), "t1")
    assert [(f.kind, f.device, f.reason) for f in board.active()] == [("board", "relay", "gone")]
    board.observe("relay", ModemRecovered(), "t2")
    assert board.active() == []


def test_every_declared_fault_pair_is_an_event_and_a_status_fault_kind() -> None:
    kinds = set(typing.get_args(Fault.model_fields["kind"].annotation))
    pairs = [*health.CORE_FAULTS, *(f for k in KINDS for f in k.faults)]
    assert {p.kind for p in pairs} == kinds
    for p in pairs:
        assert EVENT_DATA[p.fault.TYPE] is p.fault
        assert EVENT_DATA[p.recovered.TYPE] is p.recovered
        assert p.reason in p.fault.model_fields


# ----------------------------------------------------------------- a whole site, FakeClock


@pytest.fixture
def harness(tmp_path: Path) -> Any:
    h = SteppedSite(shelter_config(tmp_path))
    yield h
    h.shutdown()


def statuses(h: SteppedSite) -> list[dict[str, Any]]:
    return [p.json for p in h.uplink.published if p.topic == h.site.topics.status]


def test_the_online_status_carries_health_and_follows_faults(harness: SteppedSite) -> None:
    h = harness
    h.start()
    h.step(125)  # uptime
    h.press()  # an alarm the broker has not acknowledged: the outbox holds it
    h.step(4)
    h.connect()
    first = statuses(h)[-1]
    Status.model_validate(first)  # the published contract
    assert first["state"] == "online"
    assert first["uptime_s"] == 129
    assert first["broker"] == h.cfg.broker.url
    assert first["outbox_depth"] >= 2  # site.started, alarm.raised, ...
    assert first["oldest_pending_s"] == pytest.approx(129, abs=0.5)  # site.started's ts
    assert first["faults"] == []

    # The button is still held when the alarm is cleared: a stuck_active wiring fault.
    h.press("reset_key")
    h.release("reset_key")
    h.step(STATUS_REFRESH_S)
    [fault] = statuses(h)[-1]["faults"]
    assert fault["kind"] == "wiring" and fault["device"] == BUTTON
    assert fault["reason"] == "stuck_active"
    [event] = h.stored_events("wiring.fault") or h.published_events("wiring.fault")
    assert fault["since"] == event["ts"]
    assert site_status(h.site).endswith(" pending, 1 fault")  # systemd's STATUS= line

    h.release()
    h.step(STATUS_REFRESH_S)
    assert statuses(h)[-1]["faults"] == []


def test_the_status_is_republished_when_the_outbox_depth_changes(harness: SteppedSite) -> None:
    h = harness
    h.start()
    h.connect()
    n = len(statuses(h))
    h.step(STATUS_REFRESH_S * 3)
    depth = statuses(h)[-1]["outbox_depth"]
    for p in list(h.uplink.published):
        if "/events/" in p.topic:
            h.ack_mid(p.mid)
    h.step(STATUS_REFRESH_S)
    latest = statuses(h)[-1]
    assert len(statuses(h)) > n
    assert latest["outbox_depth"] == 0 < depth
    assert latest["oldest_pending_s"] is None
    n = len(statuses(h))
    h.step(STATUS_REFRESH_S * 3)  # nothing changed: not repeated
    assert len(statuses(h)) == n


def test_offline_payloads_carry_no_health(harness: SteppedSite) -> None:
    h = harness
    h.start()
    h.connect()
    _, will = h.uplink.will()
    offline = json.loads(will)
    assert offline["state"] == "offline"
    assert offline["uptime_s"] is None and offline["faults"] is None
    assert offline["broker"] is None and offline["oldest_pending_s"] is None


# ----------------------------------------------------------------- status file and command


def test_status_file_path_prefers_systemds_runtime_directory(tmp_path: Path) -> None:
    assert status_file_path(tmp_path, {}) == tmp_path / "status.json"
    env = {"RUNTIME_DIRECTORY": "/run/ansim-edge"}
    assert status_file_path(tmp_path, env) == Path("/run/ansim-edge/status.json")


def test_the_status_file_is_replaced_atomically_and_removed_at_close(tmp_path: Path) -> None:
    path = tmp_path / "run" / "status.json"
    sf = StatusFile(path)
    for i in range(50):
        sf.put({"n": i})
    sf.close(remove=False)
    assert json.loads(path.read_text()) == {"n": 49}  # the latest wins
    assert [p.name for p in path.parent.iterdir()] == ["status.json"]  # no temporary left
    sf2 = StatusFile(path)
    sf2.put({"n": 50})
    sf2.close()
    assert not path.exists()


def test_the_site_writes_its_status_file_and_removes_it_at_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import edge.site

    real_site = edge.site.Site

    def site_with_file(*args: Any, **kw: Any) -> Any:
        return real_site(*args, status_file=tmp_path / "data" / "status.json", **kw)

    monkeypatch.setattr("tests.support.site.Site", site_with_file)
    h = SteppedSite(shelter_config(tmp_path))
    try:
        h.start()
        h.step(7)
        h.press()
        h.step(5)  # a status file rewrite (every 5 s)
        path = tmp_path / "data" / "status.json"
        wait_until(lambda: path.exists() and '"outbox_depth": 2' in path.read_text())
        doc = json.loads(path.read_text())
        assert doc["link"] == {
            "connected": False,
            "broker": h.cfg.broker.url,
            "connect_failures": 0,
            "failures_in_a_row": 0,
            "last_failure": None,
            "last_failure_at": None,
        }
        Status.model_validate(doc["status"])
        assert doc["status"]["uptime_s"] == 12

        cfg = tmp_path / "site.yaml"
        cfg.write_text(json.dumps({"site": {"id": "x"}, "data_dir": str(tmp_path / "data")}))
        capsys.readouterr()  # the site's own log lines so far
        assert main(["status", "--config", str(cfg)]) == 0
        out = capsys.readouterr().out.splitlines()
        assert out[0].startswith("site      shelter-0001 (ansim-edge ")
        assert out[0].endswith(f"to {path}")
        assert out[1] == f"broker    {h.cfg.broker.url}: NOT connected"
        assert out[2] == "uptime    12s"
        assert out[3].startswith("outbox    2 not yet acknowledged, the oldest 12s old")
        assert out[-1] == "faults    none"

        assert main(["status", "--config", str(cfg), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["status"]["site"] == "shelter-0001"

        old = time.time() - 60
        os.utime(path, (old, old))
        assert main(["status", "--config", str(cfg)]) == 1
        err = capsys.readouterr().err
        assert "is 60 s old" in err and "hung or was killed" in err
    finally:
        h.shutdown()
    assert not (tmp_path / "data" / "status.json").exists()
    capsys.readouterr()
    assert main(["status", "--config", str(cfg)]) == 1
    assert "no status file" in capsys.readouterr().err


def test_the_status_example_in_docs_cli_md_is_what_status_prints() -> None:
    """docs/cli.md's `ansim-edge status` example renders docs/mqtt-api.md's Status example."""
    docs = Path(__file__).resolve().parent.parent / "docs"
    api = (docs / "mqtt-api.md").read_text()
    example = json.loads(api.split("<!-- example: Status -->\n```json\n")[1].split("```")[0])
    cli_doc = (docs / "cli.md").read_text()
    shown = cli_doc.split("$ sudo ansim-edge status --config /etc/ansim-edge/site.yaml\n")[1]
    expected = shown.split("```")[0].splitlines()
    doc = {"link": {"connected": True, "broker": example["broker"]}, "status": example}
    assert render_status(doc, Path("/run/ansim-edge/status.json"), 2.0) == expected
