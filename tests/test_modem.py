"""GSM/LTE modem driver: framing and classification (pure), and the whole driver against the
simulated modem on a real pty. No sleeps: every wait is on a condition with a timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at_protocol import (
    PROMPT,
    LineFramer,
    LineKind,
    classify_line,
    parse_clcc,
    parse_registration,
    plan_sms,
    rssi_to_dbm,
    ucs2_hex,
)
from drivers.modem import CallOutcome, GsmModem, ModemConfig, ModemHealth
from simulator.modem_device import SimTimings, SimulatedModem
from tests.support.wait import wait_until

NUMBER = "+821012345678"
KOREAN_ADDRESS = "서울특별시 강남구 테헤란로 123"

FAST = ModemConfig(
    read_timeout_s=0.02,
    command_timeout_s=0.4,
    dial_timeout_s=1.0,
    clcc_interval_s=0.05,
    end_grace_s=0.2,
    prompt_timeout_s=1.0,
    sms_timeout_s=2.0,
    reinit_backoff_s=0.1,
    reinit_backoff_max_s=0.2,
)


# --------------------------------------------------------------------------- helpers


class Recorder:
    """A ModemListener that records every callback and lets the test wait for one."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.events: list[tuple[Any, ...]] = []
        self.threads: set[str] = set()

    def _add(self, *event: Any) -> None:
        with self.cond:
            self.events.append(event)
            self.threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def on_call_result(self, request_id: str, outcome: CallOutcome, detail: str) -> None:
        self._add("call", request_id, outcome, detail)

    def on_sms_result(self, request_id: str, ok: bool, detail: str) -> None:
        self._add("sms", request_id, ok, detail)

    def on_health(self, health: ModemHealth) -> None:
        self._add("health", health)

    def on_modem_fault(self, reason: str) -> None:
        self._add("fault", reason)

    def on_modem_recovered(self) -> None:
        self._add("recovered")

    def on_urc(self, line: str) -> None:
        self._add("urc", line)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        with self.cond:
            return [e for e in self.events if e[0] == kind]

    def wait(
        self, pred: Callable[[tuple[Any, ...]], bool], timeout: float = 5.0
    ) -> tuple[Any, ...]:
        found: list[tuple[Any, ...]] = []

        def match() -> bool:
            found[:] = [e for e in self.events if pred(e)]
            return bool(found)

        with self.cond:
            assert self.cond.wait_for(match, timeout), f"timed out; events: {self.events}"
        return found[0]

    def result(self, kind: str, request_id: str, timeout: float = 5.0) -> tuple[Any, ...]:
        return self.wait(lambda e: e[0] == kind and e[1] == request_id, timeout)

    def health(
        self, pred: Callable[[ModemHealth], bool] = lambda h: h.ok, timeout: float = 5.0
    ) -> ModemHealth:
        event = self.wait(lambda e: e[0] == "health" and pred(e[1]), timeout)
        health: ModemHealth = event[1]
        return health


def wait_answered_seen_by_driver(sim: SimulatedModem) -> None:
    """The callee answered, and the driver has polled +CLCC since (two more commands)."""
    wait_until(lambda: any(c["answered_t"] for c in sim.snapshot()["calls"]))
    seen = sim.snapshot()["commands_received"]
    wait_until(lambda: sim.snapshot()["commands_received"] >= seen + 2)


@pytest.fixture
def sim() -> Iterator[SimulatedModem]:
    modem = SimulatedModem()
    try:
        yield modem
    finally:
        modem.close()


Factory = Callable[..., tuple[GsmModem, Recorder]]


@pytest.fixture
def make_modem() -> Iterator[Factory]:
    made: list[GsmModem] = []

    def factory(port: str, **overrides: Any) -> tuple[GsmModem, Recorder]:
        rec = Recorder()
        cfg = ModemConfig(**{**vars(FAST), **overrides})
        modem = GsmModem(port, rec, config=cfg, name=f"test{len(made)}")
        made.append(modem)
        modem.start()
        return modem, rec

    try:
        yield factory
    finally:
        for modem in made:
            modem.close()


@pytest.fixture
def ready(sim: SimulatedModem, make_modem: Factory) -> tuple[GsmModem, Recorder, SimulatedModem]:
    modem, rec = make_modem(sim.port)
    rec.health()
    return modem, rec, sim


# --------------------------------------------------------------------------- framing


