"""Kerong CU16 ("KR-CU16", "CU12") serial lock-control boards: framing and bus driver.

Wire format (RS-485, half duplex, 19200 8N1)::

    STX(0x02) ADDR CMD [DATA...] ETX(0x03) SUM      SUM = sum of all preceding bytes mod 256
    ADDR = (board << 4) | lock_index                lock_index 0-15, lock 1 = index 0

Frame lengths are fixed per command (see :data:`FRAME_LENGTHS`): 5 bytes for 0x30-0x33,
7 bytes for 0x37/0x38 (HI LO pulse time in 10 ms units before ETX), 9 bytes for the 0x35
status reply (``L1-8 L9-16 IR1-8 IR9-16``, bit 0 = lowest-numbered lock/sensor).

The module has two layers, in the style of ``serial.threaded``:

* **Framing** (pure, no I/O, no threads): ``encode_*`` functions and :class:`Cu16Parser`, an
  incremental parser fed with whatever bytes the line produced. It never raises on input and
  counts what it had to throw away.
* **Bus driver** :class:`Cu16Bus`: owns one serial port (device path, pty path or
  ``socket://host:port``), polls every configured board from its own daemon thread and
  reports to a :class:`Cu16Listener`.

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
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Protocol, TypeAlias

import serial
import structlog

from drivers.errors import CoilSafetyError

log = structlog.get_logger(__name__)

# --------------------------------------------------------------------------- protocol constants

STX = 0x02
ETX = 0x03

CMD_STATUS = 0x30
CMD_UNLOCK = 0x31
CMD_QUERY_ALL = 0x32
CMD_UNLOCK_ALL = 0x33
REPLY_STATUS = 0x35
REPLY_ALL_STATUS = 0x36  # length not documented by any source: the parser treats it as garbage
CMD_UNLOCK_TIME = 0x37
REPLY_UNLOCK_TIME = 0x38

MAX_BOARD = 9
LOCKS_PER_BOARD = 16
UNLOCK_TIME_UNIT_MS = 10
MAX_UNLOCK_TIME_MS = 0xFFFF * UNLOCK_TIME_UNIT_MS
BROADCAST_ADDRESSES = (0x00, 0xF0)
BAUDRATE = 19200

#: Total frame length (STX..SUM) for every command the parser recognises.
FRAME_LENGTHS: Mapping[int, int] = MappingProxyType(
    {
        CMD_STATUS: 5,
        CMD_UNLOCK: 5,
        CMD_QUERY_ALL: 5,
        CMD_UNLOCK_ALL: 5,
        REPLY_STATUS: 9,
        CMD_UNLOCK_TIME: 7,
        REPLY_UNLOCK_TIME: 7,
    }
)
MAX_FRAME_LEN = max(FRAME_LENGTHS.values())


# --------------------------------------------------------------------------- validation helpers


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    return value


def _check_board(board: object) -> int:
    return _check_int("board", board, 0, MAX_BOARD)


def _check_lock(lock: object) -> int:
    return _check_int("lock", lock, 1, LOCKS_PER_BOARD)


def _check_ms(ms: object) -> int:
    value = _check_int("ms", ms, UNLOCK_TIME_UNIT_MS, MAX_UNLOCK_TIME_MS)
    if value % UNLOCK_TIME_UNIT_MS:
        raise ValueError(f"ms must be a multiple of {UNLOCK_TIME_UNIT_MS}, got {value!r}")
    return value


def _check_bits(name: str, bits: Sequence[bool]) -> tuple[bool, ...]:
    if len(bits) != LOCKS_PER_BOARD:
        raise ValueError(f"{name} must have {LOCKS_PER_BOARD} entries, got {len(bits)}")
    return tuple(bool(b) for b in bits)


# --------------------------------------------------------------------------- encoding


def checksum(data: bytes | bytearray) -> int:
    """Sum of ``data`` modulo 256 (the CU16 SUM byte)."""
    return sum(data) & 0xFF


def encode_frame(addr: int, cmd: int, data: bytes = b"") -> bytes:
    """``STX addr cmd data ETX SUM``. Low-level: prefer the ``encode_*`` helpers."""
    _check_int("addr", addr, 0, 0xFF)
    _check_int("cmd", cmd, 0, 0xFF)
    body = bytes((STX, addr, cmd)) + bytes(data) + bytes((ETX,))
    return body + bytes((checksum(body),))


def board_address(board: int, lock: int | None = None) -> int:
    """ADDR byte: ``(board << 4) | (lock - 1)``; lock ``None`` gives low nibble 0."""
    b = _check_board(board)
    index = 0 if lock is None else _check_lock(lock) - 1
    return (b << 4) | index


def _bits_to_bytes(bits: tuple[bool, ...]) -> bytes:
    lo = sum(1 << i for i in range(8) if bits[i])
    hi = sum(1 << i for i in range(8) if bits[i + 8])
    return bytes((lo, hi))


def _bytes_to_bits(lo: int, hi: int) -> tuple[bool, ...]:
    return tuple(bool(lo >> i & 1) for i in range(8)) + tuple(bool(hi >> i & 1) for i in range(8))


def encode_status_query(board: int) -> bytes:
    """0x30: query the status of one board (board 0 -> ``02 00 30 03 35``)."""
    return encode_frame(board_address(board), CMD_STATUS)


def encode_unlock(board: int, lock: int) -> bytes:
    """0x31: pulse one lock, ``lock`` 1-16 (board 1 lock 3 -> ``02 12 31 03 48``)."""
    return encode_frame(board_address(board, lock), CMD_UNLOCK)


def encode_unlock_all(board: int) -> bytes:
    """0x33: pulse every lock of a board at once (``02 00 33 03 38`` for board 0).

    Sixteen coils at once can brown out a locker supply; :class:`Cu16Bus` deliberately does
    not offer it."""
    return encode_frame(board_address(board), CMD_UNLOCK_ALL)


def encode_query_all(broadcast: int = 0x00) -> bytes:
    """0x32: query all boards. Sources disagree on the broadcast address (0x00 or 0xF0)."""
    if broadcast not in BROADCAST_ADDRESSES:
        raise ValueError(f"broadcast must be 0x00 or 0xF0, got {broadcast!r}")
    return encode_frame(broadcast, CMD_QUERY_ALL)


def encode_set_unlock_time(board: int, ms: int) -> bytes:
    """0x37: set the unlock pulse time; ``ms`` 10-655350 in steps of 10 ms."""
    units = _check_ms(ms) // UNLOCK_TIME_UNIT_MS
    return encode_frame(board_address(board), CMD_UNLOCK_TIME, units.to_bytes(2, "big"))


def encode_unlock_time_reply(board: int, ms: int) -> bytes:
    """0x38: a board's answer to 0x37 (used by the simulator)."""
    units = _check_ms(ms) // UNLOCK_TIME_UNIT_MS
    return encode_frame(board_address(board), REPLY_UNLOCK_TIME, units.to_bytes(2, "big"))


