"""A simulated Kerong CU16 bus (one or more boards) on the far side of a pty pair.

:class:`SimulatedCu16Bus` is a :class:`~simulator.boardbus_device.SimulatedBoardBus` (doors,
faults and the serving it shares with the Modbus boards): it serves the master side of a pty
pair from its own thread, speaking the real byte protocol of
:mod:`drivers.cu16_protocol`.
The driver under test opens :attr:`SimulatedCu16Bus.port` (the slave tty path) exactly like
a USB RS-485 adapter.

Protocol served (per board present on the bus):

* 0x30 status query -> 0x35 status reply; boards not on this bus stay silent.
* 0x31 unlock -> pulse one coil; answered with a 0x35 status or silent (``unlock_replies``).
* 0x33 unlock all -> pulse all 16 coils at once (answered like 0x31).
* 0x37 set pulse time -> 0x38 reply echoing the new time.
* 0x32 query all -> ignored (the 0x36 reply format is not documented anywhere).

Physical model per lock: a door is either closed (latched) or open. An unlock pulse energises
the coil for the board's ``pulse_ms`` and makes the door spring open, unless the lock is
jammed (the coil fires, the door stays shut). A door can be forced open by hand (no pulse)
and pushed shut by hand (it re-latches). An infrared "item present" bit per locker is set by
the control methods. The lock-feedback bit reads ``closed_bit`` for a closed door and the
inverse for an open one (per-board polarity).

Fault injection per board: ``silent`` (the board is dead: it neither answers nor acts),
``corrupt`` (it acts, but every reply is preceded by junk and has a wrong checksum).

Threading: every public method is thread-safe and may be called from any thread; the I/O
thread takes the same lock to apply a request. No global state: many simulated buses can
run in one process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from drivers.cu16_protocol import (
    CMD_QUERY_ALL,
    CMD_STATUS,
    CMD_UNLOCK,
    CMD_UNLOCK_ALL,
    CMD_UNLOCK_TIME,
    LOCKS_PER_BOARD,
    MAX_BOARD,
    MAX_UNLOCK_TIME_MS,
    CommandFrame,
    Cu16Parser,
    Frame,
    UnlockTimeFrame,
    encode_status_reply,
    encode_unlock_time_reply,
)
from simulator.boardbus_device import SimulatedBoardBus, check_closed_bit


def _check_board_id(board: object) -> int:
    if isinstance(board, bool) or not isinstance(board, int) or not 0 <= board <= MAX_BOARD:
        raise ValueError(f"board must be an int in 0..{MAX_BOARD}, got {board!r}")
    return board


@dataclass(slots=True)
class _Board:
    board_id: int
    closed_bit: int
    unlock_replies: bool
    pulse_ms: int
    door_open: list[bool] = field(default_factory=lambda: [False] * LOCKS_PER_BOARD)
    forced: list[bool] = field(default_factory=lambda: [False] * LOCKS_PER_BOARD)
    items: list[bool] = field(default_factory=lambda: [False] * LOCKS_PER_BOARD)
    jammed: list[bool] = field(default_factory=lambda: [False] * LOCKS_PER_BOARD)
    coil_until: list[float] = field(default_factory=lambda: [0.0] * LOCKS_PER_BOARD)
    silent: bool = False
    corrupt: bool = False
    requests: int = 0
    status_queries: int = 0

    @property
    def locks(self) -> int:
        return LOCKS_PER_BOARD

    def lock_bits(self) -> list[bool]:
        closed = bool(self.closed_bit)
        return [closed if not is_open else not closed for is_open in self.door_open]

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "board": self.board_id,
            "door_open": list(self.door_open),
            "forced": list(self.forced),
            "items": list(self.items),
            "jammed": list(self.jammed),
            "coil_energised": [now < until for until in self.coil_until],
            "silent": self.silent,
            "corrupt": self.corrupt,
            "closed_bit": self.closed_bit,
            "unlock_replies": self.unlock_replies,
            "pulse_ms": self.pulse_ms,
            "requests": self.requests,
            "status_queries": self.status_queries,
        }


class SimulatedCu16Bus(SimulatedBoardBus[_Board, Frame]):
    """Simulated CU16 boards behind a pty. See the module docstring for the model.

    ``boards``: board ids (0-9) present on this bus. ``pulse_ms``, ``closed_bit`` and
    ``unlock_replies`` are the initial per-board settings. ``monotonic`` stamps the unlock
    history. ``seed`` makes the junk of corrupt replies reproducible.

    Locks are numbered 1-16 in every control method. Thread-safe throughout.
    """

    _parser: Cu16Parser

    def __init__(
        self,
        boards: Sequence[int],
        *,
        pulse_ms: int = 500,
        closed_bit: int = 1,
        unlock_replies: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        ids = [_check_board_id(b) for b in boards]
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"boards must be distinct board ids, got {list(boards)!r}")
        check_closed_bit(closed_bit)
        if isinstance(pulse_ms, bool) or not isinstance(pulse_ms, int) or pulse_ms % 10:
            raise ValueError(f"pulse_ms must be an int multiple of 10, got {pulse_ms!r}")
        if not 10 <= pulse_ms <= MAX_UNLOCK_TIME_MS:
            raise ValueError(f"pulse_ms must be in 10..{MAX_UNLOCK_TIME_MS}, got {pulse_ms!r}")
        super().__init__(Cu16Parser(), monotonic=monotonic, seed=seed)
        self._boards = {b: _Board(b, closed_bit, unlock_replies, pulse_ms) for b in sorted(ids)}
        self._history: list[dict[str, Any]] = []
        self._overlapping_pulses = 0
        self._start_serving(f"cu16-sim[{self.port}]")

    # ------------------------------------------------------------------ public API

    def set_item(self, board: int, lock: int, present: bool) -> None:
        """Set the infrared "item present" sensor of a locker."""
        with self._lock:
            b, i = self._locate(board, lock)
            b.items[i] = bool(present)

    def set_unlock_replies(self, board: int, replies: bool) -> None:
        """Whether the board answers an unlock with a status frame."""
        with self._lock:
            self._board(board).unlock_replies = bool(replies)

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state: ``boards`` keyed by ``str(board_id)``; ``unlocks``, the
        pulse history as ``{board, lock, t_monotonic, pulse_ms}`` in order;
        ``overlapping_pulses``, pulses that started while another coil on this bus was still
        energised (a brown-out risk); parser counters for what the bus received."""
        with self._lock:
            now = self._monotonic()
            return {
                "port": self.port,
                "boards": {str(b): st.as_dict(now) for b, st in self._boards.items()},
                "unlocks": [dict(entry) for entry in self._history],
                "overlapping_pulses": self._overlapping_pulses,
                "frames": self._parser.frames,
                "garbage_bytes": self._parser.garbage_bytes,
                "bad_checksum": self._parser.bad_checksum,
                "dropped_reply_bytes": self._dropped_bytes,
                "errors": self._errors,
            }

    # ------------------------------------------------------------------ internals

    def _apply(self, frame: Frame) -> bytes:
        """Apply one received frame (lock held); return the bytes to answer with."""
        if isinstance(frame, CommandFrame):
            cmd = frame.cmd
        elif isinstance(frame, UnlockTimeFrame) and frame.cmd == CMD_UNLOCK_TIME:
            cmd = CMD_UNLOCK_TIME
        else:
            return b""  # replies from someone else on the line: not for us
        if cmd == CMD_QUERY_ALL:
            return b""
        b = self._boards.get(frame.board)
        if b is None:
            return b""
        b.requests += 1
        if b.silent:
            return b""
        reply = b""
        if cmd == CMD_STATUS:
            b.status_queries += 1
            reply = self._status(b)
        elif cmd == CMD_UNLOCK and isinstance(frame, CommandFrame):
            self._pulse(b, frame.lock - 1)
            reply = self._status(b) if b.unlock_replies else b""
        elif cmd == CMD_UNLOCK_ALL:
            for i in range(LOCKS_PER_BOARD):
                self._pulse(b, i)
            reply = self._status(b) if b.unlock_replies else b""
        elif cmd == CMD_UNLOCK_TIME and isinstance(frame, UnlockTimeFrame):
            if frame.units > 0:
                b.pulse_ms = frame.ms
            reply = encode_unlock_time_reply(b.board_id, b.pulse_ms)
        if reply and b.corrupt:
            reply = self._garble(reply)
        return reply

    def _pulse(self, b: _Board, index: int) -> None:
        now = self._monotonic()
        if any(now < until for board in self._boards.values() for until in board.coil_until):
            self._overlapping_pulses += 1
        b.coil_until[index] = now + b.pulse_ms / 1000.0
        self._history.append(
            {"board": b.board_id, "lock": index + 1, "t_monotonic": now, "pulse_ms": b.pulse_ms}
        )
        if not b.jammed[index] and not b.door_open[index]:
            b.door_open[index] = True
            b.forced[index] = False

    def _status(self, b: _Board) -> bytes:
        return encode_status_reply(b.board_id, b.lock_bits(), b.items)

    def _garble(self, reply: bytes) -> bytes:
        junk = bytes(self._random.choice((0x02, 0x03, 0x35, 0xFF, 0x00)) for _ in range(3))
        bad_sum = (reply[-1] + 1 + self._random.randrange(255)) & 0xFF
        return junk + reply[:-1] + bytes((bad_sum,))
