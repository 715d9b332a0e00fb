"""What the simulated lock-board buses share: the CU16 boards (:mod:`simulator.cu16_device`)
and the Modbus relay boards (:mod:`simulator.modbus_device`).

:class:`SimulatedBoardBus` is a :class:`~simulator.ptydevice.PtyDevice` holding boards with
doors: a door is shut (latched) or open; a pulse makes a shut door spring open unless its
lock is jammed; doors are forced open and pushed shut by hand with the control methods.
Every board can be ``silent`` (dead: neither answers nor acts) or ``corrupt`` (acts, but
garbles every reply). The base feeds what the driver writes to the device's frame parser
(resyncing on a quiet line like a real board, after ``IDLE_GAP`` seconds), applies each
frame under the lock (:meth:`SimulatedBoardBus._apply`, the device's protocol) and writes
the answers without blocking, counting what a driver that stopped reading lost.

Threading: every public method is thread-safe (the pty base's ``_lock``); no global state.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Generic, Protocol, TypeVar

from simulator.ptydevice import PtyDevice


class DoorBoard(Protocol):
    """What the shared control methods need of a simulated board."""

    closed_bit: int
    door_open: list[bool]
    forced: list[bool]
    jammed: list[bool]
    silent: bool
    corrupt: bool

    @property
    def locks(self) -> int: ...


F = TypeVar("F")
F_co = TypeVar("F_co", covariant=True)
B = TypeVar("B", bound=DoorBoard)


class FrameParser(Protocol[F_co]):
    """The device's incremental parser (:class:`drivers.cu16_protocol.Cu16Parser`,
    :class:`drivers.modbus_protocol.RtuReceiver`)."""

    @property
    def pending(self) -> int: ...

    def feed(self, data: bytes) -> Sequence[F_co]: ...

    def idle(self) -> Sequence[F_co]: ...


def check_closed_bit(closed_bit: int) -> int:
    if closed_bit not in (0, 1):
        raise ValueError(f"closed_bit must be 0 or 1, got {closed_bit!r}")
    return closed_bit


class SimulatedBoardBus(PtyDevice, Generic[B, F]):
    """Simulated boards with doors behind a pty; see the module docstring. A device gives its
    parser, fills ``_boards`` and writes :meth:`_apply`; ``BOARD`` names a board in errors
    ("board", "slave")."""

    IDLE_GAP = 0.05
    BOARD = "board"

    def __init__(
        self,
        parser: FrameParser[F],
        *,
        monotonic: Callable[[], float] = time.monotonic,
        seed: int = 0,
        link_name: str | None = None,
    ) -> None:
        super().__init__(link_name=link_name)
        self._parser = parser
        self._monotonic = monotonic
        self._random = random.Random(seed)
        self._boards: dict[int, B] = {}
        self._dropped_bytes = 0
        self._errors = 0

    # ------------------------------------------------------------------ public API

    def open_door(self, board: int, lock: int) -> None:
        """Force the door open by hand (no pulse)."""
        with self._lock:
            b, i = self._locate(board, lock)
            if not b.door_open[i]:
                b.door_open[i] = True
                b.forced[i] = True

    def close_door(self, board: int, lock: int) -> None:
        """Push the door shut; it re-latches."""
        with self._lock:
            b, i = self._locate(board, lock)
            b.door_open[i] = False
            b.forced[i] = False

    def jam(self, board: int, lock: int, jammed: bool = True) -> None:
        """A jammed lock still takes the pulse, but its door stays shut."""
        with self._lock:
            b, i = self._locate(board, lock)
            b.jammed[i] = bool(jammed)

    def set_silent(self, board: int, silent: bool = True) -> None:
        """A silent board is dead: it neither answers nor acts on requests."""
        with self._lock:
            self._board(board).silent = bool(silent)

    def set_corrupt(self, board: int, corrupt: bool = True) -> None:
        """A corrupt board acts on requests but garbles every reply."""
        with self._lock:
            self._board(board).corrupt = bool(corrupt)

    def set_polarity(self, board: int, closed_bit: int) -> None:
        """Lock-feedback (door-input) bit value meaning "door closed" (0 or 1)."""
        check_closed_bit(closed_bit)
        with self._lock:
            self._board(board).closed_bit = closed_bit

    # ------------------------------------------------------------------ internals

    def _board(self, board: int) -> B:
        try:
            return self._boards[board]
        except (KeyError, TypeError):
            raise ValueError(f"{self.BOARD} {board!r} is not on this simulated bus") from None

    def _locate(self, board: int, lock: int) -> tuple[B, int]:
        b = self._board(board)
        if isinstance(lock, bool) or not isinstance(lock, int) or not 1 <= lock <= b.locks:
            raise ValueError(f"lock must be an int in 1..{b.locks}, got {lock!r}")
        return b, lock - 1

    def _poll_timeout(self) -> float | None:
        # Like a real board, resync on a quiet line: a partial frame left pending for
        # IDLE_GAP seconds can no longer complete (the parser's idle()).
        return self.IDLE_GAP if self._parser.pending else None

    def _on_input(self, data: bytes) -> None:
        replies = []
        with self._lock:
            for frame in self._parser.feed(data) if data else self._parser.idle():
                try:
                    replies.append(self._apply(frame))
                except Exception:  # a bug here must not kill the simulated bus
                    self._errors += 1
        for reply in replies:
            if reply:
                written = self._write_some(reply)
                if written is not None and written < len(reply):
                    with self._lock:
                        self._dropped_bytes += len(reply) - written

    def _apply(self, frame: F) -> bytes:
        """Apply one received frame (lock held); return the bytes to answer with."""
        raise NotImplementedError
