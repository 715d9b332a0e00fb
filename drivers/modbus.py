"""A locker bank's Modbus RTU relay boards on one RS-485 bus: the lock-bus driver.

:class:`ModbusBus` is a drop-in for :class:`drivers.cu16.Cu16Bus` (the
:class:`drivers.base.LockBus` interface, the same listener callbacks), so the locker bank,
its coil scheduler and every locker rule stay as they are. Each board is a Modbus slave;
relay *n* drives the lock of door *n*, whose switch is discrete input *n*
(:mod:`drivers.modbus_protocol`: the requests; pymodbus: the framing).

* **Unlocks**: one relay pulse at a time on the bus (the next waits for the pulse plus
  ``coil_gap``), never above ``max_pulse_ms`` (CoilSafetyError). Per board, ``pulse``:
  ``board``: one "flash on" request, the board switches the relay off by itself (in 100 ms
  steps), even if this process dies; ``driver``: relay on, then off after the pulse, timed
  here. Nothing is started on the bus that could still be waiting for a reply when an off
  is due; an unconfirmed off is repeated every ``off_retry_s`` and holds back every other
  unlock meanwhile. Every relay of a ``driver`` board is written off when the port opens (a
  relay left on by a killed process), every relay of every board at :meth:`close`.
  ``on_unlock_sent`` reports the write; an unlock not sent within ``command_ttl`` is dropped.
* **Doors**: discrete inputs read ``poll_hz`` times a second per board; ``on_status`` on
  the first reading (also after a fault) and every change; no item sensors (all False).
* **Faults**: ``fault_after`` missed or garbled replies in a row: ``on_board_fault`` once;
  the first good reply: ``on_board_recovered`` once; thrown-away bytes: ``on_garbage``.

Threading: public methods from any thread; the port and board state belong to the bus
thread (:class:`~drivers.boardbus.PolledBoardBus`, on the serial-worker runtime), where
listener callbacks run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import serial

from drivers.base import Cu16Listener
from drivers.boardbus import BoardState, PolledBoardBus, PollTiming, Unlock, check_ids
from drivers.errors import CoilSafetyError
from drivers.modbus_protocol import (
    ModbusBoardSettings,
    ModbusPDU,
    RtuReceiver,
    all_off_request,
    bits_of,
    check_int,
    check_pulse,
    coil_request,
    encode,
    flash_request,
    inputs_request,
    matches,
)

__all__ = ["ModbusBoardSettings", "ModbusBus"]

WRITE_MARGIN_S = 0.02  # a request's own time on the wire, on top of reply_timeout
CLOSE_OFF_TRIES = 3


@dataclass(slots=True)
class _Off:
    """A driver-timed relay that is (or may be) on: switch it off at ``due``."""

    due: float
    on_at: float
    attempts: int = 0
    overrun_logged: bool = False


COUNTERS = "polls unlocks_sent unlocks_expired unlocks_refused offs_sent off_retries late_bytes"


class ModbusBus(PolledBoardBus[ModbusBoardSettings, Unlock]):
    """Modbus RTU relay boards on one serial line; see the module docstring. The poll cycle,
    the unlock queue and board fault/recovery are :class:`~drivers.boardbus.PolledBoardBus`'s;
    the thread, the port's open/reopen with backoff and the callback guard its
    :class:`~drivers.serialworker.SerialWorker`'s."""

    def __init__(
        self,
        url: str,
        boards: Sequence[ModbusBoardSettings],
        listener: Cu16Listener,
        *,
        baudrate: int = 9600,
        parity: str = "N",
        poll_hz: float = 4.0,
        reply_timeout: float = 0.1,
        fault_after: int = 3,
        coil_gap: float = 0.05,
        command_ttl: float = 5.0,
        max_pulse_ms: int = 1500,
        off_retry_s: float = 0.1,
        reopen_backoff: tuple[float, float] = (0.5, 30.0),
        write_timeout: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        check_ids([b.slave_id for b in boards], "slave id")
        timing = PollTiming(poll_hz, reply_timeout, fault_after, coil_gap, command_ttl)
        if parity not in ("N", "E", "O"):
            raise ValueError(f"parity must be 'N', 'E' or 'O', got {parity!r}")
        if not off_retry_s > 0:
            raise ValueError(f"off_retry_s must be > 0, got {off_retry_s!r}")
        check_int("max_pulse_ms", max_pulse_ms, 10, 600_000)
        for b in boards:
            if b.pulse_ms > max_pulse_ms:
                raise CoilSafetyError(
                    f"slave {b.slave_id}: pulse of {b.pulse_ms} ms exceeds the coil limit "
                    f"of {max_pulse_ms} ms"
                )
        super().__init__(
            url,
            {b.slave_id: BoardState(b, b.pulse_ms) for b in boards},
            listener,
            timing,
            name="modbus",
            max_pulse_ms=max_pulse_ms,
            counters=COUNTERS,
            baudrate=baudrate,
            parity=parity,
            write_timeout=write_timeout,
            reopen_backoff=reopen_backoff,
            monotonic=monotonic,
        )
        self._txn_s = reply_timeout + WRITE_MARGIN_S
        self._off_retry = off_retry_s
        # Bus thread only.
        self._rx = RtuReceiver(is_server=False)
        self._offs: dict[tuple[int, int], _Off] = {}
        self._all_off_due = False

    # ------------------------------------------------------------------ public API

    def unlock(self, board: int, lock: int) -> None:
        """Queue a pulse of relay ``lock`` (1-based) on slave ``board``; returns at once.
        ValueError for a board or relay not configured, RuntimeError after close."""
        st = self._board(board)
        check_int("lock", lock, 1, st.settings.relays)
        self._enqueue(Unlock(board, lock, time.monotonic()))

    def set_unlock_time(self, board: int, ms: int) -> None:
        """The pulse length of ``board``'s relays from now on. No bus traffic: the flash
        request carries the time. CoilSafetyError above ``max_pulse_ms``; ValueError for a
        board-timed pulse that is not a multiple of 100 ms."""
        st = self._board(board)
        check_pulse(st.settings.pulse, ms)
        if ms > self._max_pulse_ms:
            raise CoilSafetyError(
                f"unlock time {ms} ms exceeds the coil limit of {self._max_pulse_ms} ms "
                "(raise max_on_ms only for locks rated for it)"
            )
        with self._cond:
            st.pulse_ms = ms

    def stats(self) -> dict[str, Any]:
        """A loose snapshot of counters (read without locking; for logs and tests)."""
        return {
            **self._stats,
            "port_errors": self._port_errors,
            "listener_errors": self._listener_errors,
            "frames": self._rx.frames,
            "garbage_bytes": self._rx.garbage_bytes,
            "bad_crc": self._rx.bad_crc,
            "relays_on": sorted(self._offs.copy()),
            "boards": self._board_stats(),
        }

    def _board(self, board: int) -> BoardState[ModbusBoardSettings]:
        st = self._boards.get(board) if isinstance(board, int) else None
        if st is None or isinstance(board, bool):
            raise ValueError(f"slave {board!r} is not configured on bus {self._url}")
        return st

    # ------------------------------------------------------------------ bus thread

    def _port_opened(self) -> None:
        self._rx.discard()
        self._garbage_reported = self._rx.garbage_bytes
        self._next_cycle = time.monotonic()
        self._poll_pending.clear()
        self._all_off_due = True

    def _parser_errors(self) -> int:
        return self._rx.garbage_bytes + self._rx.bad_crc

    def _on_stop(self) -> None:
        """Every relay off (driver-timed ones still on first, retried); the base closes the
        port afterwards."""
        self._closing = True
        try:
            if self._port is not None:
                for (slave, relay), off in sorted(self._offs.items()):
                    for _ in range(CLOSE_OFF_TRIES):
                        if self._switch_off(slave, relay, off):
                            break
                for slave, st in self._boards.items():
                    self._transact(slave, all_off_request(slave, st.settings.relays))
        except (serial.SerialException, OSError) as exc:
            self._log.warning("modbus_close_off_failed", error=str(exc))
        finally:
            if self._offs:
                self._log.error("modbus_relays_maybe_on", relays=sorted(self._offs))

    def _serve(self) -> None:
        if self._all_off_due:
            # A relay left on by a process that died mid-pulse: off before anything else.
            self._all_off_due = False
            for slave, st in self._boards.items():
                if st.settings.pulse == "driver":
                    self._transact(slave, all_off_request(slave, st.settings.relays))
            return
        now = time.monotonic()
        # 1. Relays due off.
        if self._offs:
            key, off = min(self._offs.items(), key=lambda kv: kv[1].due)
            if off.due <= now:
                self._switch_off(*key, off)
                return
        # Nothing may start that could still be running when a first off is due.
        critical = min((o.due for o in self._offs.values() if o.attempts == 0), default=None)
        if critical is not None and critical <= now + self._txn_s:
            self._wait_until(critical, wakeup=False)
            return
        # 2. Unlocks (FIFO), one coil at a time.
        command, wake_at = self._take_command(now)
        if command is not None:
            self._do_unlock(command)
            return
        # 3. Door polls: one board per step, every board once per period.
        if self._poll_step(now):
            return
        wake_at = min(wake_at, self._next_cycle)
        if self._offs:
            wake_at = min(wake_at, min(o.due for o in self._offs.values()))
        self._wait_until(wake_at)

    def _blocked(self, command: Unlock, now: float) -> bool:
        """One coil at a time: an unlock waits for the last pulse (and every pending off)."""
        return now < self._coil_free_at or bool(self._offs)

    # -- transactions

    def _send(self, request: ModbusPDU) -> None:
        """Half duplex: whatever arrived since the last request (a late reply, noise) is
        read and dropped first; nothing received before the request can be its reply."""
        port = self._port
        if port.in_waiting:
            port.timeout = 0
            late = port.read(4096)
            self._stats["late_bytes"] += len(late)
        self._rx.discard()
        self._garbage_reported = self._rx.garbage_bytes  # late bytes are not line noise
        port.write(encode(request))

    def _await(self, request: ModbusPDU, deadline: float) -> tuple[ModbusPDU | None, bool]:
        """The first frame from the request's slave for its function (or an exception
        reply) until ``deadline``, and whether anything garbled arrived meanwhile."""
        return self._await_frame(
            self._rx,
            deadline,
            lambda frame: (
                frame.dev_id == request.dev_id
                and frame.function_code & 0x7F == request.function_code
            ),
            lambda frame: self._log.debug("modbus_unexpected_frame", frame=str(frame)),
        )

    def _transact(self, slave: int, request: ModbusPDU) -> ModbusPDU | None:
        self._send(request)
        return self._reply(slave, request)

    def _reply(
        self, slave: int, request: ModbusPDU, deadline: float | None = None
    ) -> ModbusPDU | None:
        """The normal answer to ``request`` by ``deadline`` (default: the reply timeout),
        else None; counted for the board, except silence in a wait cut short."""
        full = time.monotonic() + self._reply_timeout
        if deadline is None:
            deadline = full
        frame, garbled = self._await(request, deadline)
        if frame is not None or deadline >= full - 1e-3:
            self._count_reply(slave, self._boards[slave], frame is not None, garbled)
        if frame is not None and not matches(request, frame):
            self._log.warning(
                "modbus_request_refused",
                board=slave,
                request=str(request),
                reply=str(frame),
                exception_code=frame.exception_code or None,
            )
            return None
        return frame

    def _poll(self, slave: int) -> None:
        st = self._boards[slave]
        self._stats["polls"] += 1
        reply = self._transact(slave, inputs_request(slave, st.settings.relays))
        if reply is None:
            return
        closed_bit = bool(st.settings.closed_bit)
        closed = tuple(bit == closed_bit for bit in bits_of(reply, st.settings.relays))
        self._report_status(slave, st, closed, (False,) * len(closed))

    def _do_unlock(self, command: Unlock) -> None:
        slave, relay = command.board, command.lock
        st = self._boards[slave]
        ms = st.pulse_ms
        by_board = st.settings.pulse == "board"
        request = flash_request(slave, relay, ms) if by_board else coil_request(slave, relay, True)
        self._send(request)
        sent = time.monotonic()
        deadline = sent + self._reply_timeout
        if not by_board:
            # The off is scheduled before anything can go wrong with the reply.
            off = _Off(due=sent + ms / 1000.0, on_at=sent)
            self._offs[(slave, relay)] = off
            deadline = min(deadline, off.due)
        self._coil_free_at = sent + ms / 1000.0 + self._coil_gap
        self._stats["unlocks_sent"] += 1
        self._log.info(
            "modbus_unlock_sent", board=slave, lock=relay, pulse_ms=ms, pulse=st.settings.pulse
        )
        refused = self._reply(slave, request, deadline) is None and by_board
        if by_board:
            # The board answers after it switched the relay on, which may be well after the
            # write (a slow board or line): its own timer runs from then, and so does the
            # spacing to the next coil.
            self._coil_free_at = time.monotonic() + ms / 1000.0 + self._coil_gap
        t = self._monotonic()
        self._emit("on_unlock_sent", lambda: self._listener.on_unlock_sent(slave, relay, t))
        if refused:
            self._stats["unlocks_refused"] += 1

    def _switch_off(self, slave: int, relay: int, off: _Off) -> bool:
        """Write a driver-timed relay off; True once the board confirmed it."""
        self._stats["offs_sent"] += 1
        if self._transact(slave, coil_request(slave, relay, False)) is not None:
            now = time.monotonic()
            on_ms = (now - off.on_at) * 1000.0
            del self._offs[(slave, relay)]
            self._coil_free_at = max(self._coil_free_at, now + self._coil_gap)
            self._log.info("modbus_relay_off", board=slave, lock=relay, on_ms=round(on_ms, 1))
            return True
        off.attempts += 1
        self._stats["off_retries"] += 1
        off.due = time.monotonic() + self._off_retry
        on_s = time.monotonic() - off.on_at
        if on_s * 1000.0 > self._max_pulse_ms and not off.overrun_logged:
            off.overrun_logged = True
            self._log.error(
                "modbus_relay_off_unconfirmed", board=slave, lock=relay, on_s=round(on_s, 3)
            )
        return False
