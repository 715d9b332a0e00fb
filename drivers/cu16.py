"""Kerong CU16 ("KR-CU16", "CU12") serial lock-control boards: the bus driver.

The wire protocol (frame encoders, the incremental parser, the frame types) lives in
:mod:`drivers.cu16_protocol`, pure and tested by feeding it bytes; every public name of it is
re-exported here. :class:`Cu16Bus`, a :class:`~drivers.serialworker.SerialWorker`, owns one
serial port (device path, pty path or ``socket://host:port``), polls every configured board
from its own daemon thread and reports to a :class:`Cu16Listener`.

Threading rules
---------------
* Framing objects are not thread-safe; each parser belongs to one thread.
* :class:`Cu16Bus` public methods (``start``, ``unlock``, ``set_unlock_time``, ``stats``,
  ``close``) may be called from any thread. The serial port and all board state are touched
  only by the bus thread.
* Listener callbacks run **on the bus thread**. They must be cheap and must not block (hand
  the event to the core's queue and return). An exception raised by a callback is logged and
  swallowed; it never stops the bus.

There is no module-level mutable state: any number of buses can live in one process.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import structlog

from drivers import cu16_protocol
from drivers.base import Cu16Listener
from drivers.cu16_protocol import *  # noqa: F403  (re-export: the protocol's names stay here)
from drivers.cu16_protocol import (
    BAUDRATE,
    FRAME_LENGTHS,
    REPLY_STATUS,
    REPLY_UNLOCK_TIME,
    CommandFrame,
    Cu16Parser,
    Frame,
    StatusFrame,
    UnlockTimeFrame,
    check_board,
    check_int,
    check_lock,
    check_ms,
    encode_set_unlock_time,
    encode_status_query,
    encode_unlock,
    reply_cmd,
)
from drivers.errors import CoilSafetyError
from drivers.serialworker import SerialWorker

__all__ = [*cu16_protocol.__all__, "BoardSettings", "Cu16Bus", "Cu16Listener"]

log = structlog.get_logger(__name__)


# --------------------------------------------------------------------------- bus driver


@dataclass(frozen=True, slots=True)
class BoardSettings:
    """Per-board settings where field sources disagree.

    ``closed_bit``: the lock-feedback bit value that means "door closed/latched" (0 or 1).
    ``unlock_replies``: the board answers an unlock with a status frame; when False the bus
    re-queries status ``requery_delay`` after an unlock instead of waiting for a reply.
    ``pulse_ms``: the pulse time the board is assumed to use until :meth:`Cu16Bus.set_unlock_time`
    changes it (the bus spaces unlocks by it so two coils are never energised together)."""

    board_id: int
    closed_bit: int = 1
    unlock_replies: bool = True
    pulse_ms: int = 500

    def __post_init__(self) -> None:
        check_board(self.board_id)
        if self.closed_bit not in (0, 1) or isinstance(self.closed_bit, bool):
            raise ValueError(f"closed_bit must be 0 or 1, got {self.closed_bit!r}")
        check_ms(self.pulse_ms)


@dataclass(slots=True)
class _BoardState:
    settings: BoardSettings
    pulse_ms: int
    misses: int = 0
    faulted: bool = False
    answers: int = 0
    last: tuple[tuple[bool, ...], tuple[bool, ...]] | None = None
    requery_at: float | None = None


@dataclass(frozen=True, slots=True)
class _Unlock:
    board: int
    lock: int
    queued_at: float


@dataclass(frozen=True, slots=True)
class _SetTime:
    board: int
    ms: int
    queued_at: float


_Command: TypeAlias = _Unlock | _SetTime


@dataclass(slots=True)
class _Stats:
    polls: int = 0
    unlocks_sent: int = 0
    unlocks_expired: int = 0
    late_frames: int = 0


class Cu16Bus(SerialWorker):
    """One CU16 RS-485 bus (boards 0-9) driven from its own daemon thread.

    The thread opens the port (``serial.serial_for_url``: a device path, a pty path or
    ``socket://host:port``), then loops: pending commands first (unlock, set pulse time),
    then due re-queries, then one status poll per configured board every ``1/poll_hz`` s.
    One request is outstanding at a time (half duplex); each waits at most ``reply_timeout``
    for its reply. Between requests the thread blocks on a condition variable, so an idle bus
    costs almost no CPU.

    Safety: unlocks are spaced so that no two coils on the bus are energised at once (the
    board's pulse time plus ``coil_gap``, counted from the board's answer to the unlock when
    it answers: a board may fire well after the write); an unlock not sent within
    ``command_ttl`` seconds (e.g. the port is down) is dropped and logged, never sent late;
    ``set_unlock_time`` refuses pulses above ``max_pulse_ms``.

    Failures: a board that misses ``fault_after`` consecutive replies is reported once with
    ``on_board_fault`` and keeps being polled every cycle; its misses cost only its own
    ``reply_timeout``. If the port itself fails (or cannot be opened), every board is reported
    faulted (reason ``port error: ...``) and the port is reopened with exponential backoff
    (``reopen_backoff`` = (first, max) seconds; see :class:`~drivers.serialworker.SerialWorker`,
    which also runs the thread and guards the callbacks). No exception from I/O or the
    listener ends the thread.

    Clocks: callback timestamps come from ``monotonic`` (injectable, default
    ``time.monotonic``); scheduling, timeouts and coil spacing always use the real
    ``time.monotonic`` because they deal with real hardware.

    Threading: every public method is thread-safe. Callbacks run on the bus thread.
    """

    OPEN_FAILED = "port error"

    def __init__(
        self,
        url: str,
        boards: Sequence[BoardSettings | int],
        listener: Cu16Listener,
        *,
        poll_hz: float = 4.0,
        reply_timeout: float = 0.1,
        fault_after: int = 3,
        requery_delay: float = 0.03,
        coil_gap: float = 0.05,
        command_ttl: float = 5.0,
        max_pulse_ms: int = 1500,
        reopen_backoff: tuple[float, float] = (0.5, 30.0),
        write_timeout: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
        baudrate: int = BAUDRATE,
    ) -> None:
        settings = [b if isinstance(b, BoardSettings) else BoardSettings(b) for b in boards]
        if not settings:
            raise ValueError("boards must name at least one board")
        ids = [s.board_id for s in settings]
        if len(set(ids)) != len(ids):
            raise ValueError(f"boards must not repeat a board id, got {ids}")
        if not poll_hz > 0:
            raise ValueError(f"poll_hz must be > 0, got {poll_hz!r}")
        if not reply_timeout > 0:
            raise ValueError(f"reply_timeout must be > 0, got {reply_timeout!r}")
        check_int("fault_after", fault_after, 1, 1_000_000)
        if requery_delay < 0 or coil_gap < 0 or command_ttl <= 0:
            raise ValueError("requery_delay and coil_gap must be >= 0, command_ttl > 0")
        check_ms(max_pulse_ms)
        super().__init__(
            url,
            name="cu16",
            thread_name=f"cu16-bus[{url}]",
            log=log.bind(bus=url),
            baudrate=baudrate,
            read_timeout=reply_timeout,
            write_timeout=write_timeout,
            reopen_backoff=reopen_backoff,
            stable_s=0.0,  # every good open restarts the backoff
            monotonic=monotonic,
            close_timeout=2.0,
        )
        self._listener = listener
        self._period = 1.0 / poll_hz
        self._reply_timeout = reply_timeout
        self._fault_after = fault_after
        self._requery_delay = requery_delay
        self._coil_gap = coil_gap
        self._command_ttl = command_ttl
        self._max_pulse_ms = max_pulse_ms
        self._boards: dict[int, _BoardState] = {
            s.board_id: _BoardState(settings=s, pulse_ms=s.pulse_ms) for s in settings
        }

        # Shared with callers (guarded by _cond).
        self._commands: collections.deque[_Command] = collections.deque()
        self._wakeup = False

        # Bus-thread only.
        self._parser = Cu16Parser()
        self._garbage_reported = 0
        self._poll_pending: collections.deque[int] = collections.deque()
        self._next_cycle = 0.0
        self._coil_free_at = 0.0
        self._stats = _Stats()

    # ------------------------------------------------------------------ public API

    @property
    def boards(self) -> tuple[int, ...]:
        return tuple(self._boards)

    def unlock(self, board: int, lock: int) -> None:
        """Queue an unlock of ``lock`` (1-16) on ``board``. Returns at once; the bus thread
        sends it before the next poll, but never while another coil on the bus is still
        energised. ``on_unlock_sent`` confirms the write (with ``unlock_replies``, once the board
        answered or ``reply_timeout`` passed: the coil is on by then); the door state follows via
        ``on_status`` (a jammed lock fires but reports no change). An unlock that cannot be
        sent within ``command_ttl`` (port down, long coil queue) is dropped and logged, never
        sent late. Raises ValueError for a bad or unconfigured board/lock, RuntimeError after
        :meth:`close`."""
        self._check_configured(board)
        check_lock(lock)
        self._enqueue(_Unlock(board, lock, time.monotonic()))

    def set_unlock_time(self, board: int, ms: int) -> None:
        """Queue a 0x37 "set pulse time" for ``board`` (``ms`` in 10 ms steps). Raises
        ValueError for bad arguments and CoilSafetyError above ``max_pulse_ms``."""
        self._check_configured(board)
        check_ms(ms)
        if ms > self._max_pulse_ms:
            raise CoilSafetyError(
                f"unlock time {ms} ms exceeds the coil limit of {self._max_pulse_ms} ms "
                "(raise max_pulse_ms only for locks rated for it)"
            )
        self._enqueue(_SetTime(board, ms, time.monotonic()))

    def stats(self) -> dict[str, Any]:
        """A loose snapshot of counters (read without locking; for logs and tests)."""
        s = self._stats
        return {
            "polls": s.polls,
            "unlocks_sent": s.unlocks_sent,
            "unlocks_expired": s.unlocks_expired,
            "port_errors": self._port_errors,
            "listener_errors": self._listener_errors,
            "late_frames": s.late_frames,
            "frames": self._parser.frames,
            "garbage_bytes": self._parser.garbage_bytes,
            "bad_checksum": self._parser.bad_checksum,
            "boards": {
                b: {
                    "faulted": st.faulted,
                    "misses": st.misses,
                    "answers": st.answers,
                    "pulse_ms": st.pulse_ms,
                }
                for b, st in self._boards.items()
            },
        }

    # ------------------------------------------------------------------ caller side helpers

    def _check_configured(self, board: int) -> None:
        check_board(board)
        if board not in self._boards:
            raise ValueError(f"board {board} is not configured on bus {self._url}")

    def _enqueue(self, command: _Command) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("Cu16Bus is closed")
            self._commands.append(command)
            self._wakeup = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ bus thread

    def _start_fields(self) -> dict[str, Any]:
        return {"boards": list(self._boards), "period_s": self._period}

    def _port_opened(self) -> None:
        self._parser.discard()
        self._next_cycle = time.monotonic()
        self._poll_pending.clear()

    def _on_fault(self, reason: str) -> None:
        """The port failed (or cannot be opened): every board is faulted."""
        for board, st in self._boards.items():
            st.misses = max(st.misses, self._fault_after)
            st.requery_at = None
            if not st.faulted:
                self._set_fault(board, st, reason)

    def _serve(self) -> None:
        now = time.monotonic()
        command, wake_at = self._take_command(now)
        if command is not None:
            if isinstance(command, _Unlock):
                self._do_unlock(command)
            else:
                self._do_set_time(command)
            return
        due = [(st.requery_at, b) for b, st in self._boards.items() if st.requery_at is not None]
        if due:
            at, board = min(due)
            if at <= now:
                self._poll(board)
                return
            wake_at = min(wake_at, at)
        if self._poll_pending:
            self._poll(self._poll_pending.popleft())
            return
        if now >= self._next_cycle:
            self._poll_pending.extend(self._boards)
            self._next_cycle += self._period
            if self._next_cycle <= now:  # overran (slow/silent boards): skip, do not burst
                self._next_cycle = now + self._period
            return
        wake_at = min(wake_at, self._next_cycle)
        with self._cond:
            if not self._stop.is_set() and not self._wakeup:
                self._cond.wait(max(0.0, wake_at - time.monotonic()))

    def _take_command(self, now: float) -> tuple[_Command | None, float]:
        """First command that may go now (FIFO; unlocks wait for the coil), and when to look
        again otherwise. Drops commands older than ``command_ttl``."""
        wake_at = float("inf")
        with self._cond:
            self._wakeup = False
            for command in list(self._commands):
                if now - command.queued_at > self._command_ttl:
                    self._commands.remove(command)
                    self._expired(command, now)
                    continue
                if isinstance(command, _Unlock) and now < self._coil_free_at:
                    wake_at = min(
                        wake_at, self._coil_free_at, command.queued_at + self._command_ttl
                    )
                    continue
                self._commands.remove(command)
                return command, wake_at
        return None, wake_at

    def _expired(self, command: _Command, now: float) -> None:
        if isinstance(command, _Unlock):
            self._stats.unlocks_expired += 1
            self._log.warning(
                "cu16_unlock_expired",
                board=command.board,
                lock=command.lock,
                age_s=round(now - command.queued_at, 3),
            )
        else:
            self._log.warning("cu16_set_unlock_time_expired", board=command.board, ms=command.ms)

    # -- transactions

    def _send(self, request: bytes) -> None:
        """Half duplex: drain whatever arrived since the last request (late replies, noise),
        forget any partial frame, then write. Nothing read before the request can be part of
        its reply."""
        port = self._port
        if port.in_waiting:  # a byte count on a tty, 0/1 on socket://: drain without blocking
            port.timeout = 0
            for frame in self._parser.feed(port.read(4096)):
                self._stats.late_frames += 1
                self._log.debug("cu16_late_frame", frame=repr(frame))
        self._parser.discard()
        self._write(request)

    def _await(self, cmd: int, board: int) -> tuple[Frame | None, bool]:
        """Wait up to ``reply_timeout`` for a ``cmd`` reply from ``board``. Returns the frame
        (or None) and whether anything garbled arrived meanwhile."""
        port = self._port
        parser = self._parser
        garbage0, bad0 = parser.garbage_bytes, parser.bad_checksum
        expected = FRAME_LENGTHS[cmd]
        deadline = time.monotonic() + self._reply_timeout
        found: Frame | None = None
        while found is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                frames = parser.idle()  # the line is quiet: judge what is pending
            else:
                port.timeout = remaining
                want = max(1, port.in_waiting, expected - parser.pending)
                frames = parser.feed(port.read(want))
            for frame in frames:
                if found is None and frame.board == board and reply_cmd(frame) == cmd:
                    found = frame
                elif not (isinstance(frame, CommandFrame) and frame.board == board):
                    self._log.debug("cu16_unexpected_frame", frame=repr(frame), board=board)
            if remaining <= 0:
                break
        garbled = parser.garbage_bytes > garbage0 or parser.bad_checksum > bad0
        self._report_garbage()
        return found, garbled

    def _report_garbage(self) -> None:
        total = self._parser.garbage_bytes
        delta = total - self._garbage_reported
        if delta > 0:
            self._garbage_reported = total
            self._log.debug("cu16_garbage", count=delta, total=total)
            self._emit("on_garbage", lambda: self._listener.on_garbage(delta))

    def _poll(self, board: int) -> None:
        st = self._boards[board]
        st.requery_at = None
        self._stats.polls += 1
        self._send(encode_status_query(board))
        frame, garbled = self._await(REPLY_STATUS, board)
        self._handle_reply(board, st, frame, garbled)

    def _do_unlock(self, command: _Unlock) -> None:
        board, lock = command.board, command.lock
        st = self._boards[board]
        self._send(encode_unlock(board, lock))
        sent = time.monotonic()
        pulse_s = st.pulse_ms / 1000.0
        self._coil_free_at = sent + pulse_s + self._coil_gap
        self._stats.unlocks_sent += 1
        self._log.info("cu16_unlock_sent", board=board, lock=lock, pulse_ms=st.pulse_ms)
        replied: tuple[Frame | None, bool] | None = None
        if st.settings.unlock_replies:
            # The board answers after it has fired the coil, which may be well after the
            # write (a slow board, adapter or line). Once its answer is in (or the wait for
            # it is over) the coil is on: coil spacing and on_unlock_sent count from then.
            replied = self._await(REPLY_STATUS, board)
            self._coil_free_at = time.monotonic() + pulse_s + self._coil_gap
        t = self._monotonic()
        self._emit("on_unlock_sent", lambda: self._listener.on_unlock_sent(board, lock, t))
        if replied is not None:
            frame, garbled = replied
            self._handle_reply(board, st, frame, garbled)
            if frame is not None:
                return
        st.requery_at = sent + self._requery_delay

    def _do_set_time(self, command: _SetTime) -> None:
        board, ms = command.board, command.ms
        st = self._boards[board]
        self._send(encode_set_unlock_time(board, ms))
        frame, garbled = self._await(REPLY_UNLOCK_TIME, board)
        if isinstance(frame, UnlockTimeFrame) and frame.ms == ms:
            st.pulse_ms = ms
            self._log.info("cu16_unlock_time_set", board=board, ms=ms)
        else:
            # Unconfirmed: the board may use either value; space coils by the longer one.
            st.pulse_ms = max(st.pulse_ms, ms)
            self._log.warning("cu16_unlock_time_unconfirmed", board=board, ms=ms)
        self._handle_reply(board, st, frame, garbled)

    def _handle_reply(
        self, board: int, st: _BoardState, frame: Frame | None, garbled: bool
    ) -> None:
        if frame is None:
            st.misses += 1
            if not st.faulted and st.misses >= self._fault_after:
                what = "garbled replies" if garbled else "no reply"
                self._set_fault(board, st, f"{what} to {st.misses} consecutive requests")
            return
        st.misses = 0
        st.answers += 1
        if st.faulted:
            st.faulted = False
            self._log.info("cu16_board_recovered", board=board)
            self._emit("on_board_recovered", lambda: self._listener.on_board_recovered(board))
        if not isinstance(frame, StatusFrame):
            return
        closed_bit = bool(st.settings.closed_bit)
        closed = tuple(bit == closed_bit for bit in frame.lock_bits)
        items = frame.item_bits
        if st.last != (closed, items):
            st.last = (closed, items)
            t = self._monotonic()
            self._emit("on_status", lambda: self._listener.on_status(board, closed, items, t))

    def _set_fault(self, board: int, st: _BoardState, reason: str) -> None:
        st.faulted = True
        st.last = None  # the first good reading after recovery is reported again
        self._log.warning("cu16_board_fault", board=board, reason=reason)
        self._emit("on_board_fault", lambda: self._listener.on_board_fault(board, reason))