def test_framer_lines_split_byte_by_byte() -> None:
    stream = b"\r\nOK\r\n\r\n+CSQ: 20,99\r\n\nRING\n\r  +CREG: 0,1  \r"
    framer = LineFramer()
    out: list[str] = []
    for i in range(len(stream)):
        out += framer.feed(stream[i : i + 1])
    assert out == ["OK", "+CSQ: 20,99", "RING", "+CREG: 0,1"]
    assert framer.garbage == 0


@given(st.lists(st.integers(min_value=1, max_value=12), max_size=40))
def test_framer_any_chunking_gives_same_frames(cuts: list[int]) -> None:
    stream = b"\r\n+CMGS: 7\r\n\r\nOK\r\n\r\n> \xff\x01junk\r\nBUSY\r\n\r\n> "
    framer = LineFramer()
    out: list[str] = []
    pos = 0
    for n in cuts:
        out += framer.feed(stream[pos : pos + n])
        pos += n
    out += framer.feed(stream[pos:])
    assert out == ["+CMGS: 7", "OK", PROMPT, "BUSY", PROMPT]
    assert framer.garbage == 1


def test_framer_garbage_is_counted_and_survived() -> None:
    framer = LineFramer(max_line=64)
    out = framer.feed(b"\xff\xfe\x00\r\nOK\r\nAT\x00X\r\n" + b"A" * 500)
    out += framer.feed(b"B" * 100 + b"\r\n+CREG: 0,1\r\n\x80\x81\nOK\r\n")
    assert out == ["OK", "+CREG: 0,1", "OK"]
    assert framer.garbage == 4  # noise, NUL inside a line, overlong line, high bytes


def test_framer_prompt_detection() -> None:
    framer = LineFramer()
    assert framer.feed(b"\r\n>") == []
    assert framer.feed(b" ") == [PROMPT]  # no line end needed
    assert framer.feed(b"\r\n>\r\n") == [">"]  # a bare ">" line is not the prompt
    assert framer.feed(b"\r\n> \r\n+CMGS: 5\r\n\r\nOK\r\n") == [PROMPT, "+CMGS: 5", "OK"]


@pytest.mark.parametrize(
    ("line", "command", "call_active", "kind"),
    [
        ("OK", "AT+CSQ", False, LineKind.FINAL_OK),
        ("OK", None, False, LineKind.STRAY),
        ("ERROR", "AT+CVHU=0", False, LineKind.FINAL_ERROR),
        ("+CME ERROR: 10", "AT+CREG?", False, LineKind.FINAL_ERROR),
        ("+CMS ERROR: 500", 'AT+CMGS="+82"', False, LineKind.FINAL_ERROR),
        ("AT+CSQ", "AT+CSQ", False, LineKind.ECHO),
        ("+CSQ: 20,99", "AT+CSQ", False, LineKind.INFO),
        ("+CREG: 0,1", "AT+CREG?", False, LineKind.INFO),
        ("+CREG: 1", "AT+CSQ", False, LineKind.URC),
        ("+CREG: 1", None, False, LineKind.URC),
        ("RING", "AT+CLCC", True, LineKind.URC),
        ('+CLIP: "+821012345678",145', "AT+CLCC", False, LineKind.URC),
        ('+CMTI: "SM",3', None, False, LineKind.URC),
        ("BUSY", "ATD+821012345678;", False, LineKind.CALL_CODE),
        ("NO CARRIER", "AT+CLCC", True, LineKind.CALL_CODE),
        ("NO CARRIER", None, True, LineKind.CALL_CODE),
        ("NO CARRIER", None, False, LineKind.URC),
        ("NO CARRIER", "AT+CSQ", False, LineKind.URC),
        ("ANSIM SIMULATED MODEM", "ATI", False, LineKind.INFO),
        ("Call Ready", "AT+CSQ", False, LineKind.URC),
        ("+CMGS: 12", 'AT+CMGS="+8210"', False, LineKind.INFO),
    ],
)
def test_classify(line: str, command: str | None, call_active: bool, kind: LineKind) -> None:
    assert classify_line(line, command, call_active=call_active) is kind


def test_reply_and_urcs_interleaved() -> None:
    framer = LineFramer()
    frames = framer.feed(b'\r\n+CREG: 0,5\r\nRING\r\n+CLIP: "+8210",145\r\n+CREG: 2\r\nOK\r\n')
    kinds = [classify_line(f, "AT+CREG?") for f in frames]
    assert kinds == [LineKind.INFO, LineKind.URC, LineKind.URC, LineKind.INFO, LineKind.FINAL_OK]
    # the unsolicited "+CREG: 2" slipped into the reply is ignored by the parser
    assert (
        parse_registration([f for f, k in zip(frames, kinds, strict=True) if k == "info"], "+CREG")
        == 5
    )


