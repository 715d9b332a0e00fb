"""GSM/LTE modem driver (fallback alarm channel): voice calls and SMS over AT commands.

Layers
------
* :class:`LineFramer` turns the raw byte stream into lines and the SMS prompt ``"> "``
  (pure, fed bytes; tested without any I/O).
* :func:`classify_line` says what a line is, given the command in flight: a command reply
  (final ``OK`` / ``ERROR`` / ``+CME ERROR: n`` / ``+CMS ERROR: n``, or an information line),
  a call result code, or an unsolicited result code (URC: ``RING``, ``+CLIP: ...``, ...).
* :class:`GsmModem` owns the serial port and one worker thread that runs every AT dialogue.

Threading rules
---------------
* Every public method of :class:`GsmModem` is thread-safe and non-blocking: it only queues a
  request (or sets a flag) for the worker thread. ``close()`` waits for the worker, but less
  than a second (a call in progress is hung up best effort).
* Requests are executed one at a time, in the order they were made: an SMS requested during a
  voice call is sent after that call ends. ``hangup()`` is out of band: it ends the call in
  progress at once (or sends ``ATH`` when there is none); it does not cancel queued calls.
* Every :class:`ModemListener` callback runs on the worker thread. Callbacks must be cheap and
  must not block (hand the result to the core, e.g. ``Core.post``). Exceptions raised by a
  callback are logged and swallowed; the worker never dies from one.
* Exception: a request made after ``close()`` is answered at once on the calling thread
  (``error`` / ``ok=False``, detail ``"modem driver closed"``).
* No module-level mutable state: any number of instances may share a process.

Privacy: message text is never logged (only its length); phone numbers are logged masked
except for their last 4 digits.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

import serial
import structlog

_log = structlog.get_logger(__name__)

# --------------------------------------------------------------------------- framing

PROMPT: Final = "> "
"""Frame yielded by :class:`LineFramer` for the SMS text prompt (it has no line end).
A real line can never equal it: lines are stripped of surrounding whitespace."""

_CR: Final = 0x0D
_LF: Final = 0x0A
_CTRL_Z: Final = b"\x1a"
_ESC: Final = b"\x1b"


class LineFramer:
    """Splits modem output into lines; recognises the SMS prompt ``"> "``.

    * A line ends at CR or LF (so CRLF, LF and lone CR all work); empty lines are skipped;
      lines are stripped of surrounding whitespace.
    * ``"> "`` at the start of a line is emitted as :data:`PROMPT` at once (it never gets a
      line end).
    * A line holding anything other than printable ASCII (and tab) is dropped as garbage; so
      is a line longer than ``max_line`` bytes. ``garbage`` counts the dropped lines.

    Not thread-safe: one owner (the modem worker) feeds it.
    """

    def __init__(self, max_line: int = 1024) -> None:
        if max_line < 8:
            raise ValueError("max_line must be at least 8")
        self.max_line = max_line
        self.garbage = 0
        self._buf = bytearray()
        self._discarding = False

    def reset(self) -> None:
        """Forget a partial line (after reopening the port)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes) -> list[str]:
        """Consume ``data``; return the complete lines (and prompts) it finished, in order."""
        out: list[str] = []
        buf = self._buf
        for byte in data:
            if byte in (_CR, _LF):
                if self._discarding:
                    self._discarding = False
                elif buf:
                    self._finish_line(out)
                continue
            if self._discarding:
                continue
            buf.append(byte)
            if len(buf) == 2 and buf[0] == 0x3E and buf[1] == 0x20:  # "> "
                buf.clear()
                out.append(PROMPT)
            elif len(buf) > self.max_line:
                self.garbage += 1
                buf.clear()
                self._discarding = True
        return out

    def _finish_line(self, out: list[str]) -> None:
        raw = bytes(self._buf)
        self._buf.clear()
        if any((b < 0x20 and b != 0x09) or b > 0x7E for b in raw):
            self.garbage += 1
            return
        text = raw.decode("ascii").strip()
        if text:
            out.append(text)


# --------------------------------------------------------------------------- classification


class LineKind(StrEnum):
    """What a line from the modem is, relative to the command in flight."""

    ECHO = "echo"  # the command itself, echoed back (echo still on)
    FINAL_OK = "final_ok"
    FINAL_ERROR = "final_error"  # ERROR, +CME ERROR: n, +CMS ERROR: n
    CALL_CODE = "call_code"  # NO CARRIER / BUSY / NO ANSWER / NO DIALTONE during a call
    INFO = "info"  # information line belonging to the command in flight
    URC = "urc"  # unsolicited result code -> listener
    STRAY = "stray"  # a final result with no command in flight (late reply): dropped


