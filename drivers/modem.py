"""GSM/LTE modem driver (fallback alarm channel): voice calls and SMS over AT commands.

Layers
------
* :mod:`drivers.at_protocol` (pure, fed bytes and lines; tested without any I/O): the line
  framer, the line classification (command replies, call result codes, URCs), the reply
  parsers and the SMS encoding. Its public names are re-exported here.
* :class:`~drivers.at_worker.AtCommandWorker`: AT dialogues (one command in flight) over a
  :class:`~drivers.serialworker.SerialWorker` (thread, port, reopen backoff, callback guard).
* :class:`GsmModem`: the procedures (init, health checks, voice calls, SMS) and the request
  queue; the interface types (:class:`~drivers.base.CallOutcome`,
  :class:`~drivers.base.ModemHealth`, :class:`~drivers.base.ModemListener`) live in
  :mod:`drivers.base` and are re-exported here.

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

Size: this file is over the ~500 lines the project aims for, on purpose. :class:`GsmModem` is
one state machine (starting -> up <-> down; one request at a time; a call supervised until it
ends) and its init, health, SMS and call procedures all share that state (the exchange in
flight, the request queue, the fault state, the call in progress). Split over files it would
be one machine spread thin, with nothing more testable on its own: everything pure is already
in :mod:`drivers.at_protocol`, the AT dialogue engine in :mod:`drivers.at_worker` and the
thread and port life cycle in :mod:`drivers.serialworker`.
"""

from __future__ import annotations

import queue
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import structlog

from drivers import at_protocol
from drivers.at_protocol import *  # noqa: F403  (re-export: the protocol's names stay here)
from drivers.at_protocol import (
    CALL_NUMBER_RE,
    CTRL_Z,
    ESC,
    fields,
    mask_number,
    parse_clcc,
    parse_csq,
    parse_registration,
    plan_sms,
)
from drivers.at_worker import AtCommandWorker, AtTimeout
from drivers.base import CallOutcome, ModemHealth, ModemListener
from drivers.serialworker import PortFailure, WorkerStopped

__all__ = [
    *at_protocol.__all__,
    "CallOutcome",
    "GsmModem",
    "ModemConfig",
    "ModemHealth",
    "ModemListener",
]

_log = structlog.get_logger(__name__)

_CALL_CODE_OUTCOME: Final = {
    "BUSY": CallOutcome.BUSY,
    "NO ANSWER": CallOutcome.NO_ANSWER,
    "NO CARRIER": CallOutcome.NO_CARRIER,
    "NO DIALTONE": CallOutcome.NO_DIALTONE,
}


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
        if self.reinit_backoff_max_s < self.reinit_backoff_s:
            raise ValueError("ModemConfig.reinit_backoff_max_s must be >= reinit_backoff_s")
        if self.close_hangup_timeout_s + 0.2 > 1.0:
            raise ValueError("ModemConfig.close_hangup_timeout_s must stay below 0.8 s")


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


_STARTING: Final = "starting"
_UP: Final = "up"
_DOWN: Final = "down"


# --------------------------------------------------------------------------- driver


