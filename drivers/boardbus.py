"""The polled lock-board bus: what the CU16 bus (:mod:`drivers.cu16`) and the Modbus relay bus
(:mod:`drivers.modbus`) share, on top of the :class:`~drivers.serialworker.SerialWorker`
runtime (thread, open/reopen with backoff, callback guard).

A :class:`PolledBoardBus` keeps one :class:`BoardState` per configured board and runs, on the
bus thread, what every lock-board bus does the same way:

* **Commands**: callers queue unlocks (and driver-specific commands) from any thread
  (:meth:`PolledBoardBus._enqueue`); the bus thread takes them FIFO, skips the ones a coil
  still blocks (:meth:`PolledBoardBus._blocked`) and drops, never sends late, the ones older
  than ``command_ttl`` (:meth:`PolledBoardBus._expired`).
* **Polls**: every board once per ``1/poll_hz`` s, one board per step; a cycle that overran
  (slow or silent boards) is skipped, never burst.
* **Replies**: one frame at a time is awaited until a deadline from the driver's parser
  (its ``feed``/``idle`` and counters); thrown-away bytes are reported as ``on_garbage``.
* **Faults**: ``fault_after`` missed or garbled replies in a row: ``on_board_fault`` once;
  the first good reply after: ``on_board_recovered`` once; a port failure faults every
  board. ``on_status`` on the first reading (also after a fault) and on every change.

The driver writes the protocol: its requests, how a reply is matched, what a reply means.
Log events are named after the worker (``cu16_board_fault``, ``modbus_board_fault``, ...).

Threading: as :class:`~drivers.serialworker.SerialWorker`: the board state, the parser and
the port belong to the bus thread; ``_commands`` and ``_wakeup`` are shared under ``_cond``.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import structlog

from drivers.base import Cu16Listener
from drivers.serialworker import SerialWorker

S = TypeVar("S")
C = TypeVar("C", bound="Queued")
F = TypeVar("F")


class Queued(Protocol):
    @property
    def queued_at(self) -> float: ...


class Parser(Protocol[F]):
    """What the bus needs of a driver's incremental frame parser."""

    garbage_bytes: int

    def feed(self, data: bytes) -> list[F]: ...

    def idle(self) -> list[F]: ...


@dataclass(slots=True)
class BoardState(Generic[S]):
    """One board as the bus thread sees it."""

    settings: S
    pulse_ms: int
    misses: int = 0
    faulted: bool = False
    answers: int = 0
    last: tuple[tuple[bool, ...], tuple[bool, ...]] | None = None
    requery_at: float | None = None


@dataclass(frozen=True, slots=True)
class PollTiming:
    """How a bus polls and paces its boards (checked here, for every driver).

    ``poll_hz``: status polls per board per second; ``reply_timeout``: the wait for one
    reply (s); ``fault_after``: missed replies in a row before a board is faulted;
    ``coil_gap``: the pause between one coil's pulse and the next (s); ``command_ttl``: an
    unlock not sent by then is dropped (s)."""

    poll_hz: float = 4.0
    reply_timeout: float = 0.1
    fault_after: int = 3
    coil_gap: float = 0.05
    command_ttl: float = 5.0

    def __post_init__(self) -> None:
        if not self.poll_hz > 0:
            raise ValueError(f"poll_hz must be > 0, got {self.poll_hz!r}")
        if not self.reply_timeout > 0:
            raise ValueError(f"reply_timeout must be > 0, got {self.reply_timeout!r}")
        f = self.fault_after
        if isinstance(f, bool) or not isinstance(f, int) or not 1 <= f <= 1_000_000:
            raise ValueError(f"fault_after must be an int in [1, 1000000], got {f!r}")
        if self.coil_gap < 0 or self.command_ttl <= 0:
            raise ValueError("coil_gap must be >= 0 and command_ttl > 0")


def check_ids(ids: list[int], what: str) -> None:
    """A bus names at least one board, each once."""
    if not ids:
        raise ValueError("boards must name at least one board")
    if len(set(ids)) != len(ids):
        raise ValueError(f"boards must not repeat a {what}, got {ids}")