CALL_CODES: Final = frozenset({"NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE"})
_BARE_URCS: Final = frozenset(
    {"RING", "RDY", "CALL READY", "SMS READY", "PB DONE", "NORMAL POWER DOWN", "POWERED DOWN"}
)
_URC_PREFIXES: Final = ("VOICE CALL:", "MISSED_CALL:", "UNDER-VOLTAGE", "OVER-VOLTAGE")


def info_prefix(command: str) -> str | None:
    """``"AT+CREG?"`` -> ``"+CREG"``; ``None`` for commands without a ``+XXX:`` reply."""
    upper = command.upper()
    if not upper.startswith("AT") or len(upper) < 4 or upper[2] not in "+^$#%":
        return None
    name = re.split(r"[=?]", upper[2:], maxsplit=1)[0]
    return name or None


def classify_line(line: str, command: str | None, *, call_active: bool = False) -> LineKind:
    """Classify one framed line.

    ``command`` is the AT command in flight (``None`` when idle); ``call_active`` says a
    voice call set up by this driver is in progress. Call result codes end a dial command,
    belong to the call in progress, or else are URCs. ``+XXX:`` lines are information for
    the command in flight when its name matches, URCs otherwise. Other unknown lines are
    information while a command is in flight (``ATI`` style replies), URCs otherwise.
    """
    upper = line.upper()
    if command is not None and upper == command.upper():
        return LineKind.ECHO
    if upper == "OK":
        return LineKind.FINAL_OK if command is not None else LineKind.STRAY
    if upper == "ERROR" or upper.startswith(("+CME ERROR", "+CMS ERROR")):
        return LineKind.FINAL_ERROR if command is not None else LineKind.STRAY
    if upper in CALL_CODES:
        dialing = command is not None and is_dial_command(command)
        return LineKind.CALL_CODE if dialing or call_active else LineKind.URC
    if upper in _BARE_URCS or upper.startswith(_URC_PREFIXES):
        return LineKind.URC
    if line.startswith("+"):
        prefix = upper.split(":", 1)[0].strip()
        if command is not None and prefix == info_prefix(command):
            return LineKind.INFO
        return LineKind.URC
    return LineKind.INFO if command is not None else LineKind.URC


def is_dial_command(command: str) -> bool:
    """True for a dial command (``ATD...``)."""
    return command[:3].upper() == "ATD"


# --------------------------------------------------------------------------- public types


class CallOutcome(StrEnum):
    """How a voice call ended (see :meth:`GsmModem.call`)."""

    ANSWERED = "answered"
    BUSY = "busy"
    NO_ANSWER = "no_answer"
    NO_CARRIER = "no_carrier"  # dropped before it was answered
    NO_DIALTONE = "no_dialtone"
    ERROR = "error"  # refused, invalid request, modem down, driver closed
    TIMEOUT = "timeout"  # the modem stopped replying during the call


@dataclass(frozen=True)
class ModemHealth:
    """Result of the latest periodic check.

    ``ok``: the modem answers AT commands. ``registered``: network registration stat 1 (home)
    or 5 (roaming) on ``+CREG`` or ``+CEREG``. ``signal_dbm``: from ``+CSQ`` (``None`` when
    unknown). ``last_error``: what went wrong in the latest check or fault, else ``None``.
    ``checked_at``: monotonic time of the latest check (``None`` before the first one).
    """

    ok: bool
    registered: bool
    signal_dbm: int | None
    last_error: str | None
    checked_at: float | None


class ModemListener(Protocol):
    """Receives every result. All methods run on the modem's worker thread: be cheap, never
    block, hand the value over to your own thread. Exceptions are logged and swallowed."""

    def on_call_result(self, request_id: str, outcome: CallOutcome, detail: str) -> None: ...

    def on_sms_result(self, request_id: str, ok: bool, detail: str) -> None: ...

    def on_health(self, health: ModemHealth) -> None: ...

    def on_modem_fault(self, reason: str) -> None:
        """The modem stopped answering (reported once until it recovers)."""
        ...

    def on_modem_recovered(self) -> None:
        """The modem answers again after a fault (reported once)."""
        ...

    def on_urc(self, line: str) -> None:
        """An unsolicited result code (``RING``, ``+CLIP: ...``); may contain numbers."""
        ...


