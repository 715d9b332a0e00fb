"""A scenario run's report (:mod:`simulator.scenario_run`): one :class:`StepReport` a step
(its text from :func:`describe`), as text (the ``scenario run`` CLI's lines) and as a dict
(the console's JSON)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from simulator import scenario as sc
from simulator.scenario_match import short


@dataclass
class StepReport:
    number: int
    action: str
    text: str
    status: str = "skip"  # ok / FAIL / skip
    at_s: float = 0.0  # since the scenario started
    took_s: float = 0.0
    detail: str = ""
    note: str | None = None

    def line(self) -> str:
        if self.status == "skip":
            return f"  {self.number:>3}  skip  {'':>16}  {self.text}"
        out = f"  {self.number:>3}  {self.status:<4}  {self.at_s:7.2f}s {self.took_s:6.2f}s  "
        out += self.text
        if self.detail and self.status == "ok":
            out += f"  -> {self.detail}"
        if self.note:
            out += f"  # {self.note}"
        if self.detail and self.status != "ok":
            out += "\n" + "\n".join(f"{'':>8}{ln}" for ln in self.detail.splitlines())
        return out


@dataclass
class Report:
    name: str
    site: str
    source: str = ""
    config: str = ""
    steps: list[StepReport] = field(default_factory=list)
    error: str | None = None  # the scenario could not start
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.status == "ok" for s in self.steps)

    def header(self) -> str:
        lines = [f"scenario: {self.name}"]
        if self.source:
            lines.append(f"  file:   {self.source}")
        lines.append(f"  site:   {self.site}" + (f" ({self.config})" if self.config else ""))
        lines.append(f"  {'#':>3}  {'':<4}  {'at':>8} {'took':>7}  step")
        return "\n".join(lines)

    def footer(self) -> str:
        if self.error is not None:
            return f"ERROR: {self.error}"
        if self.ok:
            return f"PASSED: {len(self.steps)} steps in {self.duration_s:.1f} s"
        failed = next((s for s in self.steps if s.status == "FAIL"), None)
        if failed is None:
            return f"STOPPED after {self.duration_s:.1f} s"
        return (
            f"FAILED at step {failed.number} of {len(self.steps)} ({failed.text}) "
            f"after {self.duration_s:.1f} s"
        )

    def text(self) -> str:
        return "\n".join([self.header(), *(s.line() for s in self.steps), self.footer()])

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "site": self.site,
            "ok": self.ok,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "steps": [
                {
                    "number": s.number,
                    "action": s.action,
                    "text": s.text,
                    "status": s.status,
                    "at_s": round(s.at_s, 3),
                    "took_s": round(s.took_s, 3),
                    "detail": s.detail,
                }
                for s in self.steps
            ],
        }


def describe(step: Any, timeout_s: float) -> str:
    """A step as the report shows it (a typed code never: only its length)."""
    a = sc.action_of(step)
    if isinstance(step, sc.Press | sc.Release):
        return f"{a} {getattr(step, a)}"
    if isinstance(step, sc.Tap):
        t = step.tap
        return f"tap {t.input}" + (f" {t.times} times" if t.times > 1 else "")
    if isinstance(step, sc.Wait):
        return f"wait {step.wait:g} s"
    if isinstance(step, sc.Door):
        return f"door {step.door.locker} {'open' if step.door.open else 'shut'}"
    if isinstance(step, sc.Item):
        return f"item {step.item.locker} {'in' if step.item.present else 'out'}"
    if isinstance(step, sc.Jam):
        return f"{'jam' if step.jam.jammed else 'unjam'} locker {step.jam.locker}"
    if isinstance(step, sc.Board):
        return f"board {step.board.bus}/{step.board.board} {step.board.mode}"
    if isinstance(step, sc.Code):
        return f"type a code ({len(step.code)} characters)"  # never the code itself
    if isinstance(step, sc.Modem):
        return "modem " + " ".join(
            f"{k}={v}" for k, v in step.modem.model_dump(exclude_none=True).items()
        )
    if isinstance(step, sc.CutLink):
        return f"cut the broker link for {step.cut_link.for_s:g} s"
    if isinstance(step, sc.AdvanceClock):
        return f"advance the site clock by {step.advance_clock.total_s / 3600:g} h"
    if isinstance(step, sc.Send):
        s = step.send
        want = "" if s.result == "ok" else f" (result {s.result})"
        return f"send {s.command} {short(s.args, 80)}{want}"
    if isinstance(step, sc.Expect):
        return "expect " + expect_text(step.expect, timeout_s)
    if isinstance(step, sc.ExpectNone):
        e = step.expect_none
        if e.kind != "event":
            what = getattr(e, e.kind)
            return f"expect no {e.kind} {short(what, 80) if what else ''}for {e.for_s:g} s"
        data = f" {short(e.data, 80)}" if e.data else ""
        return f"expect no event {e.event}{data} for {e.for_s:g} s"
    return a


def expect_text(e: sc.ExpectSpec, timeout_s: float) -> str:
    within = f" within {e.within_s if e.within_s is not None else timeout_s:g} s"
    if e.kind == "event":
        dev = f" from {e.device}" if e.device else ""
        data = f" {short(e.data, 80)}" if e.data else ""
        return f"event {e.event}{dev}{data}{within}"
    if e.kind == "state":
        return f"state {e.state} {short(e.match, 80)}{within}"
    if e.kind == "output":
        assert e.output is not None
        shown = " ".join(f"{k} {'on' if v else 'off'}" for k, v in e.output.items())
        return f"output {shown}{within}"
    return f"{e.kind} {short(getattr(e, e.kind), 80)}{within}"