def encode_status_reply(
    board: int, lock_bits: Sequence[bool], item_bits: Sequence[bool], *, lock: int | None = None
) -> bytes:
    """0x35: one board's raw status (used by the simulator). Index 0 = lock/sensor 1."""
    locks = _check_bits("lock_bits", lock_bits)
    items = _check_bits("item_bits", item_bits)
    data = _bits_to_bytes(locks) + _bits_to_bytes(items)
    return encode_frame(board_address(board, lock), REPLY_STATUS, data)


# --------------------------------------------------------------------------- decoded frames


@dataclass(frozen=True, slots=True)
class CommandFrame:
    """A 5-byte frame without data: requests 0x30-0x33 (what a board receives, or our own
    request echoed back by an RS-485 adapter)."""

    addr: int
    cmd: int

    @property
    def board(self) -> int:
        return self.addr >> 4

    @property
    def lock(self) -> int:
        """Lock number 1-16 from the ADDR low nibble."""
        return (self.addr & 0x0F) + 1

    def encode(self) -> bytes:
        return encode_frame(self.addr, self.cmd)


@dataclass(frozen=True, slots=True)
class StatusFrame:
    """0x35 reply. Raw bits, index 0 = lock/sensor 1; polarity is applied by the bus."""

    addr: int
    lock_bits: tuple[bool, ...]
    item_bits: tuple[bool, ...]

    @property
    def board(self) -> int:
        return self.addr >> 4

    def encode(self) -> bytes:
        data = _bits_to_bytes(self.lock_bits) + _bits_to_bytes(self.item_bits)
        return encode_frame(self.addr, REPLY_STATUS, data)


