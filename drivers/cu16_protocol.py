"""Kerong CU16 ("KR-CU16", "CU12") serial lock-control boards: the wire protocol (pure: no
I/O, no threads). The bus driver that speaks it is :class:`drivers.cu16.Cu16Bus`; the simulated
boards (:mod:`simulator.cu16_device`) speak it too.

Wire format (RS-485, half duplex, 19200 8N1)::

    STX(0x02) ADDR CMD [DATA...] ETX(0x03) SUM      SUM = sum of all preceding bytes mod 256
    ADDR = (board << 4) | lock_index                lock_index 0-15, lock 1 = index 0

Frame lengths are fixed per command (see :data:`FRAME_LENGTHS`): 5 bytes for 0x30-0x33,
7 bytes for 0x37/0x38 (HI LO pulse time in 10 ms units before ETX), 9 bytes for the 0x35
status reply (``L1-8 L9-16 IR1-8 IR9-16``, bit 0 = lowest-numbered lock/sensor).

``encode_*`` functions build frames (and validate their arguments: ValueError naming the
argument); :class:`Cu16Parser` is an incremental parser fed with whatever bytes the line
produced. It never raises on input and counts what it had to throw away. Parsers are not
thread-safe; each belongs to one thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeAlias

__all__ = [
    "BAUDRATE",
    "BROADCAST_ADDRESSES",
    "CMD_QUERY_ALL",
    "CMD_STATUS",
    "CMD_UNLOCK",
    "CMD_UNLOCK_ALL",
    "CMD_UNLOCK_TIME",
    "ETX",
    "FRAME_LENGTHS",
    "LOCKS_PER_BOARD",
    "MAX_BOARD",
    "MAX_FRAME_LEN",
    "MAX_UNLOCK_TIME_MS",
    "REPLY_ALL_STATUS",
    "REPLY_STATUS",
    "REPLY_UNLOCK_TIME",
    "STX",
    "UNLOCK_TIME_UNIT_MS",
    "CommandFrame",
    "Cu16Parser",
    "Frame",
    "StatusFrame",
    "UnlockTimeFrame",
    "board_address",
    "check_board",
    "check_int",
    "check_lock",
    "check_ms",
    "checksum",
    "encode_frame",
    "encode_query_all",
    "encode_set_unlock_time",
    "encode_status_query",
    "encode_status_reply",
    "encode_unlock",
    "encode_unlock_all",
    "encode_unlock_time_reply",
    "reply_cmd",
]

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


def check_int(name: str, value: object, lo: int, hi: int) -> int:
    """``value`` if it is an int (not a bool) in ``lo..hi``, else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name} must be an int in {lo}..{hi}, got {value!r}")
    return value


def check_board(board: object) -> int:
    """A board id 0-9."""
    return check_int("board", board, 0, MAX_BOARD)


def check_lock(lock: object) -> int:
    """A lock number 1-16."""
    return check_int("lock", lock, 1, LOCKS_PER_BOARD)


def check_ms(ms: object) -> int:
    """A pulse time in ms: 10-655350 in steps of 10."""
    value = check_int("ms", ms, UNLOCK_TIME_UNIT_MS, MAX_UNLOCK_TIME_MS)
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
    check_int("addr", addr, 0, 0xFF)
    check_int("cmd", cmd, 0, 0xFF)
    body = bytes((STX, addr, cmd)) + bytes(data) + bytes((ETX,))
    return body + bytes((checksum(body),))


def board_address(board: int, lock: int | None = None) -> int:
    """ADDR byte: ``(board << 4) | (lock - 1)``; lock ``None`` gives low nibble 0."""
    b = check_board(board)
    index = 0 if lock is None else check_lock(lock) - 1
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
    units = check_ms(ms) // UNLOCK_TIME_UNIT_MS
    return encode_frame(board_address(board), CMD_UNLOCK_TIME, units.to_bytes(2, "big"))


def encode_unlock_time_reply(board: int, ms: int) -> bytes:
    """0x38: a board's answer to 0x37 (used by the simulator)."""
    units = check_ms(ms) // UNLOCK_TIME_UNIT_MS
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


def reply_cmd(frame: Frame) -> int:
    """The command byte a reply frame answers with (0x35 for a status frame)."""
    if isinstance(frame, StatusFrame):
        return REPLY_STATUS
    return frame.cmd