class GsmModem(AtCommandWorker):
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
        cfg = config or ModemConfig()
        super().__init__(
            url,
            max_line=cfg.max_line,
            command_timeout=cfg.command_timeout_s,
            name="modem",
            thread_name=f"modem-{name}",
            log=_log.bind(modem=name),
            baudrate=cfg.baudrate,
            read_timeout=cfg.read_timeout_s,
            write_timeout=cfg.write_timeout_s,
            reopen_backoff=(cfg.reinit_backoff_s, cfg.reinit_backoff_max_s),
            monotonic=monotonic,
            close_timeout=cfg.close_join_timeout_s,
        )
        self._listener = listener
        self._cfg = cfg
        # Shared between threads (guarded by _lock, or thread-safe by themselves).
        self._requests: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._hangups = 0
        self._cancelled: set[str] = set()
        self._health = ModemHealth(False, False, None, "not started", None)
        # Worker-thread state.
        self._answered_at: float | None = None
        self._hangup_timed_out: str | None = None
        self._state = _STARTING
        self._down_reason = ""
        self._next_reinit = 0.0
        self._next_check = 0.0

    # ------------------------------------------------------------------ public API

    def close(self, timeout: float | None = None) -> None:
        """Stop the worker: a call in progress is hung up (best effort), queued requests are
        answered with an error, the port is closed. Returns in well under a second.
        Idempotent; safe from any thread, including inside a listener callback."""
        super().close(timeout)

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
        cancel = getattr(self._port, "cancel_read", None)
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

    def _report_sms(self, request_id: str, ok: bool, detail: str) -> None:
        self._emit("on_sms_result", lambda: self._listener.on_sms_result(request_id, ok, detail))

    def _report_call(self, request_id: str, outcome: CallOutcome, detail: str) -> None:
        self._log.info("modem_call_result", request_id=request_id, outcome=str(outcome))
        self._emit(
            "on_call_result", lambda: self._listener.on_call_result(request_id, outcome, detail)
        )

    def _set_health(self, health: ModemHealth) -> None:
        with self._lock:
            self._health = health
        self._emit("on_health", lambda: self._listener.on_health(health))

    # ------------------------------------------------------------------ worker loop

    def _closed_before_start(self) -> None:
        self._reject_queued("modem driver closed")

    def _on_stop(self) -> None:
        self._reject_queued("modem driver closed")
        with self._lock:
            self._health = ModemHealth(False, False, None, "closed", self._health.checked_at)

    def _port_failed(self, exc: BaseException) -> None:
        self._close_port()
        self._fault(f"serial port error: {exc}")

    def _step(self) -> None:
        if self._state == _STARTING:
            self._attempt_init()
            return
        if self._state == _DOWN:
            self._reject_queued(f"modem down: {self._down_reason}")
            self._take_hangup()
            if self._monotonic() >= self._next_reinit:
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
        if self._monotonic() >= self._next_check:
            self._check_health()
            return
        self._pump()

    # ------------------------------------------------------------------ port I/O hooks

    def _pump(self) -> None:
        super()._pump()
        if self._state == _DOWN:
            self._reject_queued(f"modem down: {self._down_reason}")

    def _heard(self) -> None:
        if self._state == _DOWN:  # it talks again (e.g. "RDY" after a reboot): retry now
            self._next_reinit = min(self._next_reinit, self._monotonic())

    def _on_urc(self, line: str) -> None:
        self._emit("on_urc", lambda: self._listener.on_urc(line))

    # ------------------------------------------------------------------ init, faults, health

    def _attempt_init(self) -> None:
        try:
            try:
                self._open_port()
            except PortFailure as exc:
                raise PortFailure(f"cannot open {self._url}: {exc}") from exc
            self._write(ESC)  # leave a half-written SMS, if the modem was left in one
            self._command("AT")  # resync; ERROR is fine (ESC may have garbled the line)
            for cmd in ("ATE0", "AT+CMEE=1", "AT+CVHU=0"):
                ex = self._command(cmd)
                if not ex.ok:
                    self._log.info("modem_init_refused", command=cmd, reply=ex.final)
        except AtTimeout as exc:
            self._fault(f"modem not answering: {exc}")
            return
        # A PortFailure goes up to the worker loop: _port_failed closes the port and faults.
        recovered = self._state == _DOWN
        self._state = _UP
        self._backoff.reset()
        self._next_check = self._monotonic()
        if recovered:
            self._log.warning("modem_recovered")
            self._emit("on_modem_recovered", self._listener.on_modem_recovered)
        else:
            self._log.info("modem_ready")

    def _fault(self, reason: str) -> None:
        """Enter (or stay in) the fault state; report only the first time."""
        now = self._monotonic()
        if self._state != _DOWN:
            self._state = _DOWN
            self._down_reason = reason
            self._backoff.reset()
            self._log.warning("modem_fault", reason=reason)
            with self._lock:
                checked_at = self._health.checked_at
            self._set_health(ModemHealth(False, False, None, reason, checked_at))
            self._emit("on_modem_fault", lambda: self._listener.on_modem_fault(reason))
            self._reject_queued(f"modem down: {reason}")
        else:
            self._backoff.grow()
            self._log.debug("modem_reinit_failed", reason=reason, retry_in=self._backoff.delay)
        self._next_reinit = now + self._backoff.delay

    def _suspect(self, reason: str) -> bool:
        """A command timed out: probe with ``AT``; no answer -> fault. True if alive."""
        try:
            self._command("AT")
        except AtTimeout:
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
        except AtTimeout as exc:
            self._next_check = self._monotonic() + self._cfg.check_interval_s
            self._suspect(str(exc))
            return
        now = self._monotonic()
        self._next_check = now + self._cfg.check_interval_s
        self._set_health(ModemHealth(True, registered, dbm, "; ".join(errors) or None, now))

    def _hangup_idle(self) -> None:
        try:
            self._command("ATH")
        except AtTimeout as exc:
            self._suspect(str(exc))

    # ------------------------------------------------------------------ SMS

    def _do_sms(self, req: _SmsRequest) -> None:
        log = self._log.bind(request_id=req.request_id, number=mask_number(req.number))
        log.info("modem_sms_start", length=len(req.text))
        restore = False
        try:
            ok, detail, restore = self._sms_steps(req)
        except WorkerStopped:
            self._report_sms(req.request_id, False, "modem driver closed")
            raise
        except AtTimeout as exc:
            log.warning("modem_sms_timeout", reason=str(exc))
            self._report_sms(req.request_id, False, f"timeout: {exc}")
            self._suspect(str(exc))
            return
        except PortFailure as exc:
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
            except AtTimeout as exc:
                self._suspect(str(exc))

    def _sms_steps(self, req: _SmsRequest) -> tuple[bool, str, bool]:
        """Returns (ok, detail, charset needs restoring)."""
        try:
            plan = plan_sms(req.number, req.text, self._cfg.ascii_charset)
        except ValueError as exc:
            return False, str(exc), False
        ucs2 = plan.ucs2
        ex = self._command("AT+CMGF=1")
        if not ex.ok:
            return False, f"AT+CMGF=1 refused: {ex.final}", False
        ex = self._command(f'AT+CSCS="{plan.charset}"')
        if not ex.ok:
            return False, f"AT+CSCS={plan.charset} refused: {ex.final}", False
        ex = self._command(f"AT+CSMP={plan.csmp}")
        if not ex.ok:
            if ucs2:
                return False, f"AT+CSMP={plan.csmp} refused: {ex.final}", True
            self._log.info("modem_csmp_refused", reply=ex.final)

        label = f'AT+CMGS="{mask_number(req.number)}"'
        try:
            ex = self._begin(f'AT+CMGS="{plan.dest}"', label)
            self._await(ex, self._cfg.prompt_timeout_s, until_prompt=True)
            if ex.final is not None:
                return False, ex.final, ucs2
            self._write(plan.payload + CTRL_Z)
            try:
                self._await(ex, self._cfg.sms_timeout_s)
            except (AtTimeout, WorkerStopped):
                self._write(ESC)
                raise
        finally:
            self._exchange = None
        if not ex.ok:
            return False, ex.final or "ERROR", ucs2
        ref = next((fields(i)[0] for i in ex.info if i.upper().startswith("+CMGS:")), "")
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
        except WorkerStopped:
            if self._call_active:
                self._hangup_best_effort()
            self._report_call(req.request_id, self._outcome_if_answered(), "modem driver closed")
            raise
        except AtTimeout as exc:
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
        except PortFailure as exc:
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
        deadline = self._monotonic() + budget
        stale, self._abandoned = self._abandoned, None
        try:
            if stale is not None:
                self._exchange = stale
                try:
                    self._await(stale, budget / 2, ignore_stop=True)
                except AtTimeout:
                    pass
                finally:
                    self._exchange = None
            self._command("ATH", max(deadline - self._monotonic(), 0.05), ignore_stop=True)
        except (AtTimeout, PortFailure):
            pass

    def _hang_up(self) -> None:
        """ATH at the end of a call; a timeout is handled after the result is reported."""
        try:
            ex = self._command("ATH")
            if not ex.ok:
                self._log.warning("modem_hangup_refused", reply=ex.final)
        except AtTimeout as exc:
            self._hangup_timed_out = str(exc)

    def _call_steps(self, req: _CallRequest) -> tuple[CallOutcome, str]:
        if not CALL_NUMBER_RE.fullmatch(req.number):
            return CallOutcome.ERROR, "invalid number (expected +digits)"
        if not (req.ring_timeout_s > 0 and req.talk_s >= 0):
            return CallOutcome.ERROR, "invalid ring_timeout_s / talk_s"
        t0 = self._monotonic()
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
        next_poll = self._monotonic() + min(cfg.clcc_interval_s, 0.2)
        while True:
            if self._stopping():
                raise WorkerStopped
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
            now = self._monotonic()
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
                self._answered_at = self._monotonic()
                self._log.info("modem_call_answered")

    def _call_vanished(self, answered: bool) -> tuple[CallOutcome, str]:
        """+CLCC lists no call: wait briefly for the result code that explains why."""
        if answered:
            return CallOutcome.ANSWERED, "dropped"
        deadline = self._monotonic() + self._cfg.end_grace_s
        while not self._call_codes and self._monotonic() < deadline:
            if self._stopping():
                raise WorkerStopped
            self._pump()
        if self._call_codes:
            code = self._call_codes[0]
            return _CALL_CODE_OUTCOME[code], code
        return CallOutcome.NO_CARRIER, "call ended (no result code)"
