"""A simulated GSM/LTE modem on a pseudo-terminal, for tests and the site simulator.

``SimulatedModem()``, a :class:`~simulator.ptydevice.PtyDevice`, serves the master side of a
pty pair on its own thread; a driver opens :attr:`SimulatedModem.port` (the slave path) like
a real ``/dev/ttyUSB*``.
It speaks the AT dialogue of a typical module (echo until ``ATE0``, ``+CME``/``+CMS``
errors after ``AT+CMEE=1``, registration, signal, voice calls visible in ``AT+CLCC`` with
final result codes, text-mode SMS with the ``"> "`` prompt and UCS2 hex).

Threading rules: every public method is thread-safe (one lock guards the state; the serving
thread takes it for each chunk of input and each timer tick). Nothing blocks on the driver:
output to the pty is non-blocking and dropped if the driver stops reading. No module-level
state: many simulated modems can share a process.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from simulator.ptydevice import PtyDevice

_CR = 0x0D
_LF = 0x0A
_CTRL_Z = 0x1A
_ESC = 0x1B


class CalleeBehaviour(StrEnum):
    """What the called party does."""

    ANSWER = "answer"  # answers after ring_s; stays until ATH
    BUSY = "busy"  # BUSY after ring_s
    NO_ANSWER = "no_answer"  # rings; NO ANSWER from the network after network_no_answer_s
    NO_CARRIER = "no_carrier"  # answers, then drops (NO CARRIER) after drop_after_s
    NO_CARRIER_RINGING = "no_carrier_ringing"  # NO CARRIER while still ringing
    NO_DIALTONE = "no_dialtone"  # ATD answers NO DIALTONE at once


@dataclass(frozen=True)
class SimTimings:
    """Call and SMS timings (seconds). Short defaults keep tests fast."""

    dial_s: float = 0.05  # dialing (stat 2) before alerting (stat 3)
    ring_s: float = 0.3  # alerting before answer / busy / drop-while-ringing
    drop_after_s: float = 0.3  # answered -> NO CARRIER for CalleeBehaviour.NO_CARRIER
    network_no_answer_s: float = 5.0  # from ATD to NO ANSWER for CalleeBehaviour.NO_ANSWER
    sms_delay_s: float = 0.05  # Ctrl-Z -> +CMGS


@dataclass
class _Call:
    number: str
    behaviour: CalleeBehaviour
    started_t: float
    stage: str = "dialing"  # dialing, alerting, active
    answered_t: float | None = None
    ended_t: float | None = None
    outcome: str | None = None

    def record(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "behaviour": str(self.behaviour),
            "outcome": self.outcome,
            "started_t": self.started_t,
            "answered_t": self.answered_t,
            "ended_t": self.ended_t,
        }


_STAT = {"dialing": 2, "alerting": 3, "active": 0}


class SimulatedModem(PtyDevice):
    """A modem on a pty. See the module docstring for threading rules.

    Call outcomes recorded in ``snapshot()["calls"]``: ``answered`` (answered, ended by our
    ATH), ``dropped`` (answered, then NO CARRIER), ``busy``, ``no_answer`` (network NO
    ANSWER), ``no_carrier`` (dropped while ringing), ``no_dialtone``, ``hung_up`` (ATH
    before it was answered), ``restarted``; ``None`` while in progress.
    """

    def __init__(
        self,
        *,
        timings: SimTimings | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        cvhu_supported: bool = True,
        echo: bool = True,
    ) -> None:
        super().__init__()
        self.timings = timings or SimTimings()
        self._mono = monotonic
        self._cvhu_supported = cvhu_supported
        # Modem state (guarded by _lock).
        self._echo = echo
        self._cmee = 0
        self._cmgf = 0
        self._cscs = "GSM"
        self._csmp_dcs = 0
        self._creg_n = 0
        self._cereg_n = 0
        self._registered = True
        self._lte_only = False
        self._rssi = 20
        self._silent = False
        self._sms_fail = False
        self._callee = CalleeBehaviour.ANSWER
        self._callee_queue: deque[CalleeBehaviour] = deque()
        self._call: _Call | None = None
        self._calls: list[_Call] = []
        self._sms: list[dict[str, Any]] = []
        self._sms_ref = 0
        self._pending_cmgs: tuple[float, int] | None = None
        self._line = bytearray()
        self._text: bytearray | None = None  # SMS text being typed after the prompt
        self._text_number = ""
        self._commands_received = 0
        self._start_serving("sim-modem")

    # ------------------------------------------------------------------ controls

    def set_registered(self, registered: bool, *, lte_only: bool = False) -> None:
        """Network registration. ``lte_only``: registered on ``+CEREG`` only (``+CREG``
        says 0, not searching) as LTE-only modules do."""
        with self._lock:
            self._registered = registered
            self._lte_only = lte_only
            if self._creg_n >= 1:
                self._urc(f"+CREG: {self._creg_stat()}")
            if self._cereg_n >= 1:
                self._urc(f"+CEREG: {self._cereg_stat()}")

    def set_signal(self, rssi: int) -> None:
        """``+CSQ`` rssi: 0..31, or 99 (unknown)."""
        with self._lock:
            self._rssi = rssi

    def set_callee(self, behaviour: CalleeBehaviour | str) -> None:
        """Default behaviour of called parties."""
        with self._lock:
            self._callee = CalleeBehaviour(behaviour)

    def queue_callee(self, behaviours: Iterable[CalleeBehaviour | str]) -> None:
        """Behaviours for the next calls, in order (then the default applies again)."""
        with self._lock:
            self._callee_queue.extend(CalleeBehaviour(b) for b in behaviours)

    def set_sms_fail(self, fail: bool) -> None:
        """Make SMS submission fail with ``+CMS ERROR: 500``."""
        with self._lock:
            self._sms_fail = fail

    def set_silent(self, silent: bool) -> None:
        """Stop (or resume) answering anything: input is read and ignored."""
        with self._lock:
            self._silent = silent

    def restart(self) -> None:
        """Simulate a module reboot: call dropped, echo on, settings reset, ``RDY``."""
        with self._lock:
            if self._call is not None:
                self._end_call("restarted", None)
            self._echo, self._cmee, self._cmgf, self._cscs = True, 0, 0, "GSM"
            self._text = None
            self._line.clear()
            self._urc("RDY")

    def inject(self, line: str) -> None:
        """Send an unsolicited line (``RING``, ``+CLIP: ...``) framed by CRLF."""
        with self._lock:
            self._urc(line)

    def inject_raw(self, data: bytes) -> None:
        """Send raw bytes (noise, partial lines)."""
        with self._lock:
            self._write(data)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state: registered, rssi, silent, callee (the default
        behaviour), sms_fail, echo, calls, sms, commands_received (command lines seen, also
        while silent)."""
        with self._lock:
            return {
                "registered": self._registered,
                "rssi": self._rssi,
                "silent": self._silent,
                "callee": str(self._callee),
                "sms_fail": self._sms_fail,
                "echo": self._echo,
                "calls": [c.record() for c in self._calls],
                "sms": [dict(s) for s in self._sms],
                "commands_received": self._commands_received,
            }

    # ------------------------------------------------------------------ serving thread

    def _poll_timeout(self) -> float | None:
        return 0.01  # timers: call progress, the +CMGS delay

    def _on_input(self, data: bytes) -> None:
        with self._lock:
            if data:
                self._receive(data)
            self._tick(self._mono())

    def _write(self, data: bytes) -> None:
        self._write_some(data)  # the driver not reading: dropped, like a full UART FIFO

    def _reply(self, *lines: str) -> None:
        if not self._silent:
            self._write(b"".join(b"\r\n" + ln.encode("latin-1") + b"\r\n" for ln in lines))

    def _urc(self, line: str) -> None:
        self._reply(line)

    def _cme(self, code: int) -> str:
        return f"+CME ERROR: {code}" if self._cmee else "ERROR"

    def _cms(self, code: int) -> str:
        return f"+CMS ERROR: {code}" if self._cmee else "ERROR"

    def _receive(self, data: bytes) -> None:
        for byte in data:
            if self._text is not None and not self._silent:
                self._sms_byte(byte)
                continue
            if byte == _CR:
                self._commands_received += 1
                line = self._line.decode("latin-1").strip()
                self._line.clear()
                if self._silent:
                    continue
                if self._echo:
                    self._write(b"\r")
                self._command(line)
            elif byte == _LF or byte < 0x20 or byte > 0x7E:
                continue  # LF after CR, ESC, noise
            else:
                self._line.append(byte)
                if self._echo and not self._silent:
                    self._write(bytes([byte]))

    def _sms_byte(self, byte: int) -> None:
        assert self._text is not None
        if byte == _CTRL_Z:
            self._finish_sms()
        elif byte == _ESC:
            self._text = None  # aborted: nothing sent
        elif byte == _CR:
            self._text.append(_LF)
            self._write(b"\r\n> ")
        else:
            self._text.append(byte)

    # ------------------------------------------------------------------ AT commands

    def _command(self, line: str) -> None:
        upper = line.upper()
        if not upper.startswith("AT"):
            return  # real modules ignore anything that is not a command
        body, ubody = line[2:], upper[2:]
        if ubody == "":
            self._reply("OK")
        elif ubody in ("E0", "E1", "E"):
            self._echo = ubody == "E1"
            self._reply("OK")
        elif ubody == "I":
            self._reply("ANSIM SIMULATED MODEM", "OK")
        elif m := re.fullmatch(r"\+CMEE=([012])", ubody):
            self._cmee = int(m.group(1))
            self._reply("OK")
        elif m := re.fullmatch(r"\+CVHU=([01])", ubody):
            self._reply("OK" if self._cvhu_supported else "ERROR")
        elif ubody == "+CREG?":
            self._reply(f"+CREG: {self._creg_n},{self._creg_stat()}", "OK")
        elif ubody == "+CEREG?":
            self._reply(f"+CEREG: {self._cereg_n},{self._cereg_stat()}", "OK")
        elif m := re.fullmatch(r"\+(C|CE)REG=([012])", ubody):
            if m.group(1) == "C":
                self._creg_n = int(m.group(2))
            else:
                self._cereg_n = int(m.group(2))
            self._reply("OK")
        elif ubody == "+CSQ":
            self._reply(f"+CSQ: {self._rssi},99", "OK")
        elif ubody.startswith("D"):
            self._dial(body[1:])
        elif ubody in ("H", "H0", "+CHUP"):
            if self._call is not None:
                self._end_call("answered" if self._call.stage == "active" else "hung_up", None)
            self._reply("OK")
        elif ubody == "+CLCC":
            lines = []
            if self._call is not None:
                c = self._call
                kind = 145 if c.number.startswith("+") else 129
                lines.append(f'+CLCC: 1,0,{_STAT[c.stage]},0,0,"{c.number}",{kind}')
            self._reply(*lines, "OK")
        elif m := re.fullmatch(r"\+CMGF=([01])", ubody):
            self._cmgf = int(m.group(1))
            self._reply("OK")
        elif m := re.fullmatch(r'\+CSCS="(GSM|UCS2|IRA)"', ubody):
            self._cscs = m.group(1)
            self._reply("OK")
        elif ubody == "+CSCS?":
            self._reply(f'+CSCS: "{self._cscs}"', "OK")
        elif m := re.fullmatch(r"\+CSMP=(\d+),(\d+),(\d+),(\d+)", ubody):
            self._csmp_dcs = int(m.group(4))
            self._reply("OK")
        elif ubody.startswith("+CMGS="):
            self._start_sms(re.fullmatch(r'\+CMGS="([^"]*)"(?:,\d+)?', body, re.I))
        else:
            self._reply("ERROR")

    def _creg_stat(self) -> int:
        return 1 if self._registered and not self._lte_only else (0 if self._lte_only else 2)

    def _cereg_stat(self) -> int:
        return 1 if self._registered else 2

    # ------------------------------------------------------------------ calls

    def _dial(self, arg: str) -> None:
        if not arg.endswith(";"):
            self._reply(self._cme(3))  # data calls are not supported
            return
        number = arg[:-1].strip()
        if not number or self._call is not None:
            self._reply(self._cme(3))
            return
        if not self._registered:
            self._reply(self._cme(30))  # no network service
            return
        behaviour = self._callee_queue.popleft() if self._callee_queue else self._callee
        call = _Call(number, behaviour, self._mono())
        self._calls.append(call)
        if behaviour is CalleeBehaviour.NO_DIALTONE:
            call.ended_t, call.outcome = call.started_t, "no_dialtone"
            self._reply("NO DIALTONE")
            return
        self._call = call
        self._reply("OK")

    def _end_call(self, outcome: str, code: str | None) -> None:
        call = self._call
        assert call is not None
        call.ended_t, call.outcome = self._mono(), outcome
        self._call = None
        if code is not None:
            self._reply(code)

    def _tick(self, now: float) -> None:
        if self._pending_cmgs is not None and now >= self._pending_cmgs[0]:
            ref = self._pending_cmgs[1]
            self._pending_cmgs = None
            self._reply(f"+CMGS: {ref}", "OK")
        call = self._call
        if call is None:
            return
        t = self.timings
        elapsed = now - call.started_t
        if call.stage == "dialing" and elapsed >= t.dial_s:
            call.stage = "alerting"
        if call.stage == "alerting":
            b = call.behaviour
            if b is CalleeBehaviour.NO_ANSWER:
                if elapsed >= t.network_no_answer_s:
                    self._end_call("no_answer", "NO ANSWER")
            elif elapsed >= t.dial_s + t.ring_s:
                if b in (CalleeBehaviour.ANSWER, CalleeBehaviour.NO_CARRIER):
                    call.stage, call.answered_t = "active", now
                elif b is CalleeBehaviour.BUSY:
                    self._end_call("busy", "BUSY")
                else:
                    self._end_call("no_carrier", "NO CARRIER")
        elif (
            call.stage == "active"
            and call.behaviour is CalleeBehaviour.NO_CARRIER
            and call.answered_t is not None
            and now - call.answered_t >= t.drop_after_s
        ):
            self._end_call("dropped", "NO CARRIER")

    # ------------------------------------------------------------------ SMS

    def _start_sms(self, m: re.Match[str] | None) -> None:
        if m is None or self._cmgf != 1 or self._pending_cmgs is not None:
            self._reply(self._cms(302))  # operation not allowed
            return
        number = m.group(1)
        if self._cscs == "UCS2":
            number = _decode_ucs2(number) or number
        self._text_number = number
        self._text = bytearray()
        self._write(b"\r\n> ")

    def _finish_sms(self) -> None:
        assert self._text is not None
        raw = bytes(self._text)
        self._text = None
        record: dict[str, Any] = {
            "number": self._text_number,
            "charset": self._cscs,
            "dcs": self._csmp_dcs,
            "t": self._mono(),
        }
        if self._cscs == "UCS2":
            decoded = _decode_ucs2(raw.decode("latin-1"))
            record["text"] = decoded if decoded is not None else raw.decode("latin-1")
            if decoded is None:
                record["ok"] = False
                self._sms.append(record)
                self._reply(self._cms(304))  # invalid PDU mode parameter / bad text
                return
        else:
            record["text"] = raw.decode("latin-1")
        if self._sms_fail or not self._registered:
            record["ok"] = False
            self._sms.append(record)
            self._reply(self._cms(500 if self._sms_fail else 331))
            return
        self._sms_ref = (self._sms_ref + 1) % 256
        record["ok"] = True
        record["ref"] = self._sms_ref
        self._sms.append(record)
        self._pending_cmgs = (self._mono() + self.timings.sms_delay_s, self._sms_ref)


def _decode_ucs2(hex_text: str) -> str | None:
    try:
        return bytes.fromhex(hex_text).decode("utf-16-be")
    except ValueError:
        return None
