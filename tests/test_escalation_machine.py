"""Alarm escalation over the modem (edge.machines.escalation.Escalation) and its SMS text
(compose_sms): plain logic, no modem, no clock, no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.devices.modem.config import EscalationConfig
from edge.devices.modem.events import AlarmEscalated
from edge.machines.escalation import (
    GSM_LIMIT,
    RETRY_CALL_OUTCOMES,
    UCS2_LIMIT,
    Cancel,
    Effect,
    Escalation,
    Hangup,
    PlaceCall,
    SendSms,
    Wake,
    compose_sms,
)
from edge.models import Emit

A = "+821011112222"
B = "+821033334444"
POLICE = "112"
ALARM = "5f2bbbce-ea60-4b59-884b-be82cbdb5d50"
TEXT = "[안심] 비상벨 shelter-0001 #5f2bbbce 01-01 09:00:00"
KST = timezone(timedelta(hours=9))  # Korea has no daylight saving time
T0 = 1_780_000_000.0  # wall clock (epoch seconds) of the press


def config(**kw: Any) -> EscalationConfig:
    base: dict[str, Any] = {
        "escalate_after_s": 15,
        "sms_numbers": [A, B],
        "call_number": POLICE,
        "call_attempts": 3,
        "call_retry_delay_s": 10,
        "ring_timeout_s": 30,
        "talk_s": 60,
    }
    return EscalationConfig(**{**base, **kw})


def machine(**kw: Any) -> Escalation:
    return Escalation(config(**kw), has_modem=True)


# ---- looking at effects ----


def sms(effects: list[Effect]) -> list[SendSms]:
    return [e for e in effects if isinstance(e, SendSms)]


def calls(effects: list[Effect]) -> list[PlaceCall]:
    return [e for e in effects if isinstance(e, PlaceCall)]


def wakes(effects: list[Effect]) -> list[Wake]:
    return [e for e in effects if isinstance(e, Wake)]


def events(effects: list[Effect]) -> list[dict[str, Any]]:
    out = []
    for e in effects:
        if isinstance(e, Emit):
            assert (e.device, e.type, e.alarm) == ("modem", "alarm.escalated", True)
            AlarmEscalated.model_validate(e.data)  # the payload contract
            out.append(e.data)
    return out


def outcomes(effects: list[Effect]) -> list[tuple[str, str, int, str]]:
    return [(d["channel"], d["number"], d["attempt"], d["outcome"]) for d in events(effects)]


def started(esc: Escalation) -> list[Effect]:
    """An alarm raised while the broker link is down: escalation starts at once."""
    return esc.raised(ALARM, False, False, TEXT, T0)


def the_call(effects: list[Effect]) -> PlaceCall:
    [c] = calls(effects)
    return c


def sms_to(effects: list[Effect], number: str) -> SendSms:
    [s] = [s for s in sms(effects) if s.number == number]
    return s


# --------------------------------------------------------------------------- start


def test_raised_with_the_link_up_waits_escalate_after_s() -> None:
    esc = machine()
    assert esc.raised(ALARM, False, True, TEXT, T0) == [Wake(15)]
    assert not esc.started


def test_raised_with_the_link_down_texts_every_number_and_calls_at_once() -> None:
    esc = machine()
    out = started(esc)
    assert esc.started
    assert [(s.number, s.text) for s in sms(out)] == [(A, TEXT), (B, TEXT)]
    call = the_call(out)
    assert (call.number, call.ring_timeout_s, call.talk_s) == (POLICE, 30, 60)
    assert wakes(out) == []
    assert outcomes(out) == [
        ("sms", A, 1, "attempt"),
        ("sms", B, 1, "attempt"),
        ("call", POLICE, 1, "attempt"),
    ]
    assert {d["alarm_id"] for d in events(out)} == {ALARM}
    ids = [s.request_id for s in sms(out)] + [call.request_id]
    assert len(set(ids)) == 3  # every request has its own id


def test_the_requested_wake_starts_the_escalation() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    out = esc.due(ALARM)
    assert [s.number for s in sms(out)] == [A, B]
    assert the_call(out).number == POLICE


def test_due_acts_only_on_a_wake_it_asked_for() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    assert esc.due("another-alarm") == []
    assert len(calls(esc.due(ALARM))) == 1
    assert esc.due(ALARM) == []  # a second (stale) timer: nothing
    esc2 = machine()
    started(esc2)
    assert esc2.due(ALARM) == []  # started without any wake


def test_link_lost_while_waiting_starts_now_and_disarms_the_timer() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    out = esc.link_lost()
    call = the_call(out)
    assert len(sms(out)) == 2
    # The police answer; then the original escalate_after_s timer fires.
    esc.call_result(call.request_id, "answered", "completed")
    assert esc.due(ALARM) == []


def test_link_lost_after_the_start_or_without_an_alarm_does_nothing() -> None:
    assert machine().link_lost() == []
    esc = machine()
    started(esc)
    assert esc.link_lost() == []
    esc.stop(ALARM)
    assert esc.link_lost() == []


def test_link_lost_after_the_ack_does_nothing() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    assert esc.stop(ALARM) == []  # nothing issued yet: nothing to cancel
    assert esc.link_lost() == []
    assert esc.due(ALARM) == []


# --------------------------------------------------------------------------- stop


def test_stop_cancels_every_queued_request_and_hangs_up_the_call() -> None:
    esc = machine()
    out = started(esc)
    rids = {s.request_id for s in sms(out)} | {c.request_id for c in calls(out)}
    stop = esc.stop(ALARM)
    assert {c.request_id for c in stop if isinstance(c, Cancel)} == rids
    assert stop[-1] == Hangup()
    assert [e for e in stop if not isinstance(e, Cancel | Hangup)] == []
    # The driver answers the cancelled requests: reported, never retried.
    res = esc.sms_result(sms_to(out, A).request_id, False, "cancelled")
    res += esc.call_result(the_call(out).request_id, "error", "cancelled")
    assert outcomes(res) == [("sms", A, 1, "cancelled"), ("call", POLICE, 1, "cancelled")]
    assert wakes(res) == [] and esc.due(ALARM) == []


def test_stop_after_the_sms_went_out_cancels_only_the_call() -> None:
    esc = machine(sms_numbers=[A])
    out = started(esc)
    esc.sms_result(sms_to(out, A).request_id, True, "17")
    assert esc.stop(ALARM) == [Cancel(the_call(out).request_id), Hangup()]


def test_stop_without_a_call_does_not_hang_up() -> None:
    esc = machine(call_number=None)
    out = started(esc)
    assert esc.stop(ALARM) == [Cancel(s.request_id) for s in sms(out)]
    esc = machine(sms_numbers=[])
    out = started(esc)
    esc.call_result(the_call(out).request_id, "answered", "completed")
    assert esc.stop(ALARM) == []


def test_stop_of_another_alarm_or_twice_does_nothing() -> None:
    esc = machine()
    started(esc)
    assert esc.stop("another-alarm") == []
    assert esc.stop(ALARM) != []
    assert esc.stop(ALARM) == []


def test_busy_retry_pending_at_the_ack_is_dropped() -> None:
    esc = machine()
    out = started(esc)
    res = esc.call_result(the_call(out).request_id, "busy", "BUSY")
    assert wakes(res) == [Wake(10)]
    stop = esc.stop(ALARM)
    assert Hangup() not in stop  # no call in progress
    assert esc.due(ALARM) == []


def test_a_call_retry_waiting_at_the_ack_is_reported_cancelled() -> None:
    # The retry was never placed: no Cancel for the driver, no "attempt", only its end.
    esc = machine(sms_numbers=[])
    out = started(esc)
    esc.call_result(the_call(out).request_id, "busy", "BUSY")
    stop = esc.stop(ALARM)
    assert outcomes(stop) == [("call", POLICE, 2, "cancelled")]
    assert [e for e in stop if not isinstance(e, Emit)] == []
    assert events(stop)[0]["detail"] == "retry not made"
    assert esc.due(ALARM) == [] and esc.stop(ALARM) == []  # once


def test_an_sms_retry_waiting_at_the_ack_is_reported_cancelled() -> None:
    esc = machine(call_number=None)
    out = started(esc)
    esc.sms_result(sms_to(out, A).request_id, False, "+CMS ERROR: 500")
    queued = sms_to(out, B).request_id  # still with the modem: the driver reports it
    stop = esc.stop(ALARM)
    assert stop[0] == Cancel(queued)
    assert outcomes(stop) == [("sms", A, 2, "cancelled")]
    assert outcomes(esc.sms_result(queued, False, "cancelled")) == [("sms", B, 1, "cancelled")]
    assert esc.due(ALARM) == []


def test_no_retry_is_reported_when_none_was_left() -> None:
    esc = machine(sms_numbers=[A], call_attempts=1)
    out = started(esc)
    esc.sms_result(sms_to(out, A).request_id, False, "+CMS ERROR: 500")
    esc.call_result(the_call(out).request_id, "busy", "BUSY")
    assert esc.stop(ALARM) == []  # the attempts were used up: nothing was going to happen


# --------------------------------------------------------------------------- calls


@pytest.mark.parametrize("outcome", sorted(RETRY_CALL_OUTCOMES))
def test_a_failed_call_is_retried_up_to_call_attempts(outcome: str) -> None:
    esc = machine(sms_numbers=[], call_attempts=3, call_retry_delay_s=7)
    out = started(esc)
    attempts = []
    for n in (1, 2, 3):
        call = the_call(out)
        attempts.append(outcomes(out)[-1])
        res = esc.call_result(call.request_id, outcome, outcome.upper())
        assert outcomes(res) == [("call", POLICE, n, outcome)]
        if n < 3:
            assert wakes(res) == [Wake(7)]
            out = esc.due(ALARM)
        else:
            assert wakes(res) == []
    assert attempts == [("call", POLICE, n, "attempt") for n in (1, 2, 3)]
    assert esc.due(ALARM) == []
    assert esc.modem_recovered() == []


def test_an_answered_call_ends_the_calls() -> None:
    esc = machine()
    out = started(esc)
    res = esc.call_result(the_call(out).request_id, "answered", "completed")
    assert outcomes(res) == [("call", POLICE, 1, "answered")]
    assert wakes(res) == []
    assert calls(esc.due(ALARM)) == []
    assert calls(esc.modem_recovered()) == []


def test_an_unknown_or_repeated_result_is_ignored() -> None:
    esc = machine()
    out = started(esc)
    assert esc.call_result("call-999", "busy", "BUSY") == []
    assert esc.sms_result("sms-999", False, "ERROR") == []
    rid = the_call(out).request_id
    esc.call_result(rid, "busy", "BUSY")
    assert esc.call_result(rid, "busy", "BUSY") == []  # reported once only


def test_results_of_a_previous_alarm_do_not_touch_the_new_one() -> None:
    esc = machine()
    old = started(esc)
    esc.stop(ALARM)
    assert esc.raised("second-alarm", False, True, TEXT, T0 + 60) == [Wake(15)]
    assert esc.call_result(the_call(old).request_id, "busy", "BUSY") == []
    out = esc.due("second-alarm")
    assert the_call(out).number == POLICE
    assert {d["alarm_id"] for d in events(out)} == {"second-alarm"}


# --------------------------------------------------------------------------- SMS


def test_a_failed_sms_is_retried_after_the_delay_up_to_call_attempts() -> None:
    esc = machine(call_number=None, call_attempts=3, call_retry_delay_s=7)
    out = started(esc)
    esc.sms_result(sms_to(out, B).request_id, True, "12")  # B got it: never texted again
    for n in (1, 2, 3):
        res = esc.sms_result(sms_to(out, A).request_id, False, "+CMS ERROR: 500")
        assert outcomes(res) == [("sms", A, n, "failed")]
        if n == 3:
            assert wakes(res) == []
            break
        assert wakes(res) == [Wake(7)]
        out = esc.due(ALARM)
        assert [s.number for s in sms(out)] == [A]
        assert outcomes(out) == [("sms", A, n + 1, "attempt")]
    assert esc.due(ALARM) == [] and esc.modem_recovered() == []


def test_modem_recovered_retries_at_once() -> None:
    esc = machine(sms_numbers=[A])
    out = started(esc)
    res = esc.sms_result(sms_to(out, A).request_id, False, "modem down: no reply")
    res += esc.call_result(the_call(out).request_id, "error", "modem down: no reply")
    assert wakes(res) == [Wake(10), Wake(10)]
    again = esc.modem_recovered()
    assert outcomes(again) == [("sms", A, 2, "attempt"), ("call", POLICE, 2, "attempt")]
    assert esc.due(ALARM) == []  # the retry timer is moot now
    assert esc.modem_recovered() == []  # nothing left to retry


def test_modem_recovered_before_the_start_or_after_the_stop_does_nothing() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    assert esc.modem_recovered() == []
    assert len(calls(esc.due(ALARM))) == 1  # the grace timer still counts
    esc2 = machine()
    out = started(esc2)
    esc2.sms_result(sms_to(out, A).request_id, False, "modem down")
    esc2.stop(ALARM)
    assert esc2.modem_recovered() == []


def test_a_failed_sms_after_the_stop_is_not_retried() -> None:
    esc = machine()
    out = started(esc)
    esc.stop(ALARM)
    res = esc.sms_result(sms_to(out, A).request_id, False, "+CMS ERROR: 500")
    assert outcomes(res) == [("sms", A, 1, "failed")]
    assert wakes(res) == []


# --------------------------------------------------------------------------- restart


def restored(
    saved: str | None, now: float, alarm_id: str = ALARM, **kw: Any
) -> tuple[Escalation, list[Effect]]:
    esc = machine(**kw)
    return esc, esc.restore(alarm_id, saved, TEXT, now)


def test_restore_in_the_grace_period_waits_only_the_remaining_time() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    esc2, out = restored(esc.dump(), T0 + 6)
    assert out == [Wake(9)]
    assert len(calls(esc2.due(ALARM))) == 1


def test_restore_after_the_grace_period_escalates_on_the_first_wake() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    esc2, out = restored(esc.dump(), T0 + 600)
    assert out == [Wake(0)]
    assert len(sms(esc2.due(ALARM))) == 2


@pytest.mark.parametrize("saved", [None, "", "other"])
def test_restore_without_a_record_of_this_alarm_waits_the_full_time(saved: str | None) -> None:
    if saved == "other":
        other = machine()
        other.raised("other-alarm", False, True, TEXT, T0 - 3600)
        saved = other.dump()
    esc, out = restored(saved, T0 + 60)
    assert out == [Wake(15)]
    assert esc.run is not None and esc.run.raised_at == T0 + 60


def test_restore_resumes_only_what_had_not_succeeded() -> None:
    esc = machine()
    out = started(esc)
    esc.sms_result(sms_to(out, A).request_id, True, "3")  # A: sent
    esc.call_result(the_call(out).request_id, "busy", "BUSY")  # call 1 busy, retry due
    # B's SMS is still in flight when the power goes.
    esc2, out2 = restored(esc.dump(), T0 + 20)
    assert outcomes(out2) == [("sms", B, 2, "attempt"), ("call", POLICE, 2, "attempt")]
    assert sms_to(out2, B).text == TEXT
    assert wakes(out2) == []
    # The resumed call is busy too: one more attempt, then the limit.
    res = esc2.call_result(the_call(out2).request_id, "busy", "BUSY")
    assert wakes(res) == [Wake(10)]
    assert outcomes(esc2.due(ALARM)) == [("call", POLICE, 3, "attempt")]


def test_restore_after_everything_succeeded_does_nothing() -> None:
    esc = machine()
    out = started(esc)
    for s in sms(out):
        esc.sms_result(s.request_id, True, "1")
    esc.call_result(the_call(out).request_id, "answered", "completed")
    esc2, out2 = restored(esc.dump(), T0 + 20)
    assert out2 == []
    assert esc2.started
    assert esc2.due(ALARM) == [] and esc2.link_lost() == []


def test_restore_does_not_exceed_the_attempt_limits() -> None:
    esc = machine(sms_numbers=[A], call_attempts=2)
    out = started(esc)
    esc.sms_result(sms_to(out, A).request_id, False, "ERROR")
    esc.call_result(the_call(out).request_id, "busy", "BUSY")
    out = esc.due(ALARM)
    esc.sms_result(sms_to(out, A).request_id, False, "ERROR")
    esc.call_result(the_call(out).request_id, "no_answer", "")
    _, out2 = restored(esc.dump(), T0 + 60, sms_numbers=[A], call_attempts=2)
    assert out2 == []


def test_restore_of_a_stopped_escalation_stays_stopped() -> None:
    esc = machine()
    out = started(esc)
    esc.call_result(the_call(out).request_id, "busy", "BUSY")
    esc.stop(ALARM)
    esc2, out2 = restored(esc.dump(), T0 + 30)
    assert out2 == []
    assert esc2.due(ALARM) == [] and esc2.modem_recovered() == [] and esc2.link_lost() == []
    # stopped during the grace period
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    esc.stop(ALARM)
    esc3, out3 = restored(esc.dump(), T0 + 30)
    assert out3 == [] and esc3.due(ALARM) == []


def test_dump_and_restore_round_trip() -> None:
    esc = machine()
    assert esc.dump() is None
    out = started(esc)
    esc.sms_result(sms_to(out, A).request_id, True, "3")
    esc.sms_result(sms_to(out, B).request_id, False, "ERROR")
    esc.call_result(the_call(out).request_id, "no_answer", "")
    saved = esc.dump()
    assert saved is not None
    data = json.loads(saved)
    assert data == {
        "alarm_id": ALARM,
        "raised_at": T0,
        "text": TEXT,
        "started": True,
        "stopped": False,
        "call_attempt": 1,
        "call_answered": False,
        "sms_attempts": {A: 1, B: 1},
        "sms_done": [A],
    }
    esc2 = machine()
    esc2.restore(ALARM, saved, "a new text is not used", T0 + 5)
    after = json.loads(esc2.dump() or "")
    # Restoring issued B's second SMS and the second call; nothing else changed.
    assert after == {**data, "call_attempt": 2, "sms_attempts": {A: 1, B: 2}}


# --------------------------------------------------------------------------- never


def test_a_test_alarm_never_escalates() -> None:
    esc = machine()
    assert esc.raised(ALARM, True, False, TEXT, T0) == []
    assert esc.raised(ALARM, True, True, TEXT, T0) == []
    assert esc.due(ALARM) == [] and esc.link_lost() == [] and esc.modem_recovered() == []
    assert esc.dump() is None


def test_a_test_alarm_ends_a_previous_escalation_run() -> None:
    esc = machine()
    esc.raised(ALARM, False, True, TEXT, T0)
    esc.stop(ALARM)
    assert esc.raised("walk-test", True, False, TEXT, T0 + 60) == []
    assert esc.link_lost() == [] and esc.due("walk-test") == []


@pytest.mark.parametrize(
    ("has_modem", "kw"),
    [(False, {}), (True, {"sms_numbers": [], "call_number": None})],
    ids=["no-modem", "no-numbers"],
)
def test_disabled_escalation_does_nothing(has_modem: bool, kw: dict[str, Any]) -> None:
    esc = Escalation(config(**kw), has_modem=has_modem)
    assert not esc.enabled
    assert esc.raised(ALARM, False, False, TEXT, T0) == []
    assert esc.restore(ALARM, None, TEXT, T0) == []
    assert esc.due(ALARM) == [] and esc.link_lost() == []


# --------------------------------------------------------------------------- the SMS text

AT = datetime(2026, 3, 4, 15, 6, 7, tzinfo=UTC)  # 2026-03-05 00:06:07 KST


def fits(text: str) -> bool:
    return len(text) <= (GSM_LIMIT if text.isascii() else UCS2_LIMIT)


def test_sms_text_has_site_alarm_and_korean_time() -> None:
    text = compose_sms("shelter-0001", "서울특별시 중구 세종대로 110", ALARM, AT)
    tail = f"shelter-0001 #{ALARM[:8]} 03-05 00:06:07"
    assert text == f"[안심] 비상벨 서울특별시 중구 세종대로 110 {tail}"
    assert fits(text)


def test_sms_text_without_an_address() -> None:
    assert compose_sms("s1", "", ALARM, AT) == f"[안심] 비상벨 s1 #{ALARM[:8]} 03-05 00:06:07"


def test_a_long_address_is_shortened_never_the_essentials() -> None:
    text = compose_sms("shelter-0001", "서울특별시 " * 30, ALARM, AT)
    assert len(text) == UCS2_LIMIT
    assert "…" in text
    assert text.endswith(f"shelter-0001 #{ALARM[:8]} 03-05 00:06:07")


@settings(max_examples=150, deadline=None)
@given(
    site=st.from_regex(r"[a-z0-9-]{1,36}", fullmatch=True),
    address=st.text(
        st.characters(codec="utf-8", categories=["L", "N", "Zs", "P"], exclude_characters="…"),
        max_size=200,
    ),
    alarm=st.uuids().map(str),
    at=st.datetimes(
        min_value=datetime(2020, 1, 1), max_value=datetime(2040, 1, 1), timezones=st.just(UTC)
    ),
)
def test_sms_text_always_fits_and_keeps_site_alarm_and_time(
    site: str, address: str, alarm: str, at: datetime
) -> None:
    text = compose_sms(site, address, alarm, at)
    assert fits(text)
    kst = at.astimezone(KST).strftime("%m-%d %H:%M:%S")
    assert text.endswith(f"{site} #{alarm[:8]} {kst}")
    assert text.startswith("[안심] 비상벨")


def test_sms_text_keeps_alarm_and_time_with_the_longest_site_id() -> None:
    site = "s" * 64
    text = compose_sms(site, "", ALARM, AT)
    assert fits(text)
    assert ALARM[:8] in text and "03-05 00:06:07" in text


# --------------------------------------------------------------------------- property


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("sms"), st.integers(0, 3), st.booleans()),
        st.tuples(
            st.just("call"),
            st.integers(0, 3),
            st.sampled_from(sorted(RETRY_CALL_OUTCOMES | {"answered"})),
        ),
        st.tuples(st.just("cancelled"), st.integers(0, 3)),
        st.sampled_from([("due",), ("link_lost",), ("recovered",), ("stop",), ("restart",)]),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(
    link_up=st.booleans(),
    attempts=st.integers(1, 4),
    numbers=st.sampled_from([[], [A], [A, B]]),
    ops=OPS,
)
def test_calls_never_exceed_the_limit_and_nothing_is_issued_after_stop(
    link_up: bool, attempts: int, numbers: list[str], ops: list[tuple[Any, ...]]
) -> None:
    cfg = config(call_attempts=attempts, sms_numbers=numbers)
    esc = Escalation(cfg, has_modem=True)
    outstanding: dict[str, str] = {}  # request id -> "sms" / "call", issued, no result yet
    placed = 0
    texted: dict[str, int] = {}
    stopped = answered = False
    now = T0

    def apply(effects: list[Effect]) -> None:
        nonlocal placed
        for e in effects:
            if stopped:
                assert not isinstance(e, SendSms | PlaceCall | Wake), (e, "after stop")
            if isinstance(e, PlaceCall):
                assert not answered, "a call after an answered one"
                assert "call" not in outstanding.values(), "two calls at once"
                placed += 1
                outstanding[e.request_id] = "call"
            elif isinstance(e, SendSms):
                texted[e.number] = texted.get(e.number, 0) + 1
                outstanding[e.request_id] = "sms"
            elif isinstance(e, Cancel):
                assert e.request_id in outstanding
            elif isinstance(e, Hangup):
                assert "call" in outstanding.values()
        assert placed <= attempts
        assert all(n <= attempts for n in texted.values())

    def pick(kind: str, i: int) -> str | None:
        ids = [rid for rid, k in outstanding.items() if k == kind]
        return ids[i % len(ids)] if ids else None

    apply(esc.raised(ALARM, False, link_up, TEXT, now))
    for op in ops:
        now += 1
        if op[0] == "sms" and (rid := pick("sms", op[1])) is not None:
            del outstanding[rid]
            apply(esc.sms_result(rid, op[2], "x"))
        elif op[0] == "call" and (rid := pick("call", op[1])) is not None:
            del outstanding[rid]
            answered = answered or op[2] == "answered"
            apply(esc.call_result(rid, op[2], "x"))
        elif op[0] == "cancelled" and outstanding:
            rid = list(outstanding)[op[1] % len(outstanding)]
            kind = outstanding.pop(rid)
            res = (
                esc.sms_result(rid, False, "cancelled")
                if kind == "sms"
                else esc.call_result(rid, "error", "cancelled")
            )
            assert [d["outcome"] for d in events(res)] == ["cancelled"]
            apply(res)
        elif op[0] == "due":
            apply(esc.due(ALARM))
        elif op[0] == "link_lost":
            apply(esc.link_lost())
        elif op[0] == "recovered":
            apply(esc.modem_recovered())
        elif op[0] == "stop":
            stopping = esc.stop(ALARM)
            stopped = True
            apply(stopping)
        elif op[0] == "restart":  # power cut: the modem forgets its queue
            saved = esc.dump()
            esc = Escalation(cfg, has_modem=True)
            outstanding.clear()
            apply(esc.restore(ALARM, saved, TEXT, now))


def test_sms_keeps_the_whole_site_id_when_dropping_the_address_is_enough() -> None:
    # Found by hypothesis: a 35-character site id and a one-character address. Dropping the
    # address makes the text fit; the site id must not be shortened.
    site = "0" * 35
    text = compose_sms(site, "0", ALARM, AT)
    assert fits(text)
    assert text.endswith(f"{site} #{ALARM[:8]} 03-05 00:06:07")