@dataclass(frozen=True)
class ModemConfig:
    """Timings and port settings. Defaults suit a real module; tests shrink them."""

    baudrate: int = 115200
    read_timeout_s: float = 0.05  # serial read granularity (also stop latency)
    write_timeout_s: float = 1.0
    command_timeout_s: float = 2.0  # simple commands
    check_interval_s: float = 30.0  # CREG/CEREG/CSQ health check
    dial_timeout_s: float = 10.0  # reply to ATD
    clcc_interval_s: float = 0.5  # AT+CLCC polling during a call
    end_grace_s: float = 0.5  # wait for a result code after CLCC shows the call gone
    prompt_timeout_s: float = 5.0  # "> " after AT+CMGS
    sms_timeout_s: float = 60.0  # +CMGS after Ctrl-Z
    reinit_backoff_s: float = 1.0  # first re-init delay after a fault (doubles)
    reinit_backoff_max_s: float = 30.0
    close_hangup_timeout_s: float = 0.3  # ATH on close(), best effort
    close_join_timeout_s: float = 0.6
    ascii_charset: str = "GSM"  # AT+CSCS for pure-ASCII texts ("IRA" on some modules)
    max_line: int = 1024

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, float) and not value > 0:
                raise ValueError(f"ModemConfig.{name} must be > 0, got {value!r}")
        if self.baudrate <= 0:
            raise ValueError(f"ModemConfig.baudrate must be > 0, got {self.baudrate!r}")
        if not re.fullmatch(r"[A-Z0-9]+", self.ascii_charset):
            raise ValueError(f"ModemConfig.ascii_charset invalid: {self.ascii_charset!r}")
        if self.close_hangup_timeout_s + 0.2 > 1.0:
            raise ValueError("ModemConfig.close_hangup_timeout_s must stay below 0.8 s")


# --------------------------------------------------------------------------- helpers

GSM_MAX_SEPTETS: Final = 160
UCS2_MAX_UNITS: Final = 70
_GSM_EXTENSION: Final = frozenset("^{}\\[~]|")
_CALL_NUMBER_RE: Final = re.compile(r"\+?[0-9*#]{2,32}")
_SMS_NUMBER_RE: Final = re.compile(r"\+?[0-9]{2,20}")
_CALL_CODE_OUTCOME: Final = {
    "BUSY": CallOutcome.BUSY,
    "NO ANSWER": CallOutcome.NO_ANSWER,
    "NO CARRIER": CallOutcome.NO_CARRIER,
    "NO DIALTONE": CallOutcome.NO_DIALTONE,
}


def mask_number(number: str) -> str:
    """``"+821012345678"`` -> ``"***5678"`` (for logs)."""
    return "***" + number[-4:] if len(number) > 4 else "***"


def ucs2_hex(text: str) -> str:
    """Text as the UCS2 hex string text-mode SMS expects (UTF-16BE, uppercase)."""
    return text.encode("utf-16-be").hex().upper()


def rssi_to_dbm(rssi: int) -> int | None:
    """``+CSQ`` rssi (0..31) to dBm; 99 or anything out of range -> ``None``."""
    return -113 + 2 * rssi if 0 <= rssi <= 31 else None


