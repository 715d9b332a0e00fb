"""Alarm escalation over the modem: plain code, no threads, no I/O.

When an alarm is not acknowledged within ``escalate_after_s`` (or at once when the broker
link is down at the press), text every configured number and, if configured, call one
number, retrying the call on busy / no answer / drop up to ``call_attempts`` times. An
acknowledgement (or a clear) stops further attempts. Test-mode alarms never escalate.
Every attempt and every outcome is an ``alarm.escalated`` event.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from edge.alarm import Emit
from edge.config import EscalationConfig

KST = timezone(timedelta(hours=9))
RETRY_CALL_OUTCOMES = {"busy", "no_answer", "no_carrier", "no_dialtone", "error", "timeout"}
UCS2_LIMIT = 70
GSM_LIMIT = 160


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
class Wake:
    """Call ``due`` after ``delay_s``."""

    delay_s: float


Effect = SendSms | PlaceCall | Hangup | Wake | Emit


def compose_sms(site_id: str, address: str, alarm_id: str, at: datetime) -> str:
    """Site id, address, alarm id and time (KST), fitted into one SMS."""
    when = at.astimezone(KST).strftime("%m-%d %H:%M:%S")
    head = "[안심] 비상벨"  # "[ansim] emergency bell"
    tail = f"{site_id} #{alarm_id[:8]} {when}"
    text = f"{head} {address} {tail}" if address else f"{head} {tail}"
    limit = GSM_LIMIT if text.isascii() else UCS2_LIMIT
    if len(text) > limit and address:
        room = limit - len(f"{head}  {tail}") - 1
        text = f"{head} {address[: max(0, room)]}… {tail}" if room > 0 else f"{head} {tail}"
    return text[:limit]


@dataclass
class _Run:
    alarm_id: str
    started: bool = False
    stopped: bool = False
    call_attempt: int = 0
    call_in_progress: str | None = None
    pending: dict[str, tuple[str, str, int]] = field(default_factory=dict)


class Escalation:
    def __init__(self, cfg: EscalationConfig, has_modem: bool) -> None:
        self.cfg = cfg
        self.enabled = has_modem and bool(cfg.sms_numbers or cfg.call_number)
        self.run: _Run | None = None
        self._ids = itertools.count(1)
        self.text = ""

    @property
    def started(self) -> bool:
        return self.run is not None and self.run.started

    def raised(
        self, alarm_id: str, test: bool, link_up: bool, text: str, already_started: bool = False
    ) -> list[Effect]:
        """An alarm was raised (or restored after a restart)."""
        if not self.enabled or test:
            self.run = None
            return []
        self.run = _Run(alarm_id, started=already_started)
        self.text = text
        if already_started:
            return []  # restored after a restart: never text or call twice
        if not link_up:
            return self._start()
        return [Wake(self.cfg.escalate_after_s)]

    def due(self, alarm_id: str) -> list[Effect]:
        """The escalation timer fired (or a call retry is due)."""
        r = self.run
        if r is None or r.alarm_id != alarm_id or r.stopped:
            return []
        if not r.started:
            return self._start()
        return self._call()

    def link_lost(self) -> list[Effect]:
        """The broker link went down while an alarm waits for its acknowledgement."""
        r = self.run
        if r is None or r.started or r.stopped:
            return []
        return self._start()

    def stop(self, alarm_id: str) -> list[Effect]:
        """Acknowledged or cleared: no further attempts; hang up a call in progress."""
        r = self.run
        if r is None or r.alarm_id != alarm_id or r.stopped:
            return []
        r.stopped = True
        return [Hangup()] if r.call_in_progress else []

    def sms_result(self, request_id: str, ok: bool, detail: str) -> list[Effect]:
        r = self.run
        if r is None or request_id not in r.pending:
            return []
        channel, number, attempt = r.pending.pop(request_id)
        return [self._event(channel, number, attempt, "sent" if ok else "failed", detail)]

    def call_result(self, request_id: str, outcome: str, detail: str) -> list[Effect]:
        r = self.run
        if r is None or request_id not in r.pending:
            return []
        channel, number, attempt = r.pending.pop(request_id)
        r.call_in_progress = None
        out: list[Effect] = [self._event(channel, number, attempt, outcome, detail)]
        if (
            outcome in RETRY_CALL_OUTCOMES
            and not r.stopped
            and r.call_attempt < self.cfg.call_attempts
        ):
            out.append(Wake(self.cfg.call_retry_delay_s))
        return out

    # ---- internals ----
    def _start(self) -> list[Effect]:
        r = self.run
        assert r is not None
        r.started = True
        out: list[Effect] = []
        for number in self.cfg.sms_numbers:
            rid = f"sms-{next(self._ids)}"
            r.pending[rid] = ("sms", number, 1)
            out += [self._event("sms", number, 1, "attempt", ""), SendSms(rid, number, self.text)]
        return out + self._call()

    def _call(self) -> list[Effect]:
        r = self.run
        assert r is not None
        number = self.cfg.call_number
        if (
            number is None
            or r.stopped
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
            "alarm.escalated",
            {
                "alarm_id": self.run.alarm_id,
                "channel": channel,
                "number": number,
                "attempt": attempt,
                "outcome": outcome,
                "detail": detail,
            },
            alarm=True,
        )
