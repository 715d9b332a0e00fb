"""An AT-command serial worker: AT dialogues over a :class:`~drivers.serialworker.SerialWorker`'s
port, one command in flight at a time. :class:`drivers.modem.GsmModem` builds its voice-call,
SMS and health procedures on it.

* :meth:`AtCommandWorker._command` writes a command and pumps the port until its final
  result (``OK``, ``ERROR``, ``+CME ERROR: n``, a call result code for ``ATD``) or a timeout
  (:class:`AtTimeout`). :meth:`AtCommandWorker._begin` / :meth:`AtCommandWorker._await` are
  its two halves, for dialogues with a prompt in between (``AT+CMGS``).
* :meth:`AtCommandWorker._pump` reads what arrives within one read timeout, frames it
  (:class:`~drivers.at_protocol.LineFramer`) and files every line
  (:func:`~drivers.at_protocol.classify_line`): information and final result to the
  exchange in flight, call result codes of the call in progress to ``_call_codes``,
  unsolicited result codes to :meth:`AtCommandWorker._on_urc`, late replies counted as stray.
* Waiting raises :class:`~drivers.serialworker.WorkerStopped` once :meth:`close` was called
  (unless told to ignore it, for a best-effort hang-up on the way out); port errors raise
  :class:`~drivers.serialworker.PortFailure`.

Everything here runs on the worker thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from drivers.at_protocol import PROMPT, LineFramer, LineKind, classify_line, is_dial_command
from drivers.serialworker import SerialWorker, WorkerStopped


class AtTimeout(Exception):
    """The modem did not reply in time."""


@dataclass
class Exchange:
    """One AT command in flight: what came back for it so far."""

    command: str
    label: str  # for logs and errors (a number in it masked)
    dial: bool
    info: list[str] = field(default_factory=list)
    final: str | None = None
    prompt: bool = False

    @property
    def ok(self) -> bool:
        return self.final == "OK"


class AtCommandWorker(SerialWorker):
    """A serial worker speaking AT commands; see the module docstring. ``max_line`` bounds a
    line (longer ones are garbage); ``command_timeout`` is the default reply timeout of a
    command; every other argument goes to :class:`~drivers.serialworker.SerialWorker`."""

    def __init__(self, url: str, *, max_line: int, command_timeout: float, **worker: Any) -> None:
        super().__init__(url, **worker)
        self._command_timeout = command_timeout
        # Worker-thread state.
        self._framer = LineFramer(max_line)
        self._exchange: Exchange | None = None
        self._abandoned: Exchange | None = None  # latest command, if left without a reply
        self._call_active = False  # a voice call set up by this driver is in progress
        self._call_codes: list[str] = []  # result codes of that call (NO CARRIER, BUSY, ...)
        self._stray = 0

    @property
    def garbage_lines(self) -> int:
        """Lines dropped by the framer as garbage (noise, overlong) since start."""
        return self._framer.garbage

    # ------------------------------------------------------------------ hooks

    def _heard(self) -> None:
        """A line (not a prompt) arrived: the modem talks."""

    def _on_urc(self, line: str) -> None:
        """An unsolicited result code (``RING``, ``+CLIP: ...``)."""

    # ------------------------------------------------------------------ port I/O

    def _port_opened(self) -> None:
        self._framer.reset()
        self._log.info(f"{self._name}_port_open", url=self._url)

    def _pump(self) -> None:
        """Read what arrives within one read timeout and dispatch it."""
        if self._port is None:
            self._wait(self._read_timeout)
            return
        data = self._read_available()
        if data:
            for frame in self._framer.feed(data):
                self._dispatch(frame)

    def _dispatch(self, frame: str) -> None:
        ex = self._exchange
        if frame == PROMPT:
            if ex is not None:
                ex.prompt = True
            else:
                self._stray += 1
            return
        self._heard()
        kind = classify_line(frame, ex.command if ex else None, call_active=self._call_active)
        if kind is LineKind.URC:
            self._log.debug(f"{self._name}_urc", urc=frame.split(":", 1)[0])
            self._on_urc(frame)
        elif kind is LineKind.CALL_CODE and (ex is None or not ex.dial):
            self._call_codes.append(frame)  # result of the call in progress
        elif kind is LineKind.STRAY or ex is None:
            self._stray += 1
            self._log.debug(f"{self._name}_stray_line", line=frame[:16])
        elif kind in (LineKind.FINAL_OK, LineKind.FINAL_ERROR, LineKind.CALL_CODE):
            ex.final = frame
        elif kind is LineKind.INFO:
            ex.info.append(frame)
        # ECHO: nothing to do

    # ------------------------------------------------------------------ commands

    def _begin(self, command: str, label: str | None = None) -> Exchange:
        ex = Exchange(command, label or command, is_dial_command(command))
        self._abandoned = None
        self._exchange = ex
        self._write(command.encode("ascii") + b"\r")
        return ex

    def _await(
        self,
        ex: Exchange,
        timeout: float,
        *,
        until_prompt: bool = False,
        ignore_stop: bool = False,
    ) -> None:
        deadline = self._monotonic() + timeout
        while True:
            if ex.final is not None or (until_prompt and ex.prompt):
                return
            if not ignore_stop and self._stopping():
                raise WorkerStopped
            if self._monotonic() >= deadline:
                raise AtTimeout(f"no reply to {ex.label} within {timeout:g}s")
            self._pump()

    def _command(
        self,
        command: str,
        timeout: float | None = None,
        *,
        label: str | None = None,
        ignore_stop: bool = False,
    ) -> Exchange:
        """Send one command and wait for its final result. Raises AtTimeout/PortFailure."""
        try:
            ex = self._begin(command, label)
            self._await(ex, timeout or self._command_timeout, ignore_stop=ignore_stop)
            return ex
        finally:
            if self._exchange is not None and self._exchange.final is None:
                self._abandoned = self._exchange
            self._exchange = None