def test_parsers() -> None:
    assert rssi_to_dbm(0) == -113 and rssi_to_dbm(31) == -51 and rssi_to_dbm(99) is None
    assert parse_clcc(['+CLCC: 1,0,3,0,0,"+8210",145', '+CLCC: 2,1,4,0,0,"010",129']) == [3]
    assert ucs2_hex("A서") == "0041C11C"


def test_sms_plan_gsm_for_ascii_and_ucs2_otherwise() -> None:
    plan = plan_sms(NUMBER, "Alarm\r\nat\x1bshop", "IRA")
    assert (plan.charset, plan.csmp, plan.dest, plan.ucs2) == ("IRA", "17,167,0,0", NUMBER, False)
    assert plan.payload == b"Alarm\nat shop"  # CRLF -> LF, ESC (would abort) -> space
    plan = plan_sms(NUMBER, KOREAN_ADDRESS)
    assert (plan.charset, plan.csmp, plan.ucs2) == ("UCS2", "17,167,0,8", True)
    assert plan.dest == ucs2_hex(NUMBER)
    assert plan.payload == ucs2_hex(KOREAN_ADDRESS).encode("ascii")


@pytest.mark.parametrize(
    ("number", "text", "detail"),
    [
        ("0", "x", "invalid number (expected +digits)"),
        ("+82 10", "x", "invalid number (expected +digits)"),
        (NUMBER, "x" * 161, "text too long: 161 > 160 GSM septets"),
        (NUMBER, "[" * 81, "text too long: 162 > 160 GSM septets"),  # extension: 2 septets
        (NUMBER, "가" * 71, "text too long: 71 > 70 UCS2 characters"),
    ],
)
def test_sms_plan_refuses_bad_numbers_and_overlong_texts(
    number: str, text: str, detail: str
) -> None:
    with pytest.raises(ValueError) as info:
        plan_sms(number, text)
    assert str(info.value) == detail
    plan_sms(number if detail.startswith("text") else NUMBER, text[:70])  # the limit is fine


# --------------------------------------------------------------------------- init and health