@dataclass(frozen=True, slots=True)
class UnlockTimeFrame:
    """0x37 request (set) or 0x38 reply; ``units`` of 10 ms."""

    addr: int
    cmd: int
    units: int

    @property
    def board(self) -> int:
        return self.addr >> 4

    @property
    def ms(self) -> int:
        return self.units * UNLOCK_TIME_UNIT_MS

    def encode(self) -> bytes:
        return encode_frame(self.addr, self.cmd, self.units.to_bytes(2, "big"))


Frame: TypeAlias = CommandFrame | StatusFrame | UnlockTimeFrame


def _decode(raw: bytes | bytearray) -> Frame:
    addr, cmd = raw[1], raw[2]
    if cmd == REPLY_STATUS:
        return StatusFrame(addr, _bytes_to_bits(raw[3], raw[4]), _bytes_to_bits(raw[5], raw[6]))
    if cmd in (CMD_UNLOCK_TIME, REPLY_UNLOCK_TIME):
        return UnlockTimeFrame(addr, cmd, (raw[3] << 8) | raw[4])
    return CommandFrame(addr, cmd)


# --------------------------------------------------------------------------- incremental parser


class Cu16Parser:
    """Incremental CU16 frame parser: ``feed(bytes) -> list[Frame]``. Pure; not thread-safe.

    Resync rule (why it is sound)
    -----------------------------
    Scanning looks for STX. A candidate at STX position *i* is accepted only when its command
    byte is known (which fixes its length *L*), byte *i+L-2* is ETX and byte *i+L-1* is the
    checksum. When any check fails, **only the STX byte at i is dropped** and scanning resumes
    at *i+1*; nothing after it is skipped. So a genuine frame that starts inside a rejected
    candidate (a truncated frame, garbage containing 0x02, a frame with a bad checksum) is
    still found. A candidate that cannot be judged yet (fewer than *L* bytes) stays pending
    until more bytes arrive.

    Limits, and how the owner closes them:

    * An incomplete false candidate (e.g. the head of a truncated 9-byte status reply) holds
      back a shorter genuine frame behind it until enough bytes arrive to reject it. When the
      line goes quiet, call :meth:`idle`: an incomplete candidate can no longer complete, so
      its STX is dropped and the rest rescanned (frames inside it are recovered).
    * Without timing, a byte stream is ambiguous: garbage ending in ``02 ADDR CMD ...`` whose
      bytes together with the head of the next genuine frame happen to carry a valid ETX and
      checksum *is* a valid frame, and it swallows the genuine one's head. A half-duplex master
      closes this hole by calling :meth:`discard` before every request (nothing received
      before the request can belong to its reply). :class:`Cu16Bus` does.

    Counters: ``frames`` accepted, ``garbage_bytes`` thrown away (every byte fed ends up in
    exactly one of: an accepted frame, ``garbage_bytes``, or :attr:`pending`),
    ``bad_checksum`` candidates whose ETX was in place but SUM was wrong, ``bad_etx``
    candidates of a known command without ETX in place.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.frames = 0
        self.garbage_bytes = 0
        self.bad_checksum = 0
        self.bad_etx = 0

    @property
    def pending(self) -> int:
        """Bytes held back: the head of a candidate frame not yet complete."""
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Add bytes from the line; return every frame completed by them, in order."""
        if data:
            self._buf += data
        return self._scan(final=False)

    def idle(self) -> list[Frame]:
        """The line went quiet: anything pending can never complete. Drop incomplete
        candidates one STX at a time, rescanning the rest; return frames found in it.
        Leaves :attr:`pending` at 0."""
        return self._scan(final=True)

    def discard(self) -> int:
        """Throw away pending bytes (counted as garbage); return how many. Call before a
        request on a half-duplex bus."""
        n = len(self._buf)
        self.garbage_bytes += n
        self._buf.clear()
        return n

    def _scan(self, *, final: bool) -> list[Frame]:
        buf = self._buf
        out: list[Frame] = []
        n = len(buf)
        i = 0
        while i < n:
            j = buf.find(STX, i)
            if j < 0:
                self.garbage_bytes += n - i
                i = n
                break
            self.garbage_bytes += j - i
            i = j
            if n - i < 3:
                if final:
                    self.garbage_bytes += 1
                    i += 1
                    continue
                break
            length = FRAME_LENGTHS.get(buf[i + 2])
            if length is None:  # unknown command: this STX starts no frame
                self.garbage_bytes += 1
                i += 1
                continue
            if n - i < length:
                if final:
                    self.garbage_bytes += 1
                    i += 1
                    continue
                break
            end = i + length
            if buf[end - 2] != ETX:
                self.bad_etx += 1
                self.garbage_bytes += 1
                i += 1
                continue
            if checksum(buf[i : end - 1]) != buf[end - 1]:
                self.bad_checksum += 1
                self.garbage_bytes += 1
                i += 1
                continue
            out.append(_decode(buf[i:end]))
            self.frames += 1
            i = end
        del buf[:i]
        return out


