"""Run a scenario (simulator.scenario) against a running simulated site, the way a
technician would: the simulator's control API to act on the hardware, and an MQTT client
on the site's broker as the centre's view (events, states, status, results). Waiting is on
conditions, each with its time limit. docs/scenarios.md.

The Python API, also for the simulator's web console::

    report = ScenarioRunner(scenario, target, on_step=print).run()
    report.ok, report.text(), report.as_dict()
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from edge.config import BrokerConfig
from edge.core.errors import AnsimError
from edge.core.signing import load_private_key
from edge.tools.centre import CentreClient, Message, build_command, send_and_wait
from simulator.scenario import (
    VAR_RE,
    AdvanceClock,
    Board,
    Code,
    CutLink,
    Door,
    Expect,
    ExpectNone,
    ExpectSpec,
    Item,
    Jam,
    Modem,
    Press,
    Release,
    Scenario,
    Send,
    Tap,
    Wait,
    action_of,
)
from simulator.scenario_match import MISSING as MISSING
from simulator.scenario_match import dig, mismatch, short
from simulator.scenario_report import Report, StepReport, describe

__all__ = ["MISSING", "Report", "ScenarioRunner", "StepFailed", "StepReport", "Target", "mismatch"]

READY_S = 30.0
POLL_S = 0.05


@dataclass
class Target:
    """A running simulated site: where its control API and broker are, and how to sign
    and to cut its link."""

    control_url: str  # e.g. http://127.0.0.1:8765
    broker: BrokerConfig  # the broker the centre uses (the site's, not a relay's)
    site: str
    root: str = "ansim/v1"
    key: Path | None = None  # the key send steps sign with (the sim's dev key)
    key_id: str = "dev"
    cut_link: Callable[[float], None] | None = None  # None: this target cannot


class StepFailed(Exception):
    pass


# ---------------------------------------------------------------- the runner


class ScenarioRunner:
    def __init__(
        self,
        scenario: Scenario,
        target: Target,
        *,
        source: str = "",
        config: str = "",
        on_step: Callable[[StepReport], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.sc = scenario
        self.target = target
        self.on_step = on_step
        self.stop = stop or threading.Event()
        self.vars: dict[str, Any] = {"site": target.site}
        self.used: set[int] = set()  # indexes of events matched by an expect
        self.report = Report(scenario.name, target.site, source, config)
        self.centre: CentreClient | None = None
        self.t0 = 0.0
        self.modem_seen = {"sms": 0, "calls": 0}  # modem records from before the scenario

    # ---- running ----
    def run(self) -> Report:
        self.report.steps = [
            StepReport(i, action_of(s), describe(s, self.sc.timeout_s), note=s.note)
            for i, s in enumerate(self.sc.steps, 1)
        ]
        self.t0 = time.monotonic()
        try:
            self.centre = CentreClient(self.target.broker, self.target.root, self.target.site)
            self.centre.connect()
            self._wait_ready()
            self._modem_base()
        except (AnsimError, StepFailed, OSError) as exc:
            self.report.error = str(exc)
            self._close()
            return self.report
        try:
            for step, rep in zip(self.sc.steps, self.report.steps, strict=True):
                if self.stop.is_set():
                    break
                start = time.monotonic()
                rep.at_s = start - self.t0
                try:
                    detail = self._do(step)
                    rep.status, rep.detail = "ok", detail or ""
                except StepFailed as exc:
                    rep.status, rep.detail = "FAIL", str(exc)
                except (AnsimError, OSError) as exc:
                    rep.status, rep.detail = "FAIL", f"{type(exc).__name__}: {exc}"
                rep.took_s = time.monotonic() - start
                rep.at_s += rep.took_s
                if self.on_step is not None:
                    self.on_step(rep)
                if rep.status != "ok":
                    break
        finally:
            self.report.duration_s = time.monotonic() - self.t0
            self._close()
        return self.report

    def _close(self) -> None:
        if self.centre is not None:
            self.centre.close()

    def _modem_base(self) -> None:
        try:
            modem = self.http("GET", "/modem")
        except StepFailed:
            return  # no modem at this site
        self.modem_seen = {k: len(modem.get(k, [])) for k in self.modem_seen}

    def _modem(self, key: str) -> list[Any]:
        """The simulated modem's SMS or calls since the scenario started."""
        records = self.http("GET", "/modem").get(key, [])
        return list(records[self.modem_seen[key] :])

    def _wait_ready(self) -> None:
        """The site is online (as the centre sees it) and every door has been read."""
        deadline = time.monotonic() + READY_S
        why = "no answer"
        assert self.centre is not None
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                state = self.http("GET", "/state")
            except StepFailed as exc:
                why = str(exc)
            else:
                site = state.get("site", {})
                unread = [
                    name
                    for name, st in site.get("states", {}).items()
                    if name.startswith("locker-") and st.get("door") == "unknown"
                ]
                status = self.centre.latest("status", site=self.target.site)
                centre_online = status is not None and dig(status.body, "state") == "online"
                if site.get("online") and centre_online and not unread:
                    return
                why = (
                    "the site is not connected to its broker"
                    if not site.get("online")
                    else "the centre has not seen its online status"
                    if not centre_online
                    else f"doors not read yet: {unread[:5]}"
                )
            self.stop.wait(0.1)
        raise StepFailed(f"the simulated site was not ready within {READY_S:g} s: {why}")

    # ---- the control API ----
    def http(self, method: str, path: str, body: Any = None) -> Any:
        url = self.target.control_url.rstrip("/") + path
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"null")
        except urllib.error.HTTPError as exc:
            try:
                msg = json.loads(exc.read()).get("error", "")
            except (ValueError, AttributeError):
                msg = ""
            raise StepFailed(f"{method} {path}: HTTP {exc.code} {msg}".rstrip()) from None
        except (urllib.error.URLError, OSError) as exc:
            raise StepFailed(f"{method} {path}: simulator unreachable ({exc})") from None

    # ---- variables ----
    def fill(self, obj: Any) -> Any:
        if isinstance(obj, str):
            whole = VAR_RE.fullmatch(obj)
            if whole:
                return self._var(whole.group(1))
            return VAR_RE.sub(lambda m: str(self._var(m.group(1))), obj)
        if isinstance(obj, dict):
            return {self.fill(k): self.fill(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [self.fill(v) for v in obj]
        return obj

    def _var(self, name: str) -> Any:
        if name not in self.vars:
            raise StepFailed(f"${{{name}}} was not saved (saved: {sorted(self.vars)})")
        return self.vars[name]

    def _save(self, save: dict[str, str] | None, body: Any) -> str:
        if not save:
            return ""
        out = []
        for var, path in save.items():
            value = dig(body, path)
            if value is MISSING:
                raise StepFailed(f"save {var}: no {path} in {short(body)}")
            self.vars[var] = value
            out.append(f"{var}={value}")
        return "saved " + " ".join(out)

    # ---- steps ----
    def _within(self, v: float | None) -> float:
        return v if v is not None else self.sc.timeout_s

    def _do(self, step: Any) -> str | None:
        if isinstance(step, Press | Release):
            name = self.fill(getattr(step, action_of(step)))
            self.http("POST", f"/inputs/{name}", {"active": isinstance(step, Press)})
        elif isinstance(step, Tap):
            t = step.tap
            for _ in range(t.times):
                self.http("POST", f"/inputs/{t.input}", {"active": True})
                self._sleep(t.hold_s)
                self.http("POST", f"/inputs/{t.input}", {"active": False})
                self._sleep(t.gap_s)
        elif isinstance(step, Wait):
            self._sleep(step.wait)
        elif isinstance(step, Door):
            self.http("POST", f"/lockers/{step.door.locker}/door", {"open": step.door.open})
        elif isinstance(step, Item):
            self.http("POST", f"/lockers/{step.item.locker}/item", {"present": step.item.present})
        elif isinstance(step, Jam):
            self.http("POST", f"/lockers/{step.jam.locker}/jam", {"jammed": step.jam.jammed})
        elif isinstance(step, Board):
            b = step.board
            self.http("POST", f"/boards/{b.bus}/{b.board}", {"mode": b.mode})
        elif isinstance(step, Code):
            self.http("POST", "/code-reader", {"code": self.fill(step.code)})
        elif isinstance(step, Modem):
            self.http("POST", "/modem", step.modem.model_dump(exclude_none=True))
        elif isinstance(step, AdvanceClock):
            now = self.http("POST", "/clock", {"advance_s": step.advance_clock.total_s})
            return f"site clock now {now.get('now')}"
        elif isinstance(step, CutLink):
            if self.target.cut_link is not None:
                self.target.cut_link(step.cut_link.for_s)
                return None
            try:  # the simulator's own link relay (POST /link), when it has one
                self.http("POST", "/link", {"seconds": step.cut_link.for_s})
            except StepFailed as exc:
                raise StepFailed(
                    f"this simulator cannot cut its broker link ({exc}); run the scenario "
                    "with `ansim-edge scenario run`, which starts a site whose link it can cut"
                ) from None
        elif isinstance(step, Send):
            return self._send(step)
        elif isinstance(step, Expect):
            return self._expect(step.expect)
        elif isinstance(step, ExpectNone):
            return self._expect_none(step)
        return None

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(seconds):
            raise StepFailed("stopped")

    # ---- send ----
    def _send(self, step: Send) -> str:
        s = step.send
        key_path = s.key or self.target.key
        if key_path is None:
            raise StepFailed(
                "no key to sign with: the site's config has trusted keys, so the simulator "
                "made no development key; give key: (and key_id:) in the step"
            )
        key_id = s.key_id or (self.target.key_id if s.key is None else key_path.stem)
        args = self.fill(s.args)
        command = build_command(
            s.command,
            args,
            load_private_key(key_path),
            key_id=key_id,
            site=self.target.site,
            now=self._site_now(),
        )
        assert self.centre is not None
        within = self._within(s.within_s)
        out = send_and_wait(self.centre, self.target.site, command, within)
        if out.result is None:
            raise StepFailed(f"no result within {within:g} s (command_id {command['command_id']})")
        body = out.result.body if isinstance(out.result.body, dict) else {}
        got = "ok" if body.get("ok") is True else dig(body, "error.code")
        if s.result not in ("any", got):
            error = body.get("error") or {}
            raise StepFailed(
                f"result {got}"
                + (f" ({error.get('message')})" if error else "")
                + f", expected {s.result}: {short(body)}"
            )
        saved = self._save(s.save, body)
        data = body.get("data") if body.get("ok") else body.get("error")
        return " ".join(p for p in (f"{got} {short(data, 100)}", saved) if p)

    def _site_now(self) -> datetime | None:
        """The site's wall clock (a simulator's clock may have been moved forward)."""
        try:
            now = self.http("GET", "/clock")
        except StepFailed:
            return None
        try:
            return datetime.fromisoformat(str(now["now"]).replace("Z", "+00:00"))
        except (KeyError, TypeError, ValueError):
            return None

    # ---- expectations ----
    def _expect(self, e: ExpectSpec) -> str:
        within = self._within(e.within_s)
        if e.kind == "event":
            return self._expect_event(e, within)
        if e.kind in ("state", "status"):
            return self._expect_centre(e, within)
        return self._expect_sim(e, within)

    def _event_matcher(
        self, type_: str, device: str | None, data: Any
    ) -> Callable[[int, Message], bool]:
        def match(i: int, m: Message) -> bool:
            return (
                i not in self.used
                and m.kind == "event"
                and m.name == type_
                and (device is None or dig(m.body, "device") == device)
                and (data is None or mismatch(data, m.data) is None)
            )

        return match

    def _expect_event(self, e: ExpectSpec, within: float) -> str:
        assert self.centre is not None and e.event is not None
        data = self.fill(e.data) if e.data is not None else None
        device = self.fill(e.device) if e.device is not None else None
        start = time.monotonic()
        i = self.centre.wait_index(self._event_matcher(e.event, device, data), within)
        if i is None:
            raise StepFailed(self._no_event(e.event, device, data, within))
        self.used.add(i)
        m = self.centre.messages[i]
        saved = self._save(e.save, m.body)
        took = time.monotonic() - start
        return f"#{dig(m.body, 'seq')} after {took:.2f} s" + (f"; {saved}" if saved else "")

    def _no_event(self, type_: str, device: str | None, data: Any, within: float) -> str:
        assert self.centre is not None
        msgs = self.centre.snapshot()
        same = [m for i, m in enumerate(msgs) if m.kind == "event" and m.name == type_]
        free = [m for i, m in enumerate(msgs) if m.kind == "event" and i not in self.used]
        out = f"no {type_} event within {within:g} s"
        if same:
            last = same[-1]
            why = (
                f"device is {dig(last.body, 'device')}"
                if device is not None and dig(last.body, "device") != device
                else mismatch(data, last.data)
                if data is not None
                else "already matched by an earlier step"
            )
            out += f"\nthe last {type_} (#{dig(last.body, 'seq')}) does not match: {why}"
            out += f"\n  {short(last.data, 300)}"
        seen = ", ".join(f"{m.name} #{dig(m.body, 'seq')}" for m in free[-8:]) or "none"
        return out + f"\nevents not matched by earlier steps: {seen}"

    def _expect_none(self, step: ExpectNone) -> str:
        assert self.centre is not None
        e = step.expect_none
        if e.kind != "event":
            return self._expect_no_modem(e.kind, getattr(e, e.kind), e.for_s)
        assert e.event is not None
        data = self.fill(e.data) if e.data is not None else None
        device = self.fill(e.device) if e.device is not None else None
        start = time.monotonic()
        i = self.centre.wait_index(self._event_matcher(e.event, device, data), e.for_s)
        if i is not None:
            m = self.centre.messages[i]
            raise StepFailed(
                f"{e.event} #{dig(m.body, 'seq')} arrived after {time.monotonic() - start:.2f} s:"
                f" {short(m.data, 300)}"
            )
        return "none seen"

    def _expect_no_modem(self, kind: str, want: Any, for_s: float) -> str:
        """No SMS / call like ``want`` in the simulated modem's log (since the scenario
        started) by the end of ``for_s``."""
        key = "sms" if kind == "sms" else "calls"
        want = self.fill(want)
        deadline = time.monotonic() + for_s
        while True:
            records = self._modem(key)
            hits = [r for r in records if mismatch(want, r) is None]
            if hits:
                raise StepFailed(f"the modem got a {kind}: {short(hits[0], 300)}")
            if time.monotonic() >= deadline or self.stop.is_set():
                return f"no {kind}"
            self.stop.wait(POLL_S)

    def _expect_centre(self, e: ExpectSpec, within: float) -> str:
        """The latest retained state of a device, or the status, as the centre sees it."""
        assert self.centre is not None
        kind, name = ("state", str(e.state)) if e.kind == "state" else ("status", "")
        want = self.fill(e.match if kind == "state" else e.status)
        deadline = time.monotonic() + within
        start = time.monotonic()
        seen = 0
        while True:
            m = self.centre.latest(kind, name, site=self.target.site)
            why = "nothing received" if m is None else mismatch(want, m.body)
            if why is None:
                return f"after {time.monotonic() - start:.2f} s"
            left = deadline - time.monotonic()
            if left <= 0 or self.stop.is_set():
                topic = f"state/{name}" if kind == "state" else "status"
                body = "" if m is None else f"\n  {short(m.body, 300)}"
                raise StepFailed(f"{topic} not as expected within {within:g} s: {why}{body}")
            seen = self.centre.wait_change(seen, min(left, 0.5))

    def _expect_sim(self, e: ExpectSpec, within: float) -> str:
        """What the simulator shows: an output, the site's own view, the modem's log."""
        deadline = time.monotonic() + within
        start = time.monotonic()
        while True:
            why, shown = self._sim_check(e)
            if why is None:
                return f"after {time.monotonic() - start:.2f} s"
            if time.monotonic() >= deadline or self.stop.is_set():
                more = f"\n  {shown}" if shown else ""
                raise StepFailed(f"not within {within:g} s: {why}{more}")
            self.stop.wait(POLL_S)

    def _sim_check(self, e: ExpectSpec) -> tuple[str | None, str]:
        if e.kind == "output":
            assert e.output is not None
            outputs = self.http("GET", "/state").get("outputs", {})
            for name, want in e.output.items():
                if name not in outputs:
                    raise StepFailed(f"no output {name!r}; outputs: {sorted(outputs)}")
                if outputs[name].get("on") is not want:
                    return f"{name} is {'on' if not want else 'off'}", ""
            return None, ""
        if e.kind == "site":
            site = self.http("GET", "/state").get("site", {})
            return mismatch(self.fill(e.site), site), short(site, 300)
        records = self._modem("sms" if e.kind == "sms" else "calls")
        want = self.fill(e.sms if e.kind == "sms" else e.call)
        if any(mismatch(want, r) is None for r in records):
            return None, ""
        return f"no {e.kind} like {short(want)} among {len(records)}", short(records[-3:], 300)