@dataclass(frozen=True, slots=True)
class Unlock:
    board: int
    lock: int
    queued_at: float


class PolledBoardBus(SerialWorker, Generic[S, C]):
    """The shared part of a polled lock-board bus; see the module docstring."""

    def __init__(
        self,
        url: str,
        boards: Mapping[int, BoardState[S]],
        listener: Cu16Listener,
        timing: PollTiming,
        *,
        name: str,
        max_pulse_ms: int,
        counters: str,
        **worker: Any,
    ) -> None:
        super().__init__(
            url,
            name=name,
            thread_name=f"{name}-bus[{url}]",
            log=structlog.get_logger(f"drivers.{name}").bind(bus=url),
            read_timeout=timing.reply_timeout,
            close_timeout=2.0,
            **worker,
        )
        self._listener = listener
        self._period = 1.0 / timing.poll_hz
        self._reply_timeout = timing.reply_timeout
        self._fault_after = timing.fault_after
        self._coil_gap = timing.coil_gap
        self._command_ttl = timing.command_ttl
        self._max_pulse_ms = max_pulse_ms
        self._boards: dict[int, BoardState[S]] = dict(boards)

        # Shared with callers (guarded by _cond).
        self._commands: collections.deque[C] = collections.deque()
        self._wakeup = False

        # Bus thread only.
        self._garbage_reported = 0
        self._poll_pending: collections.deque[int] = collections.deque()
        self._next_cycle = 0.0
        self._coil_free_at = 0.0
        self._closing = False  # set while the bus shuts down: no fault or recovery news
        self._stats = dict.fromkeys(counters.split(), 0)

    # ------------------------------------------------------------------ caller side

    @property
    def boards(self) -> tuple[int, ...]:
        return tuple(self._boards)

    def _enqueue(self, command: C) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{type(self).__name__} is closed")
            self._commands.append(command)
            self._wakeup = True
            self._cond.notify_all()

    def _board_stats(self) -> dict[int, dict[str, Any]]:
        return {
            b: {
                "faulted": st.faulted,
                "misses": st.misses,
                "answers": st.answers,
                "pulse_ms": st.pulse_ms,
            }
            for b, st in self._boards.items()
        }

    # ------------------------------------------------------------------ bus thread

    def _start_fields(self) -> dict[str, Any]:
        return {"boards": list(self._boards), "period_s": self._period}

    def _parser_errors(self) -> int:
        """Garbage and bad-checksum counters of the parser, summed (a growth: garbled)."""
        raise NotImplementedError

    def _on_fault(self, reason: str) -> None:
        """The port failed (or cannot be opened): every board is faulted."""
        for board, st in self._boards.items():
            st.misses = max(st.misses, self._fault_after)
            st.requery_at = None
            if not st.faulted:
                self._set_fault(board, st, reason)

    def _blocked(self, command: C, now: float) -> bool:
        """Whether ``command`` must wait (a coil is still energised)."""
        raise NotImplementedError

    def _expired(self, command: C, now: float) -> None:
        """``command`` was dropped: older than ``command_ttl``."""
        if isinstance(command, Unlock):
            self._stats["unlocks_expired"] += 1
            self._log.warning(
                f"{self._name}_unlock_expired",
                board=command.board,
                lock=command.lock,
                age_s=round(now - command.queued_at, 3),
            )

    def _take_command(self, now: float) -> tuple[C | None, float]:
        """The first command that may go now (FIFO; those a coil blocks wait), and when to
        look again otherwise. Drops commands older than ``command_ttl``."""
        wake_at = float("inf")
        with self._cond:
            self._wakeup = False
            for command in list(self._commands):
                if now - command.queued_at > self._command_ttl:
                    self._commands.remove(command)
                    self._expired(command, now)
                    continue
                if self._blocked(command, now):
                    wake_at = min(
                        wake_at, self._coil_free_at, command.queued_at + self._command_ttl
                    )
                    continue
                self._commands.remove(command)
                return command, wake_at
        return None, wake_at

    def _poll_step(self, now: float) -> bool:
        """One step of the poll cycle (poll one board, or start a cycle when one is due);
        False when nothing is due before ``_next_cycle``."""
        if self._poll_pending:
            self._poll(self._poll_pending.popleft())
            return True
        if now >= self._next_cycle:
            self._poll_pending.extend(self._boards)
            self._next_cycle += self._period
            if self._next_cycle <= now:  # overran (slow/silent boards): skip, do not burst
                self._next_cycle = now + self._period
            return True
        return False

    def _poll(self, board: int) -> None:
        raise NotImplementedError

    def _wait_until(self, at: float, *, wakeup: bool = True) -> None:
        """Block until ``at``, or until stopped or (``wakeup``) a new command is queued."""
        with self._cond:
            if not self._stop.is_set() and not (wakeup and self._wakeup):
                self._cond.wait(max(0.0, at - time.monotonic()))

    def _await_frame(
        self,
        parser: Parser[F],
        deadline: float,
        accept: Callable[[F], bool],
        unexpected: Callable[[F], None],
        want: Callable[[], int] = lambda: 1,
    ) -> tuple[F | None, bool]:
        """The first frame ``accept`` takes until ``deadline`` (the others go to
        ``unexpected``), and whether anything garbled arrived meanwhile: bytes already in the
        port's buffer when the deadline is judged count as in time. ``want``: how many bytes
        to ask the port for at least."""
        port = self._port
        errors0 = self._parser_errors()
        found: F | None = None
        while found is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                # Time is up, but this thread may have been descheduled past the deadline
                # while the reply sat in the port's buffer: take what has arrived (without
                # blocking) before judging, so a reply in time is never counted as a miss.
                port.timeout = 0
                frames = parser.feed(port.read(4096)) if port.in_waiting else []
                frames += parser.idle()  # the line is quiet: judge what is pending
            else:
                port.timeout = remaining
                frames = parser.feed(port.read(max(want(), port.in_waiting)))
            for frame in frames:
                if found is None and accept(frame):
                    found = frame
                else:
                    unexpected(frame)
            if remaining <= 0:
                break
        garbled = self._parser_errors() > errors0
        self._report_garbage(parser.garbage_bytes)
        return found, garbled

    def _report_garbage(self, total: int) -> None:
        delta = total - self._garbage_reported
        if delta > 0:
            self._garbage_reported = total
            self._log.debug(f"{self._name}_garbage", count=delta, total=total)
            self._emit("on_garbage", lambda: self._listener.on_garbage(delta))

    def _count_reply(self, board: int, st: BoardState[S], answered: bool, garbled: bool) -> None:
        """A reply (``answered``) or a miss: fault after ``fault_after`` misses in a row,
        recovery at the first answer after."""
        if self._closing:
            return
        if not answered:
            st.misses += 1
            if not st.faulted and st.misses >= self._fault_after:
                what = "garbled replies" if garbled else "no reply"
                self._set_fault(board, st, f"{what} to {st.misses} consecutive requests")
            return
        st.misses = 0
        st.answers += 1
        if st.faulted:
            st.faulted = False
            self._log.info(f"{self._name}_board_recovered", board=board)
            self._emit("on_board_recovered", lambda: self._listener.on_board_recovered(board))

    def _report_status(
        self, board: int, st: BoardState[S], closed: tuple[bool, ...], items: tuple[bool, ...]
    ) -> None:
        """``on_status`` when the reading differs from the last one reported."""
        if st.last != (closed, items):
            st.last = (closed, items)
            t = self._monotonic()
            self._emit("on_status", lambda: self._listener.on_status(board, closed, items, t))

    def _set_fault(self, board: int, st: BoardState[S], reason: str) -> None:
        st.faulted = True
        st.last = None  # the first good reading after recovery is reported again
        self._log.warning(f"{self._name}_board_fault", board=board, reason=reason)
        self._emit("on_board_fault", lambda: self._listener.on_board_fault(board, reason))