# --------------------------------------------------------------------------- bus driver


class Cu16Listener(Protocol):
    """What :class:`Cu16Bus` reports. Every callback runs on the bus thread: keep it cheap,
    never block, never call :meth:`Cu16Bus.close` and wait for it from here. ``t`` comes from
    the bus's injectable ``monotonic`` clock."""

    def on_status(
        self, board: int, closed: tuple[bool, ...], items: tuple[bool, ...], t: float
    ) -> None:
        """First good reading of a board (also the first after a fault) and every change.
        ``closed[i]`` / ``items[i]`` are lock/sensor ``i + 1``; polarity already applied."""
        ...

    def on_unlock_sent(self, board: int, lock: int, t: float) -> None:
        """An unlock frame for ``lock`` (1-16) was written to the port."""
        ...

    def on_board_fault(self, board: int, reason: str) -> None:
        """Once, after ``fault_after`` consecutive missed/invalid replies or a port failure."""
        ...

    def on_board_recovered(self, board: int) -> None:
        """Once, when a faulted board answers again (an ``on_status`` follows)."""
        ...

    def on_garbage(self, count: int) -> None:
        """``count`` received bytes were thrown away since the last report."""
        ...


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
        _check_board(self.board_id)
        if self.closed_bit not in (0, 1) or isinstance(self.closed_bit, bool):
            raise ValueError(f"closed_bit must be 0 or 1, got {self.closed_bit!r}")
        _check_ms(self.pulse_ms)


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
    port_errors: int = 0
    listener_errors: int = 0
    late_frames: int = 0