def gsm_text(text: str) -> str:
    """Make ASCII text safe for text-mode input: CR would re-prompt, Ctrl-Z would send and
    ESC would abort, so CR/CRLF become LF and other control characters become spaces."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return "".join(c if c == "\n" or 0x20 <= ord(c) < 0x7F else " " for c in text)


def _fields(line: str) -> list[str]:
    return [f.strip() for f in line.split(":", 1)[1].split(",")] if ":" in line else []


def parse_registration(lines: list[str], prefix: str) -> int | None:
    """Registration stat from a ``+CREG?`` / ``+CEREG?`` reply (``+CREG: n,stat[,...]``)."""
    for line in lines:
        if not line.upper().startswith(prefix + ":"):
            continue
        f = _fields(line)
        if len(f) >= 2 and f[0].isdigit() and f[1].isdigit():
            return int(f[1])
    return None


def parse_csq(lines: list[str]) -> int | None:
    """Signal in dBm from a ``+CSQ: rssi,ber`` reply (``None`` when unknown)."""
    for line in lines:
        if line.upper().startswith("+CSQ:"):
            f = _fields(line)
            if f and f[0].isdigit():
                return rssi_to_dbm(int(f[0]))
    return None


def parse_clcc(lines: list[str]) -> list[int]:
    """Stats of the outgoing voice calls in a ``+CLCC`` reply (0 active, 1 held, 2 dialing,
    3 alerting); other calls and unparsable lines are ignored."""
    stats: list[int] = []
    for line in lines:
        if not line.upper().startswith("+CLCC:"):
            continue
        f = _fields(line)
        if len(f) >= 4 and f[1] == "0" and f[3] == "0" and f[2].isdigit():
            stats.append(int(f[2]))
    return stats


# --------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class _SmsRequest:
    request_id: str
    number: str
    text: str


@dataclass(frozen=True)
class _CallRequest:
    request_id: str
    number: str
    ring_timeout_s: float
    talk_s: float


_Request = _SmsRequest | _CallRequest


@dataclass
class _Exchange:
    command: str
    label: str
    dial: bool
    info: list[str] = field(default_factory=list)
    final: str | None = None
    prompt: bool = False

    @property
    def ok(self) -> bool:
        return self.final == "OK"


class _Stopped(Exception):
    """close() was called."""


class _Timeout(Exception):
    """The modem did not reply in time."""


class _PortError(Exception):
    """The serial port failed (unplugged, cannot open, write timeout)."""


_STARTING: Final = "starting"
_UP: Final = "up"
_DOWN: Final = "down"


# --------------------------------------------------------------------------- driver


class GsmModem:
    """AT-command modem driver with its own worker thread. See the module docstring for the
    threading rules; in short: every public method is thread-safe and returns at once, and
    results come back through ``listener`` on the worker thread.

    ``url`` is anything ``serial.serial_for_url`` opens (``/dev/ttyUSB2``, a pty path,
    ``socket://...``). The port is opened by the worker; failing to open it is a modem fault
    (retried with backoff), not an exception. ``monotonic`` drives every timeout (the
    serial read granularity, ``read_timeout_s``, is real time). ``name`` tags the logs.

    Call outcomes: ``answered`` (details ``completed``, ``dropped``, ``hung up by request``,
    ``modem driver closed``), else the result code that ended it, ``no_answer`` at
    ``ring_timeout_s`` (after ``ATH``), ``error`` (refused, invalid request, modem down,
    cancelled by :meth:`hangup`, closed), ``timeout`` (the modem stopped replying).
    """

    def __init__(
        self,
        url: str,
        listener: ModemListener,
        *,
        config: ModemConfig | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        name: str = "modem",
    ) -> None:
        self._url = url
        self._listener = listener
        self._cfg = config or ModemConfig()
        self._mono = monotonic
        self._name = name
        self._log = _log.bind(modem=name)
        # Shared between threads (guarded by _lock, or thread-safe by themselves).
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._hangups = 0
        self._cancelled: set[str] = set()
        self._health = ModemHealth(False, False, None, "not started", None)
        # Worker-thread state.
        self._ser: Any = None
        self._framer = LineFramer(self._cfg.max_line)
        self._exchange: _Exchange | None = None
        self._abandoned: _Exchange | None = None  # latest command, if left without a reply
        self._call_active = False
        self._call_codes: list[str] = []
        self._answered_at: float | None = None
        self._hangup_timed_out: str | None = None
        self._state = _STARTING
        self._down_reason = ""
        self._backoff = self._cfg.reinit_backoff_s
        self._next_reinit = 0.0
        self._next_check = 0.0
        self._stray = 0

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        """Start the worker (it opens the port and initialises the modem). Idempotent."""
        with self._lock:
            if self._closed:
                raise RuntimeError("GsmModem.start() after close()")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"modem-{self._name}", daemon=True
            )
            self._thread.start()

    def close(self) -> None:
        """Stop the worker: a call in progress is hung up (best effort), queued requests are
        answered with an error, the port is closed. Returns in well under a second.
        Idempotent; safe from any thread, including inside a listener callback."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._stop.set()
        if thread is None:
            self._reject_queued("modem driver closed")
            return
        if thread is not threading.current_thread():
            thread.join(self._cfg.close_join_timeout_s)
            if thread.is_alive():
                self._log.warning("modem_close_timeout")

    def send_sms(self, request_id: str, number: str, text: str) -> None:
        """Queue a text-mode SMS; the result comes as ``on_sms_result(request_id, ok,
        detail)`` with detail = the message reference, or the error."""
        self._submit(_SmsRequest(request_id, number, text))

    def call(
        self, request_id: str, number: str, ring_timeout_s: float = 30, talk_s: float = 20
    ) -> None:
        """Queue a voice call: ring up to ``ring_timeout_s``, once answered keep it
        ``talk_s`` then hang up. Result: ``on_call_result(request_id, outcome, detail)``."""
        self._submit(_CallRequest(request_id, number, float(ring_timeout_s), float(talk_s)))

    def cancel(self, request_id: str) -> None:
        """Drop a queued request that has not started yet; it is answered as failed with
        detail ``cancelled``. A request already running is not affected (see hangup)."""
        with self._lock:
            self._cancelled.add(request_id)

    def hangup(self) -> None:
        """End the call in progress now (or send ``ATH`` if there is none)."""
        with self._lock:
            self._hangups += 1
        self._wake()

    def health(self) -> ModemHealth:
        """The latest health snapshot (thread-safe, never blocks on the modem)."""
        with self._lock:
            return self._health

    @property
    def garbage_lines(self) -> int:
        """Lines dropped by the framer as garbage (noise, overlong) since start."""
        return self._framer.garbage

    # ------------------------------------------------------------------ request plumbing

    def _submit(self, req: _Request) -> None:
        with self._lock:
            closed = self._closed
            if not closed:
                self._requests.put(req)
        if closed:
            self._reject(req, "modem driver closed")
        else:
            self._wake()

    def _wake(self) -> None:
        """Interrupt the worker's idle serial read so a new request starts now instead of
        after up to read_timeout_s (an alarm's SMS should not wait 50 ms for nothing)."""
        ser = self._ser
        cancel = getattr(ser, "cancel_read", None)
        if cancel is not None:
            try:
                cancel()
            except Exception:
                pass

    def _pop_request(self) -> _Request | None:
        while True:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return None
            with self._lock:
                cancelled = req.request_id in self._cancelled
                self._cancelled.discard(req.request_id)
            if not cancelled:
                return req
            self._reject(req, "cancelled")

    def _reject_queued(self, detail: str) -> None:
        while (req := self._pop_request()) is not None:
            self._reject(req, detail)

    def _reject(self, req: _Request, detail: str) -> None:
        self._log.info("modem_request_rejected", request_id=req.request_id, detail=detail)
        if isinstance(req, _SmsRequest):
            self._report_sms(req.request_id, False, detail)
        else:
            self._report_call(req.request_id, CallOutcome.ERROR, detail)

    def _take_hangup(self) -> bool:
        with self._lock:
            pending, self._hangups = self._hangups > 0, 0
        return pending

    # ------------------------------------------------------------------ listener calls

    def _notify(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:
            self._log.exception("modem_listener_failed", callback=what)

    def _report_sms(self, request_id: str, ok: bool, detail: str) -> None:
        self._notify("on_sms_result", lambda: self._listener.on_sms_result(request_id, ok, detail))

    def _report_call(self, request_id: str, outcome: CallOutcome, detail: str) -> None:
        self._log.info("modem_call_result", request_id=request_id, outcome=str(outcome))
        self._notify(
            "on_call_result", lambda: self._listener.on_call_result(request_id, outcome, detail)
        )

    def _set_health(self, health: ModemHealth) -> None:
        with self._lock:
            self._health = health
        self._notify("on_health", lambda: self._listener.on_health(health))

    # ------------------------------------------------------------------ worker loop

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    self._step()
                except _Stopped:
                    break
                except _PortError as exc:
                    self._close_port()
                    self._fault(f"serial port error: {exc}")
                except Exception:
                    self._log.exception("modem_worker_error")
                    self._stop.wait(0.1)
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        try:
            self._reject_queued("modem driver closed")
            self._close_port()
            with self._lock:
                self._health = ModemHealth(False, False, None, "closed", self._health.checked_at)
        except Exception:
            self._log.exception("modem_shutdown_error")

    def _step(self) -> None:
        if self._state == _STARTING:
            self._attempt_init()
            return
        if self._state == _DOWN:
            self._reject_queued(f"modem down: {self._down_reason}")
            self._take_hangup()
            if self._mono() >= self._next_reinit:
                self._attempt_init()
            else:
                self._pump()
            return
        if self._take_hangup():
            self._hangup_idle()
            return
        req = self._pop_request()
        if req is not None:
            if isinstance(req, _SmsRequest):
                self._do_sms(req)
            else:
                self._do_call(req)
            return
        if self._mono() >= self._next_check:
            self._check_health()
            return
        self._pump()

    # ------------------------------------------------------------------ port I/O

    def _open_port(self) -> None:
        if self._ser is not None:
            return
        try:
            self._ser = serial.serial_for_url(
                self._url,
                baudrate=self._cfg.baudrate,
                timeout=self._cfg.read_timeout_s,
                write_timeout=self._cfg.write_timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise _PortError(f"cannot open {self._url}: {exc}") from exc
        self._framer.reset()
        self._log.info("modem_port_open", url=self._url)

    def _close_port(self) -> None:
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                self._log.exception("modem_port_close_failed")

    def _write(self, data: bytes) -> None:
        if self._ser is None:
            raise _PortError("port not open")
        try:
            self._ser.write(data)
        except (serial.SerialException, OSError) as exc:
            raise _PortError(str(exc)) from exc

    def _pump(self) -> None:
        """Read what arrives within one read timeout and dispatch it."""
        if self._ser is None:
            self._stop.wait(self._cfg.read_timeout_s)
            return
        try:
            data = self._ser.read(self._ser.in_waiting or 1)
        except (serial.SerialException, OSError) as exc:
            raise _PortError(str(exc)) from exc
        if data:
            for frame in self._framer.feed(data):
                self._dispatch(frame)
        if self._state == _DOWN:
            self._reject_queued(f"modem down: {self._down_reason}")

    def _dispatch(self, frame: str) -> None:
        ex = self._exchange
        if frame == PROMPT:
            if ex is not None:
                ex.prompt = True
            else:
                self._stray += 1
            return
        if self._state == _DOWN:  # it talks again (e.g. "RDY" after a reboot): retry now
            self._next_reinit = min(self._next_reinit, self._mono())
        kind = classify_line(frame, ex.command if ex else None, call_active=self._call_active)
        if kind is LineKind.URC:
            self._log.debug("modem_urc", urc=frame.split(":", 1)[0])
            self._notify("on_urc", lambda: self._listener.on_urc(frame))
        elif kind is LineKind.CALL_CODE and (ex is None or not ex.dial):
            self._call_codes.append(frame)  # result of the call in progress
        elif kind is LineKind.STRAY or ex is None:
            self._stray += 1
            self._log.debug("modem_stray_line", line=frame[:16])
        elif kind in (LineKind.FINAL_OK, LineKind.FINAL_ERROR, LineKind.CALL_CODE):
            ex.final = frame
        elif kind is LineKind.INFO:
            ex.info.append(frame)
        # ECHO: nothing to do

    # ------------------------------------------------------------------ commands

    def _begin(self, command: str, label: str | None = None) -> _Exchange:
        ex = _Exchange(command, label or command, is_dial_command(command))
        self._abandoned = None
        self._exchange = ex
        self._write(command.encode("ascii") + b"\r")
        return ex

    def _await(
        self,
        ex: _Exchange,
        timeout: float,
        *,
        until_prompt: bool = False,
        ignore_stop: bool = False,
    ) -> None:
        deadline = self._mono() + timeout
        while True:
            if ex.final is not None or (until_prompt and ex.prompt):
                return
            if not ignore_stop and self._stop.is_set():
                raise _Stopped
            if self._mono() >= deadline:
                raise _Timeout(f"no reply to {ex.label} within {timeout:g}s")
            self._pump()

    def _command(
        self,
        command: str,
        timeout: float | None = None,
        *,
        label: str | None = None,
        ignore_stop: bool = False,
    ) -> _Exchange:
        """Send one command and wait for its final result. Raises _Timeout/_PortError."""
        try:
            ex = self._begin(command, label)
            self._await(ex, timeout or self._cfg.command_timeout_s, ignore_stop=ignore_stop)
            return ex
        finally:
            if self._exchange is not None and self._exchange.final is None:
                self._abandoned = self._exchange
            self._exchange = None

    # ------------------------------------------------------------------ init, faults, health

    def _attempt_init(self) -> None:
        try:
            self._open_port()
            self._write(_ESC)  # leave a half-written SMS, if the modem was left in one
            self._command("AT")  # resync; ERROR is fine (ESC may have garbled the line)
            for cmd in ("ATE0", "AT+CMEE=1", "AT+CVHU=0"):
                ex = self._command(cmd)
                if not ex.ok:
                    self._log.info("modem_init_refused", command=cmd, reply=ex.final)
        except _Timeout as exc:
            self._fault(f"modem not answering: {exc}")
            return
        except _PortError as exc:
            self._close_port()
            self._fault(f"serial port error: {exc}")
            return
        recovered = self._state == _DOWN
        self._state = _UP
        self._backoff = self._cfg.reinit_backoff_s
        self._next_check = self._mono()
        if recovered:
            self._log.warning("modem_recovered")
            self._notify("on_modem_recovered", self._listener.on_modem_recovered)
        else:
            self._log.info("modem_ready")

    def _fault(self, reason: str) -> None:
        """Enter (or stay in) the fault state; report only the first time."""
        now = self._mono()
        if self._state != _DOWN:
            self._state = _DOWN
            self._down_reason = reason
            self._backoff = self._cfg.reinit_backoff_s
            self._log.warning("modem_fault", reason=reason)
            with self._lock:
                checked_at = self._health.checked_at
            self._set_health(ModemHealth(False, False, None, reason, checked_at))
            self._notify("on_modem_fault", lambda: self._listener.on_modem_fault(reason))
            self._reject_queued(f"modem down: {reason}")
        else:
            self._backoff = min(self._backoff * 2, self._cfg.reinit_backoff_max_s)
            self._log.debug("modem_reinit_failed", reason=reason, retry_in=self._backoff)
        self._next_reinit = now + self._backoff

    def _suspect(self, reason: str) -> bool:
        """A command timed out: probe with ``AT``; no answer -> fault. True if alive."""
        try:
            self._command("AT")
        except _Timeout:
            self._fault(reason)
            return False
        self._log.warning("modem_transient_timeout", reason=reason)
        return True

    def _check_health(self) -> None:
        errors: list[str] = []
        try:
            ex = self._command("AT+CREG?")
            if not ex.ok:
                errors.append(f"AT+CREG?: {ex.final}")
            stat = parse_registration(ex.info, "+CREG")
            registered = stat in (1, 5)
            if not registered:
                ex = self._command("AT+CEREG?")  # LTE-only modules; ERROR on 2G ones
                registered = parse_registration(ex.info, "+CEREG") in (1, 5)
            ex = self._command("AT+CSQ")
            if not ex.ok:
                errors.append(f"AT+CSQ: {ex.final}")
            dbm = parse_csq(ex.info)
        except _Timeout as exc:
            self._next_check = self._mono() + self._cfg.check_interval_s
            self._suspect(str(exc))
            return
        now = self._mono()
        self._next_check = now + self._cfg.check_interval_s
        self._set_health(ModemHealth(True, registered, dbm, "; ".join(errors) or None, now))

    def _hangup_idle(self) -> None:
        try:
            self._command("ATH")
        except _Timeout as exc:
            self._suspect(str(exc))

    # ------------------------------------------------------------------ SMS

    def _do_sms(self, req: _SmsRequest) -> None:
        log = self._log.bind(request_id=req.request_id, number=mask_number(req.number))
        log.info("modem_sms_start", length=len(req.text))
        restore = False
        try:
            ok, detail, restore = self._sms_steps(req)
        except _Stopped:
            self._report_sms(req.request_id, False, "modem driver closed")
            raise
        except _Timeout as exc:
            log.warning("modem_sms_timeout", reason=str(exc))
            self._report_sms(req.request_id, False, f"timeout: {exc}")
            self._suspect(str(exc))
            return
        except _PortError as exc:
            self._report_sms(req.request_id, False, f"serial port error: {exc}")
            raise
        except Exception as exc:
            self._report_sms(req.request_id, False, f"internal error: {exc!r}")
            raise
        log.info("modem_sms_result", ok=ok, detail=detail if ok else detail[:40])
        self._report_sms(req.request_id, ok, detail)
        if restore:
            try:  # later replies (+CLCC, +CLIP numbers) are easier to read in GSM
                self._command('AT+CSCS="GSM"')
            except _Timeout as exc:
                self._suspect(str(exc))

    def _sms_steps(self, req: _SmsRequest) -> tuple[bool, str, bool]:
        """Returns (ok, detail, charset needs restoring)."""
        if not _SMS_NUMBER_RE.fullmatch(req.number):
            return False, "invalid number (expected +digits)", False
        if req.text.isascii():
            body = gsm_text(req.text)
            septets = len(body) + sum(c in _GSM_EXTENSION for c in body)
            if septets > GSM_MAX_SEPTETS:
                return False, f"text too long: {septets} > {GSM_MAX_SEPTETS} GSM septets", False
            charset, csmp = self._cfg.ascii_charset, "17,167,0,0"
            dest, payload = req.number, body.encode("ascii")
        else:
            units = len(req.text.encode("utf-16-be")) // 2
            if units > UCS2_MAX_UNITS:
                return False, f"text too long: {units} > {UCS2_MAX_UNITS} UCS2 characters", False
            charset, csmp = "UCS2", "17,167,0,8"
            dest, payload = ucs2_hex(req.number), ucs2_hex(req.text).encode("ascii")
        ucs2 = charset == "UCS2"

        ex = self._command("AT+CMGF=1")
        if not ex.ok:
            return False, f"AT+CMGF=1 refused: {ex.final}", False
        ex = self._command(f'AT+CSCS="{charset}"')
        if not ex.ok:
            return False, f"AT+CSCS={charset} refused: {ex.final}", False
        ex = self._command(f"AT+CSMP={csmp}")
        if not ex.ok:
            if ucs2:
                return False, f"AT+CSMP={csmp} refused: {ex.final}", True
            self._log.info("modem_csmp_refused", reply=ex.final)

        label = f'AT+CMGS="{mask_number(req.number)}"'
        try:
            ex = self._begin(f'AT+CMGS="{dest}"', label)
            self._await(ex, self._cfg.prompt_timeout_s, until_prompt=True)
            if ex.final is not None:
                return False, ex.final, ucs2
            self._write(payload + _CTRL_Z)
            try:
                self._await(ex, self._cfg.sms_timeout_s)
            except (_Timeout, _Stopped):
                self._write(_ESC)
                raise
        finally:
            self._exchange = None
        if not ex.ok:
            return False, ex.final or "ERROR", ucs2
        ref = next((_fields(i)[0] for i in ex.info if i.upper().startswith("+CMGS:")), "")
        return True, ref, ucs2

    # ------------------------------------------------------------------ voice calls

    def _do_call(self, req: _CallRequest) -> None:
        log = self._log.bind(request_id=req.request_id, number=mask_number(req.number))
        log.info("modem_call_start", ring_timeout_s=req.ring_timeout_s, talk_s=req.talk_s)
        self._call_codes.clear()
        self._answered_at = None
        self._hangup_timed_out = None
        try:
            outcome, detail = self._call_steps(req)
        except _Stopped:
            if self._call_active:
                self._hangup_best_effort()
            self._report_call(req.request_id, self._outcome_if_answered(), "modem driver closed")
            raise
        except _Timeout as exc:
            log.warning("modem_call_timeout", reason=str(exc))
            answered = self._answered_at is not None
            self._report_call(
                req.request_id,
                CallOutcome.ANSWERED if answered else CallOutcome.TIMEOUT,
                f"timeout: {exc}",
            )
            self._call_active = False
            if self._suspect(str(exc)):
                self._hangup_best_effort()
            return
        except _PortError as exc:
            self._report_call(req.request_id, self._outcome_if_answered(), f"serial: {exc}")
            raise
        except Exception as exc:
            self._report_call(req.request_id, self._outcome_if_answered(), f"internal: {exc!r}")
            raise
        finally:
            self._call_active = False
            self._call_codes.clear()
        self._report_call(req.request_id, outcome, detail)
        if self._hangup_timed_out is not None:
            self._suspect(self._hangup_timed_out)

    def _outcome_if_answered(self) -> CallOutcome:
        return CallOutcome.ANSWERED if self._answered_at is not None else CallOutcome.ERROR

    def _hangup_best_effort(self) -> None:
        """ATH within close_hangup_timeout_s. If the latest command was abandoned (close()
        interrupted it), let its reply arrive first: its late ``OK`` would otherwise be
        taken for the ``ATH`` reply."""
        budget = self._cfg.close_hangup_timeout_s
        deadline = self._mono() + budget
        stale, self._abandoned = self._abandoned, None
        try:
            if stale is not None:
                self._exchange = stale
                try:
                    self._await(stale, budget / 2, ignore_stop=True)
                except _Timeout:
                    pass
                finally:
                    self._exchange = None
            self._command("ATH", max(deadline - self._mono(), 0.05), ignore_stop=True)
        except (_Timeout, _PortError):
            pass

    def _hang_up(self) -> None:
        """ATH at the end of a call; a timeout is handled after the result is reported."""
        try:
            ex = self._command("ATH")
            if not ex.ok:
                self._log.warning("modem_hangup_refused", reply=ex.final)
        except _Timeout as exc:
            self._hangup_timed_out = str(exc)

    def _call_steps(self, req: _CallRequest) -> tuple[CallOutcome, str]:
        if not _CALL_NUMBER_RE.fullmatch(req.number):
            return CallOutcome.ERROR, "invalid number (expected +digits)"
        if not (req.ring_timeout_s > 0 and req.talk_s >= 0):
            return CallOutcome.ERROR, "invalid ring_timeout_s / talk_s"
        t0 = self._mono()
        ex = self._command(
            f"ATD{req.number};", self._cfg.dial_timeout_s, label=f"ATD{mask_number(req.number)};"
        )
        if ex.final in _CALL_CODE_OUTCOME:
            return _CALL_CODE_OUTCOME[ex.final], ex.final
        if not ex.ok:
            return CallOutcome.ERROR, ex.final or "ERROR"
        self._call_active = True
        return self._supervise_call(req, t0)

    def _supervise_call(self, req: _CallRequest, t0: float) -> tuple[CallOutcome, str]:
        cfg = self._cfg
        next_poll = self._mono() + min(cfg.clcc_interval_s, 0.2)
        while True:
            if self._stop.is_set():
                raise _Stopped
            answered = self._answered_at is not None
            if self._take_hangup():
                self._hang_up()
                if answered:
                    return CallOutcome.ANSWERED, "hung up by request"
                return CallOutcome.ERROR, "cancelled by hangup()"
            if self._call_codes:
                code = self._call_codes[0]
                if answered:
                    return CallOutcome.ANSWERED, "dropped"
                return _CALL_CODE_OUTCOME[code], code
            now = self._mono()
            if self._answered_at is not None and now - self._answered_at >= req.talk_s:
                self._hang_up()
                return CallOutcome.ANSWERED, "completed"
            if not answered and now - t0 >= req.ring_timeout_s:
                self._hang_up()
                return CallOutcome.NO_ANSWER, f"not answered within {req.ring_timeout_s:g}s"
            if now < next_poll:
                self._pump()
                continue
            next_poll = now + cfg.clcc_interval_s
            ex = self._command("AT+CLCC")
            if not ex.ok:
                self._log.debug("modem_clcc_refused", reply=ex.final)
                continue
            stats = [s for s in parse_clcc(ex.info) if s in (0, 1, 2, 3)]
            if not stats:
                return self._call_vanished(answered)
            if self._answered_at is None and any(s in (0, 1) for s in stats):
                self._answered_at = self._mono()
                self._log.info("modem_call_answered")

    def _call_vanished(self, answered: bool) -> tuple[CallOutcome, str]:
        """+CLCC lists no call: wait briefly for the result code that explains why."""
        if answered:
            return CallOutcome.ANSWERED, "dropped"
        deadline = self._mono() + self._cfg.end_grace_s
        while not self._call_codes and self._mono() < deadline:
            if self._stop.is_set():
                raise _Stopped
            self._pump()
        if self._call_codes:
            code = self._call_codes[0]
            return _CALL_CODE_OUTCOME[code], code
        return CallOutcome.NO_CARRIER, "call ended (no result code)"