def test_init_and_health(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    health = modem.health()
    assert health.ok and health.registered and health.last_error is None
    assert health.signal_dbm == -113 + 2 * 20
    assert health.checked_at is not None
    assert sim.snapshot()["echo"] is False  # ATE0 sent
    assert rec.threads == {"modem-test0"}  # callbacks on the worker thread
    assert not rec.of("fault")


def test_health_tracks_registration_and_signal(sim: SimulatedModem, make_modem: Factory) -> None:
    _, rec = make_modem(sim.port, check_interval_s=0.05)
    rec.health(lambda h: h.ok and h.registered)
    sim.set_registered(False)
    sim.set_signal(99)
    h = rec.health(lambda h: h.ok and not h.registered and h.signal_dbm is None)
    assert h.last_error is None
    sim.set_registered(True, lte_only=True)  # +CREG says 0, +CEREG says 1
    sim.set_signal(31)
    rec.health(lambda h: h.registered and h.signal_dbm == -51)


def test_echo_on_and_cvhu_error_are_tolerated(make_modem: Factory) -> None:
    with SimulatedModem(cvhu_supported=False, echo=True) as sim:
        modem, rec = make_modem(sim.port)
        assert rec.health().registered
        modem.close()  # before the simulator goes away
        assert not rec.of("fault")


def test_urcs_go_to_listener_and_garbage_is_survived(
    ready: tuple[GsmModem, Recorder, SimulatedModem],
) -> None:
    modem, rec, sim = ready
    sim.inject("RING")
    sim.inject('+CLIP: "+821099998888",145,,,"",0')
    sim.inject("NO CARRIER")  # no call of ours in progress: unsolicited
    sim.inject_raw(b"\xff\x00\xfe\r\n" + b"\x07noise\r\n")
    rec.wait(lambda e: e == ("urc", "NO CARRIER"))
    assert [e[1] for e in rec.of("urc")] == [
        "RING",
        '+CLIP: "+821099998888",145,,,"",0',
        "NO CARRIER",
    ]
    wait_until(lambda: modem.garbage_lines == 2)
    modem.send_sms("after-noise", NUMBER, "still fine")
    assert rec.result("sms", "after-noise")[2] is True


# --------------------------------------------------------------------------- voice calls


def test_call_answered(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    modem.call("c1", NUMBER, ring_timeout_s=3, talk_s=0.1)
    assert rec.result("call", "c1")[2:] == (CallOutcome.ANSWERED, "completed")
    (call,) = sim.snapshot()["calls"]
    assert call["number"] == NUMBER and call["outcome"] == "answered"
    assert call["ended_t"] - call["answered_t"] >= 0.1


def test_call_busy_arriving_between_polls(sim: SimulatedModem, make_modem: Factory) -> None:
    modem, rec = make_modem(sim.port, clcc_interval_s=2.0)  # BUSY must come in unpolled
    rec.health()
    sim.set_callee("busy")
    started = time.monotonic()
    modem.call("c1", NUMBER, ring_timeout_s=3)
    assert rec.result("call", "c1")[2:] == (CallOutcome.BUSY, "BUSY")
    assert time.monotonic() - started < 1.5
    assert sim.snapshot()["calls"][0]["outcome"] == "busy"


def test_call_no_answer_hangs_up_at_ring_timeout(
    ready: tuple[GsmModem, Recorder, SimulatedModem],
) -> None:
    modem, rec, sim = ready
    sim.set_callee("no_answer")
    started = time.monotonic()
    modem.call("c1", NUMBER, ring_timeout_s=0.5)
    assert rec.result("call", "c1")[2] is CallOutcome.NO_ANSWER
    assert time.monotonic() - started >= 0.5
    assert sim.snapshot()["calls"][0]["outcome"] == "hung_up"  # our ATH


def test_call_network_no_answer(make_modem: Factory) -> None:
    with SimulatedModem(timings=SimTimings(network_no_answer_s=0.3)) as sim:
        modem, rec = make_modem(sim.port)
        sim.set_callee("no_answer")
        modem.call("c1", NUMBER, ring_timeout_s=5)
        assert rec.result("call", "c1")[2:] == (CallOutcome.NO_ANSWER, "NO ANSWER")
        modem.close()


def test_call_dropped_after_answer_counts_as_answered(
    ready: tuple[GsmModem, Recorder, SimulatedModem],
) -> None:
    modem, rec, sim = ready
    sim.set_callee("no_carrier")
    modem.call("c1", NUMBER, ring_timeout_s=3, talk_s=10)
    assert rec.result("call", "c1")[2:] == (CallOutcome.ANSWERED, "dropped")
    assert sim.snapshot()["calls"][0]["outcome"] == "dropped"


def test_call_dropped_while_ringing(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    sim.set_callee("no_carrier_ringing")
    modem.call("c1", NUMBER, ring_timeout_s=3)
    assert rec.result("call", "c1")[2:] == (CallOutcome.NO_CARRIER, "NO CARRIER")


def test_call_sequence_no_dialtone_busy_then_answer(
    ready: tuple[GsmModem, Recorder, SimulatedModem],
) -> None:
    modem, rec, sim = ready
    sim.queue_callee(["no_dialtone", "busy", "answer"])
    for i in range(3):
        modem.call(f"c{i}", NUMBER, ring_timeout_s=3, talk_s=0.05)
    assert rec.result("call", "c2")[2] is CallOutcome.ANSWERED
    assert [e[2] for e in rec.of("call")] == [
        CallOutcome.NO_DIALTONE,
        CallOutcome.BUSY,
        CallOutcome.ANSWERED,
    ]


def test_hangup_ends_call_in_progress(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    modem.call("c1", NUMBER, ring_timeout_s=3, talk_s=30)
    wait_answered_seen_by_driver(sim)
    modem.hangup()
    assert rec.result("call", "c1", timeout=2)[2:] == (CallOutcome.ANSWERED, "hung up by request")
    assert sim.snapshot()["calls"][0]["outcome"] == "answered"


def test_invalid_call_requests_fail(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    modem.call("bad", "010;ATH\r", ring_timeout_s=3)
    assert rec.result("call", "bad")[2] is CallOutcome.ERROR
    sim.set_registered(False)
    modem.call("unreg", NUMBER)
    assert rec.result("call", "unreg")[2:] == (CallOutcome.ERROR, "+CME ERROR: 30")
    assert sim.snapshot()["calls"] == []


# --------------------------------------------------------------------------- SMS


def test_sms_ascii(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    modem.send_sms("s1", NUMBER, "PANIC store 17\r\nsend help")
    _, _, ok, ref = rec.result("sms", "s1")
    assert ok is True and ref == "1"
    (sms,) = sim.snapshot()["sms"]
    assert sms["number"] == NUMBER and sms["charset"] == "GSM" and sms["dcs"] == 0
    assert sms["text"] == "PANIC store 17\nsend help"  # CR would re-prompt: sent as LF


def test_sms_ucs2_korean(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    modem.send_sms("s1", NUMBER, KOREAN_ADDRESS)
    assert rec.result("sms", "s1")[2] is True
    (sms,) = sim.snapshot()["sms"]
    assert sms["text"] == KOREAN_ADDRESS
    assert sms["number"] == NUMBER  # sent hex-encoded, decoded back
    assert sms["charset"] == "UCS2" and sms["dcs"] == 8


def test_sms_failure_and_bad_requests(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    sim.set_sms_fail(True)
    modem.send_sms("fail", NUMBER, "x")
    assert rec.result("sms", "fail")[2:] == (False, "+CMS ERROR: 500")
    modem.send_sms("badnum", '+8210"\r', "x")
    modem.send_sms("long", NUMBER, "가" * 71)
    assert rec.result("sms", "badnum")[2] is False
    assert "too long" in rec.result("sms", "long")[3]
    sim.set_sms_fail(False)
    modem.send_sms("ok", NUMBER, "가" * 70)
    assert rec.result("sms", "ok")[2] is True
    assert not rec.of("fault")


# --------------------------------------------------------------------------- faults, close


def test_silent_modem_fault_prompt_failures_and_recovery(
    sim: SimulatedModem, make_modem: Factory
) -> None:
    modem, rec = make_modem(sim.port, check_interval_s=0.1, command_timeout_s=0.2)
    rec.health()
    sim.set_silent(True)
    rec.wait(lambda e: e[0] == "fault")
    assert not modem.health().ok

    started = time.monotonic()
    modem.send_sms("s-down", NUMBER, "x")
    modem.call("c-down", NUMBER)
    _, _, ok, detail = rec.result("sms", "s-down", timeout=1)
    _, _, outcome, call_detail = rec.result("call", "c-down", timeout=1)
    assert time.monotonic() - started < 0.5
    assert ok is False and "modem down" in detail
    assert outcome is CallOutcome.ERROR and "modem down" in call_detail

    # several re-init attempts while silent, still a single fault
    seen = sim.snapshot()["commands_received"]
    wait_until(lambda: sim.snapshot()["commands_received"] >= seen + 4)
    sim.restart()  # comes back like a rebooted module: echo on again
    sim.set_silent(False)
    rec.wait(lambda e: e[0] == "recovered")
    rec.wait(lambda e: e[0] == "health" and e[1].ok and bool(rec.of("recovered")))
    assert len(rec.of("fault")) == 1 and len(rec.of("recovered")) == 1
    modem.send_sms("s-up", NUMBER, "back")
    assert rec.result("sms", "s-up")[2] is True


def test_missing_port_is_a_fault_not_an_exception(make_modem: Factory) -> None:
    modem, rec = make_modem("/dev/does-not-exist-modem")
    reason = rec.wait(lambda e: e[0] == "fault")[1]
    assert "cannot open" in reason
    modem.send_sms("s", NUMBER, "x")
    assert rec.result("sms", "s", timeout=1)[2] is False


def test_close_mid_call_is_prompt(ready: tuple[GsmModem, Recorder, SimulatedModem]) -> None:
    modem, rec, sim = ready
    modem.call("c1", NUMBER, ring_timeout_s=5, talk_s=30)
    modem.send_sms("queued", NUMBER, "x")
    wait_answered_seen_by_driver(sim)
    started = time.monotonic()
    modem.close()
    assert time.monotonic() - started < 1.0
    assert rec.result("call", "c1", timeout=0)[2:] == (CallOutcome.ANSWERED, "modem driver closed")
    assert rec.result("sms", "queued", timeout=0)[2:] == (False, "modem driver closed")
    assert sim.snapshot()["calls"][0]["outcome"] == "answered"  # hung up on close
    modem.send_sms("late", NUMBER, "x")  # after close: answered at once
    assert rec.result("sms", "late", timeout=0)[2:] == (False, "modem driver closed")


def test_listener_exceptions_do_not_kill_worker(sim: SimulatedModem) -> None:
    class Exploding(Recorder):
        def on_health(self, health: ModemHealth) -> None:
            super().on_health(health)
            raise RuntimeError("listener bug")

    rec = Exploding()
    modem = GsmModem(sim.port, rec, config=FAST)
    modem.start()
    try:
        rec.health()
        modem.send_sms("s1", NUMBER, "x")
        assert rec.result("sms", "s1")[2] is True
    finally:
        modem.close()