class Cu16Bus:
    """One CU16 RS-485 bus (boards 0-9) driven from its own daemon thread.

    The thread opens the port (``serial.serial_for_url``: a device path, a pty path or
    ``socket://host:port``), then loops: pending commands first (unlock, set pulse time),
    then due re-queries, then one status poll per configured board every ``1/poll_hz`` s.
    One request is outstanding at a time (half duplex); each waits at most ``reply_timeout``
    for its reply. Between requests the thread blocks on a condition variable, so an idle bus
    costs almost no CPU.

    Safety: unlocks are spaced so that no two coils on the bus are energised at once (the
    board's pulse time plus ``coil_gap``); an unlock not sent within ``command_ttl`` seconds
    (e.g. the port is down) is dropped and logged, never sent late; ``set_unlock_time``
    refuses pulses above ``max_pulse_ms``.

    Failures: a board that misses ``fault_after`` consecutive replies is reported once with
    ``on_board_fault`` and keeps being polled every cycle; its misses cost only its own
    ``reply_timeout``. If the port itself fails, every board is reported faulted and the port
    is reopened with exponential backoff (``reopen_backoff`` = (first, max) seconds). No
    exception from I/O or the listener ends the thread.

    Clocks: callback timestamps come from ``monotonic`` (injectable, default
    ``time.monotonic``); scheduling, timeouts and coil spacing always use the real
    ``time.monotonic`` because they deal with real hardware.

    Threading: every public method is thread-safe. Callbacks run on the bus thread.
    """

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
        self._baudrate = baudrate
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
        _check_int("fault_after", fault_after, 1, 1_000_000)
        if requery_delay < 0 or coil_gap < 0 or command_ttl <= 0:
            raise ValueError("requery_delay and coil_gap must be >= 0, command_ttl > 0")
        _check_ms(max_pulse_ms)
        if not 0 < reopen_backoff[0] <= reopen_backoff[1]:
            raise ValueError(
                f"reopen_backoff must be (first, max) with 0 < first <= max, got {reopen_backoff!r}"
            )
        self._url = url
        self._listener = listener
        self._period = 1.0 / poll_hz
        self._reply_timeout = reply_timeout
        self._fault_after = fault_after
        self._requery_delay = requery_delay
        self._coil_gap = coil_gap
        self._command_ttl = command_ttl
        self._max_pulse_ms = max_pulse_ms
        self._backoff_first, self._backoff_max = reopen_backoff
        self._write_timeout = write_timeout
        self._monotonic = monotonic
        self._boards: dict[int, _BoardState] = {
            s.board_id: _BoardState(settings=s, pulse_ms=s.pulse_ms) for s in settings
        }
        self._log = log.bind(bus=url)

        # Shared with callers (guarded by _cond).
        self._cond = threading.Condition()
        self._commands: collections.deque[_Command] = collections.deque()
        self._wakeup = False
        self._stop = False
        self._thread: threading.Thread | None = None

        # Bus-thread only.
        self._port: Any = None
        self._parser = Cu16Parser()
        self._garbage_reported = 0
        self._poll_pending: collections.deque[int] = collections.deque()
        self._next_cycle = 0.0
        self._coil_free_at = 0.0
        self._backoff = self._backoff_first
        self._stats = _Stats()

    # ------------------------------------------------------------------ public API

    @property
    def url(self) -> str:
        return self._url

    @property
    def boards(self) -> tuple[int, ...]:
        return tuple(self._boards)

    def start(self) -> None:
        """Start the bus thread (it opens the port). Calling it again does nothing."""
        with self._cond:
            if self._stop:
                raise RuntimeError("Cu16Bus was closed; make a new one")
            if self._thread is not None:
                return
            self._thread = threading.Thread(
                target=self._run, name=f"cu16-bus[{self._url}]", daemon=True
            )
            self._thread.start()

    def unlock(self, board: int, lock: int) -> None:
        """Queue an unlock of ``lock`` (1-16) on ``board``. Returns at once; the bus thread
        sends it before the next poll, but never while another coil on the bus is still
        energised. ``on_unlock_sent`` confirms the write; the door state follows via
        ``on_status`` (a jammed lock fires but reports no change). An unlock that cannot be
        sent within ``command_ttl`` (port down, long coil queue) is dropped and logged, never
        sent late. Raises ValueError for a bad or unconfigured board/lock, RuntimeError after
        :meth:`close`."""
        self._check_configured(board)
        _check_lock(lock)
        self._enqueue(_Unlock(board, lock, time.monotonic()))

    def set_unlock_time(self, board: int, ms: int) -> None:
        """Queue a 0x37 "set pulse time" for ``board`` (``ms`` in 10 ms steps). Raises
        ValueError for bad arguments and CoilSafetyError above ``max_pulse_ms``."""
        self._check_configured(board)
        _check_ms(ms)
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
            "port_errors": s.port_errors,
            "listener_errors": s.listener_errors,
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

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread (within about one ``reply_timeout``) and close the port. Safe to
        call twice. Called from a listener callback, it only asks the thread to stop."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            thread = self._thread
        if thread is None:
            self._close_port()
            return
        if thread is threading.current_thread():
            return
        thread.join(timeout)
        if thread.is_alive():
            self._log.warning("cu16_close_timeout", timeout=timeout)

    def __enter__(self) -> Cu16Bus:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ caller side helpers

    def _check_configured(self, board: int) -> None:
        _check_board(board)
        if board not in self._boards:
            raise ValueError(f"board {board} is not configured on bus {self._url}")

    def _enqueue(self, command: _Command) -> None:
        with self._cond:
            if self._stop:
                raise RuntimeError("Cu16Bus is closed")
            self._commands.append(command)
            self._wakeup = True
            self._cond.notify_all()

    # ------------------------------------------------------------------ bus thread

    def _run(self) -> None:
        self._log.info("cu16_bus_start", boards=list(self._boards), period_s=self._period)
        self._next_cycle = time.monotonic()
        try:
            while not self._stopping():
                try:
                    if self._port is None:
                        if not self._open_port():
                            self._sleep(self._backoff)
                            self._backoff = min(self._backoff * 2, self._backoff_max)
                        continue
                    self._step()
                except (serial.SerialException, OSError) as exc:
                    self._port_failed(exc)
                except Exception:
                    self._log.exception("cu16_bus_error")
                    self._sleep(0.1)
        finally:
            self._close_port()
            self._log.info("cu16_bus_stop")

    def _stopping(self) -> bool:
        with self._cond:
            return self._stop

    def _sleep(self, seconds: float) -> None:
        with self._cond:
            if not self._stop and seconds > 0:
                self._cond.wait(seconds)

    def _open_port(self) -> bool:
        try:
            port = serial.serial_for_url(
                self._url,
                baudrate=self._baudrate,
                bytesize=serial.EIGHTBITS,
                parity=serial.PARITY_NONE,
                stopbits=serial.STOPBITS_ONE,
                timeout=self._reply_timeout,
                write_timeout=self._write_timeout,
            )
        except Exception as exc:  # SerialException, OSError, ValueError for a bad URL
            self._log.warning("cu16_port_open_failed", error=str(exc), retry_s=self._backoff)
            self._stats.port_errors += 1
            self._fault_all(f"port error: {exc}")
            return False
        self._port = port
        self._parser.discard()
        self._backoff = self._backoff_first
        self._next_cycle = time.monotonic()
        self._poll_pending.clear()
        self._log.info("cu16_port_open")
        return True

    def _close_port(self) -> None:
        port, self._port = self._port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:
                self._log.warning("cu16_port_close_failed", error=str(exc))

    def _port_failed(self, exc: BaseException) -> None:
        self._stats.port_errors += 1
        self._log.warning("cu16_port_error", error=str(exc), retry_s=self._backoff)
        self._close_port()
        self._fault_all(f"port error: {exc}")
        self._sleep(self._backoff)
        self._backoff = min(self._backoff * 2, self._backoff_max)

    def _fault_all(self, reason: str) -> None:
        for board, st in self._boards.items():
            st.misses = max(st.misses, self._fault_after)
            st.requery_at = None
            if not st.faulted:
                self._set_fault(board, st, reason)

    def _step(self) -> None:
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
            if not self._stop and not self._wakeup:
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
        port.write(request)

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
                if found is None and frame.board == board and _reply_cmd(frame) == cmd:
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
        self._coil_free_at = sent + st.pulse_ms / 1000.0 + self._coil_gap
        self._stats.unlocks_sent += 1
        t = self._monotonic()
        self._log.info("cu16_unlock_sent", board=board, lock=lock, pulse_ms=st.pulse_ms)
        self._emit("on_unlock_sent", lambda: self._listener.on_unlock_sent(board, lock, t))
        if st.settings.unlock_replies:
            frame, garbled = self._await(REPLY_STATUS, board)
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

    def _emit(self, name: str, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:
            self._stats.listener_errors += 1
            self._log.exception("cu16_listener_error", callback=name)


def _reply_cmd(frame: Frame) -> int:
    if isinstance(frame, StatusFrame):
        return REPLY_STATUS
    return frame.cmd
