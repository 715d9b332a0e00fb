"""Kerong CU16 ("KR-CU16", "CU12") serial lock-control boards: the bus driver.

The wire protocol (frame encoders, the incremental parser, the frame types) lives in
:mod:`drivers.cu16_protocol`, pure and tested by feeding it bytes; every public name of it is
re-exported here. :class:`Cu16Bus`, a :class:`~drivers.boardbus.PolledBoardBus` (the poll
loop, command queue and fault/recovery it shares with the Modbus bus), owns one serial port
(device path, pty path or ``socket://host:port``), polls every configured board from its own
daemon thread and reports to a :class:`Cu16Listener`.

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

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from drivers import cu16_protocol
from drivers.base import Cu16Listener
from drivers.boardbus import BoardState, PolledBoardBus, PollTiming, Unlock, check_ids
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
    check_lock,
    check_ms,
    encode_set_unlock_time,
    encode_status_query,
    encode_unlock,
    reply_cmd,
)
from drivers.errors import CoilSafetyError
from drivers.settings import BoardSettings

__all__ = [*cu16_protocol.__all__, "BoardSettings", "Cu16Bus", "Cu16Listener"]


# --------------------------------------------------------------------------- bus driver


@dataclass(frozen=True, slots=True)
class _SetTime:
    board: int
    ms: int
    queued_at: float


_Command: TypeAlias = Unlock | _SetTime


class Cu16Bus(PolledBoardBus[BoardSettings, _Command]):
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
        check_ids([s.board_id for s in settings], "board id")
        timing = PollTiming(poll_hz, reply_timeout, fault_after, coil_gap, command_ttl)
        if requery_delay < 0:
            raise ValueError(f"requery_delay must be >= 0, got {requery_delay!r}")
        check_ms(max_pulse_ms)
        super().__init__(
            url,
            {s.board_id: BoardState(settings=s, pulse_ms=s.pulse_ms) for s in settings},
            listener,
            timing,
            name="cu16",
            max_pulse_ms=max_pulse_ms,
            counters="polls unlocks_sent unlocks_expired late_frames",
            baudrate=baudrate,
            write_timeout=write_timeout,
            reopen_backoff=reopen_backoff,
            stable_s=0.0,  # every good open restarts the backoff
            monotonic=monotonic,
        )
        self._requery_delay = requery_delay
        self._parser = Cu16Parser()  # bus thread only

    # ------------------------------------------------------------------ public API

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
        self._enqueue(Unlock(board, lock, time.monotonic()))

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
            "polls": s["polls"],
            "unlocks_sent": s["unlocks_sent"],
            "unlocks_expired": s["unlocks_expired"],
            "port_errors": self._port_errors,
            "listener_errors": self._listener_errors,
            "late_frames": s["late_frames"],
            "frames": self._parser.frames,
            "garbage_bytes": self._parser.garbage_bytes,
            "bad_checksum": self._parser.bad_checksum,
            "boards": self._board_stats(),
        }

    def _check_configured(self, board: int) -> None:
        check_board(board)
        if board not in self._boards:
            raise ValueError(f"board {board} is not configured on bus {self._url}")

    # ------------------------------------------------------------------ bus thread

    def _port_opened(self) -> None:
        self._parser.discard()
        self._next_cycle = time.monotonic()
        self._poll_pending.clear()

    def _parser_errors(self) -> int:
        return self._parser.garbage_bytes + self._parser.bad_checksum

    def _serve(self) -> None:
        now = time.monotonic()
        command, wake_at = self._take_command(now)
        if command is not None:
            if isinstance(command, Unlock):
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
        if self._poll_step(now):
            return
        self._wait_until(min(wake_at, self._next_cycle))

    def _blocked(self, command: _Command, now: float) -> bool:
        return isinstance(command, Unlock) and now < self._coil_free_at

    def _expired(self, command: _Command, now: float) -> None:
        if isinstance(command, _SetTime):
            self._log.warning("cu16_set_unlock_time_expired", board=command.board, ms=command.ms)
        else:
            super()._expired(command, now)

    # -- transactions

    def _send(self, request: bytes) -> None:
        """Half duplex: drain whatever arrived since the last request (late replies, noise),
        forget any partial frame, then write. Nothing read before the request can be part of
        its reply."""
        port = self._port
        if port.in_waiting:  # a byte count on a tty, 0/1 on socket://: drain without blocking
            port.timeout = 0
            for frame in self._parser.feed(port.read(4096)):
                self._stats["late_frames"] += 1
                self._log.debug("cu16_late_frame", frame=repr(frame))
        self._parser.discard()
        self._write(request)

    def _await(self, cmd: int, board: int) -> tuple[Frame | None, bool]:
        """Wait up to ``reply_timeout`` for a ``cmd`` reply from ``board``. Returns the frame
        (or None) and whether anything garbled arrived meanwhile."""
        parser = self._parser
        expected = FRAME_LENGTHS[cmd]

        def unexpected(frame: Frame) -> None:
            if not (isinstance(frame, CommandFrame) and frame.board == board):
                self._log.debug("cu16_unexpected_frame", frame=repr(frame), board=board)

        return self._await_frame(
            parser,
            time.monotonic() + self._reply_timeout,
            lambda frame: frame.board == board and reply_cmd(frame) == cmd,
            unexpected,
            want=lambda: max(1, expected - parser.pending),
        )

    def _poll(self, board: int) -> None:
        st = self._boards[board]
        st.requery_at = None
        self._stats["polls"] += 1
        self._send(encode_status_query(board))
        frame, garbled = self._await(REPLY_STATUS, board)
        self._handle_reply(board, st, frame, garbled)

    def _do_unlock(self, command: Unlock) -> None:
        board, lock = command.board, command.lock
        st = self._boards[board]
        self._send(encode_unlock(board, lock))
        sent = time.monotonic()
        pulse_s = st.pulse_ms / 1000.0
        self._coil_free_at = sent + pulse_s + self._coil_gap
        self._stats["unlocks_sent"] += 1
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
        self, board: int, st: BoardState[BoardSettings], frame: Frame | None, garbled: bool
    ) -> None:
        self._count_reply(board, st, frame is not None, garbled)
        if isinstance(frame, StatusFrame):
            closed_bit = bool(st.settings.closed_bit)
            closed = tuple(bit == closed_bit for bit in frame.lock_bits)
            self._report_status(board, st, closed, frame.item_bits)
