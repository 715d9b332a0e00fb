"""Alarm escalation over the modem: plain code, no threads, no I/O.

When an alarm is not acknowledged within ``escalate_after_s`` (or at once when the broker
link is down at the press), text every configured number and, if configured, call one
number, retrying the call on busy / no answer / drop up to ``call_attempts`` times. An
acknowledgement (or a clear) stops further attempts. Test-mode alarms never escalate.
Every attempt and every outcome is an ``alarm.escalated`` event.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from edge.devices.modem.config import EscalationConfig
from edge.devices.modem.events import AlarmEscalated
from edge.models import Emit

KST = timezone(timedelta(hours=9))
RETRY_CALL_OUTCOMES = {"busy", "no_answer", "no_carrier", "no_dialtone", "error", "timeout"}
UCS2_LIMIT = 70
GSM_LIMIT = 160
RETRY_NOT_MADE = "retry not made"  # detail of a waiting retry cancelled by ack / clear


# Effects the controller carries out.
@dataclass(frozen=True)
class SendSms:
    request_id: str
    number: str
    text: str


@dataclass(frozen=True)
class PlaceCall:
    request_id: str
    number: str
    ring_timeout_s: float
    talk_s: float


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Cancel:
    request_id: str


@dataclass(frozen=True)
class Wake:
    """Call ``due`` after ``delay_s``."""

    delay_s: float


Effect = SendSms | PlaceCall | Hangup | Cancel | Wake | Emit


def compose_sms(site_id: str, address: str, alarm_id: str, at: datetime) -> str:
    """Site id, address, alarm id and time (KST), fitted into one SMS. The alarm id and
    the time are always kept; the address, then the site id, are shortened to fit."""
    when = at.astimezone(KST).strftime("%m-%d %H:%M:%S")
    head = "[안심] 비상벨"  # "[ansim] emergency bell"
    tail = f"#{alarm_id[:8]} {when}"

    def build(site: str, addr: str) -> str:
        return " ".join(p for p in (head, addr, site, tail) if p)

    text = build(site_id, address)
    limit = GSM_LIMIT if text.isascii() else UCS2_LIMIT
    if len(text) <= limit:
        return text
    without_address = build(site_id, "")
    room = limit - len(without_address)
    if room > 2 and address:
        return build(site_id, address[: room - 2] + "…")
    if len(without_address) <= limit:
        return without_address  # the whole site id fits once the address is dropped
    room = limit - len(build("", ""))
    return build(site_id[: max(1, room - 2)] + "…", "")


@dataclass
class _Run:
    alarm_id: str
    raised_at: float  # wall clock, epoch seconds
    text: str
    started: bool = False
    stopped: bool = False
    call_attempt: int = 0
    call_answered: bool = False
    sms_attempts: dict[str, int] = field(default_factory=dict)
    sms_done: list[str] = field(default_factory=list)
    # Volatile: what is in flight or waiting for the next wake.
    pending: dict[str, tuple[str, str, int]] = field(default_factory=dict)
    call_in_progress: str | None = None
    sms_retry: list[str] = field(default_factory=list)
    call_retry: bool = False
    expect_wake: bool = False

    PERSISTED = (
        "alarm_id",
        "raised_at",
        "text",
        "started",
        "stopped",
        "call_attempt",
        "call_answered",
        "sms_attempts",
        "sms_done",
    )

    def dump(self) -> str:
        return json.dumps({k: getattr(self, k) for k in self.PERSISTED}, sort_keys=True)


class Escalation:
    def __init__(self, cfg: EscalationConfig, has_modem: bool) -> None:
        self.cfg = cfg
        self.enabled = has_modem and bool(cfg.sms_numbers or cfg.call_number)
        self.run: _Run | None = None
        self._ids = itertools.count(1)

    @property
    def started(self) -> bool:
        return self.run is not None and self.run.started

    # ---- inputs ----
    def raised(
        self, alarm_id: str, test: bool, link_up: bool, text: str, now: float
    ) -> list[Effect]:
        """A new alarm. ``now``: wall clock, epoch seconds."""
        if not self.enabled or test:
            self.run = None
            return []
        self.run = _Run(alarm_id, now, text)
        if not link_up:
            return self._start()
        return self._wake(self.cfg.escalate_after_s)

    def restore(self, alarm_id: str, saved: str | None, text: str, now: float) -> list[Effect]:
        """After a restart, an unacknowledged alarm: go on where escalation stood."""
        if not self.enabled:
            return []
        run: _Run | None = None
        if saved:
            data = json.loads(saved)
            if data.get("alarm_id") == alarm_id:
                run = _Run(**{k: data[k] for k in _Run.PERSISTED if k in data})
        if run is None:  # nothing recorded: count the wait from now
            run = _Run(alarm_id, now, text)
        self.run = run
        if run.stopped:
            return []
        if not run.started:
            return self._wake(max(0.0, run.raised_at + self.cfg.escalate_after_s - now))
        # Started before the restart: finish what had not succeeded, never repeat a success.
        out: list[Effect] = []
        for number in self.cfg.sms_numbers:
            if (
                number not in run.sms_done
                and run.sms_attempts.get(number, 0) < self.cfg.call_attempts
            ):
                out += self._sms(number)
        if not run.call_answered:
            out += self._call()
        return out

    def due(self, alarm_id: str) -> list[Effect]:
        """The timer asked for by the last Wake fired."""
        r = self.run
        if r is None or r.alarm_id != alarm_id or r.stopped or not r.expect_wake:
            return []
        r.expect_wake = False
        if not r.started:
            return self._start()
        return self._retry()

    def link_lost(self) -> list[Effect]:
        """The broker link went down while an alarm waits for its acknowledgement."""
        r = self.run
        if r is None or r.started or r.stopped:
            return []
        r.expect_wake = False  # the escalate_after_s timer is now moot
        return self._start()

    def modem_recovered(self) -> list[Effect]:
        """Retry at once what failed while the modem was down."""
        r = self.run
        if r is None or r.stopped or not r.started:
            return []
        r.expect_wake = False
        return self._retry()

    def stop(self, alarm_id: str) -> list[Effect]:
        """Acknowledged or cleared: cancel what is queued, hang up a call in progress, and
        report every retry that was waiting for its delay as ``cancelled`` (it was never
        issued, so no driver result will report it)."""
        r = self.run
        if r is None or r.alarm_id != alarm_id or r.stopped:
            return []
        r.stopped = True
        r.expect_wake = False
        out: list[Effect] = [Cancel(rid) for rid in r.pending]
        if r.call_in_progress:
            out.append(Hangup())
        retry, r.sms_retry = r.sms_retry, []
        for number in retry:
            attempt = r.sms_attempts.get(number, 0) + 1
            out.append(self._event("sms", number, attempt, "cancelled", RETRY_NOT_MADE))
        if r.call_retry and self.cfg.call_number is not None:
            r.call_retry = False
            out.append(
                self._event(
                    "call", self.cfg.call_number, r.call_attempt + 1, "cancelled", RETRY_NOT_MADE
                )
            )
        return out

    def sms_result(self, request_id: str, ok: bool, detail: str) -> list[Effect]:
        r = self.run
        if r is None or request_id not in r.pending:
            return []
        _, number, attempt = r.pending.pop(request_id)
        if ok:
            r.sms_done.append(number)
            return [self._event("sms", number, attempt, "sent", detail)]
        outcome = "cancelled" if detail == "cancelled" else "failed"
        out: list[Effect] = [self._event("sms", number, attempt, outcome, detail)]
        if not r.stopped and attempt < self.cfg.call_attempts:
            r.sms_retry.append(number)
            out += self._wake(self.cfg.call_retry_delay_s)
        return out

    def call_result(self, request_id: str, outcome: str, detail: str) -> list[Effect]:
        r = self.run
        if r is None or request_id not in r.pending:
            return []
        _, number, attempt = r.pending.pop(request_id)
        r.call_in_progress = None
        if detail == "cancelled":
            outcome = "cancelled"
        out: list[Effect] = [self._event("call", number, attempt, outcome, detail)]
        if outcome == "answered":
            r.call_answered = True
        elif (
            outcome in RETRY_CALL_OUTCOMES
            and not r.stopped
            and r.call_attempt < self.cfg.call_attempts
        ):
            r.call_retry = True
            out += self._wake(self.cfg.call_retry_delay_s)
        return out

    def dump(self) -> str | None:
        return self.run.dump() if self.run is not None else None

    # ---- internals ----
    def _wake(self, delay_s: float) -> list[Effect]:
        assert self.run is not None
        self.run.expect_wake = True
        return [Wake(delay_s)]

    def _start(self) -> list[Effect]:
        r = self.run
        assert r is not None
        r.started = True
        out: list[Effect] = []
        for number in self.cfg.sms_numbers:
            out += self._sms(number)
        return out + self._call()

    def _retry(self) -> list[Effect]:
        r = self.run
        assert r is not None
        out: list[Effect] = []
        retry, r.sms_retry = r.sms_retry, []
        for number in retry:
            out += self._sms(number)
        if r.call_retry:
            r.call_retry = False
            out += self._call()
        return out

    def _sms(self, number: str) -> list[Effect]:
        r = self.run
        assert r is not None
        attempt = r.sms_attempts.get(number, 0) + 1
        r.sms_attempts[number] = attempt
        rid = f"sms-{next(self._ids)}"
        r.pending[rid] = ("sms", number, attempt)
        return [self._event("sms", number, attempt, "attempt", ""), SendSms(rid, number, r.text)]

    def _call(self) -> list[Effect]:
        r = self.run
        assert r is not None
        number = self.cfg.call_number
        if (
            number is None
            or r.stopped
            or r.call_answered
            or r.call_in_progress
            or r.call_attempt >= self.cfg.call_attempts
        ):
            return []
        r.call_attempt += 1
        rid = f"call-{next(self._ids)}"
        r.pending[rid] = ("call", number, r.call_attempt)
        r.call_in_progress = rid
        return [
            self._event("call", number, r.call_attempt, "attempt", ""),
            PlaceCall(rid, number, self.cfg.ring_timeout_s, self.cfg.talk_s),
        ]

    def _event(self, channel: str, number: str, attempt: int, outcome: str, detail: str) -> Emit:
        assert self.run is not None
        return Emit(
            "modem",
            AlarmEscalated(
                alarm_id=self.run.alarm_id,
                channel=channel,
                number=number,
                attempt=attempt,
                outcome=outcome,
                detail=detail,
            ),
            alarm=True,
        )
