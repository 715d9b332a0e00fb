"""Modbus RTU relay boards for locker banks: the requests and replies, on top of pymodbus.

pymodbus does the framing (slave address, PDU, CRC-16) and the PDU encoding; this module
only names the few requests a lock bus needs and adds the one PDU the library has no class
for, and :class:`RtuReceiver`, which turns the bytes of a line into PDUs and counts what it
had to throw away. Pure: no I/O, no threads.

The relay boards (the common 8/16/32-channel "Modbus RTU relay" boards, e.g. Waveshare's,
factory setting 9600 8N1, slave 1) are addressed like this; relay *n* and door input *n*
are numbered from 1 here and sit at Modbus address ``n - 1``:

==========================  =============================================================
read the door switches      function 02 (read discrete inputs), address 0, count = relays
relay on / off              function 05 (write single coil), address ``n - 1``,
                            value ``0xFF00`` (on) / ``0x0000`` (off)
all relays off              function 15 (write multiple coils), address 0, all zero
relay "flash on"            function 05, address ``0x0200 + n - 1``, value = on-time in
                            units of 100 ms: the board switches the relay on and, by
                            itself, off again after that time (``01 05 02 00 00 07 8D B0``:
                            slave 1, relay 1, 700 ms). The board answers with an echo.
==========================  =============================================================

A board without the flash command answers it with a Modbus exception (illegal address
or value); such boards are driven with ``pulse: driver`` (coil on, then off).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pymodbus.framer import FramerRTU
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.bit_message import (
    ReadDiscreteInputsRequest,
    ReadDiscreteInputsResponse,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
)

from drivers.settings import (
    FLASH_UNIT_MS,
    MAX_RELAYS,
    MAX_SLAVE,
    PULSE_MODES,
    ModbusBoardSettings,
    check_int,
    check_pulse,
)

__all__ = [
    "COIL_OFF",
    "COIL_ON",
    "FLASH_ON_BASE",
    "FLASH_UNIT_MS",
    "FN_READ_INPUTS",
    "FN_WRITE_COIL",
    "FN_WRITE_COILS",
    "MAX_FLASH_MS",
    "MAX_RELAYS",
    "MAX_SLAVE",
    "PULSE_MODES",
    "ExceptionResponse",
    "ModbusBoardSettings",
    "ModbusPDU",
    "ReadDiscreteInputsRequest",
    "ReadDiscreteInputsResponse",
    "RtuReceiver",
    "WriteCoilRaw",
    "WriteMultipleCoilsRequest",
    "WriteMultipleCoilsResponse",
    "all_off_request",
    "bits_of",
    "check_int",
    "check_pulse",
    "coil_request",
    "decoder",
    "encode",
    "flash_request",
    "inputs_request",
    "matches",
]

FN_READ_INPUTS = 0x02
FN_WRITE_COIL = 0x05
FN_WRITE_COILS = 0x0F

COIL_ON = 0xFF00
COIL_OFF = 0x0000
FLASH_ON_BASE = 0x0200
MAX_FLASH_MS = 0xFFFF * FLASH_UNIT_MS


class WriteCoilRaw(ModbusPDU):
    """Function 05 with its 16-bit value kept as sent. pymodbus's own ``WriteSingleCoil``
    classes only know ``0xFF00``/``0x0000``; the relay boards' flash command puts a time in
    the value. Registered on this module's decoders for function 05, both directions."""

    function_code = FN_WRITE_COIL
    rtu_frame_size = 8

    def __init__(
        self, dev_id: int = 0, address: int = 0, value: int = 0, transaction_id: int = 0
    ) -> None:
        super().__init__(dev_id=dev_id, transaction_id=transaction_id, address=address)
        self.value = value

    def encode(self) -> bytes:
        self.verifyAddress()
        if not 0 <= self.value <= 0xFFFF:
            raise ValueError(f"value must be 0..0xFFFF, got {self.value!r}")
        return struct.pack(">HH", self.address, self.value)

    def decode(self, data: bytes) -> None:
        self.address, self.value = struct.unpack(">HH", data[:4])

    def __str__(self) -> str:
        return (
            f"WriteCoilRaw(dev_id={self.dev_id}, address={self.address:#06x}, "
            f"value={self.value:#06x})"
        )


def decoder(*, is_server: bool) -> DecodePDU:
    """A pymodbus PDU decoder for requests (``is_server``, the simulated board) or replies
    (the driver), with function 05 decoded as :class:`WriteCoilRaw`."""
    dec = DecodePDU(is_server=is_server)
    dec.register(WriteCoilRaw)
    return dec


def inputs_request(slave: int, count: int) -> ReadDiscreteInputsRequest:
    """Read discrete inputs 1..``count`` (the door switches)."""
    check_int("slave", slave, 1, MAX_SLAVE)
    check_int("count", count, 1, MAX_RELAYS)
    return ReadDiscreteInputsRequest(address=0, count=count, dev_id=slave)


def coil_request(slave: int, relay: int, on: bool) -> WriteCoilRaw:
    """Switch relay ``relay`` (1-based) on or off."""
    check_int("slave", slave, 1, MAX_SLAVE)
    check_int("relay", relay, 1, MAX_RELAYS)
    return WriteCoilRaw(slave, relay - 1, COIL_ON if on else COIL_OFF)


def flash_request(slave: int, relay: int, ms: int) -> WriteCoilRaw:
    """ "Flash on": the board closes ``relay`` for ``ms`` (a multiple of 100 ms), then opens
    it by itself."""
    check_int("slave", slave, 1, MAX_SLAVE)
    check_int("relay", relay, 1, MAX_RELAYS)
    check_int("ms", ms, FLASH_UNIT_MS, MAX_FLASH_MS)
    if ms % FLASH_UNIT_MS:
        raise ValueError(f"ms must be a multiple of {FLASH_UNIT_MS}, got {ms!r}")
    return WriteCoilRaw(slave, FLASH_ON_BASE + relay - 1, ms // FLASH_UNIT_MS)


def all_off_request(slave: int, relays: int) -> WriteMultipleCoilsRequest:
    """Relays 1..``relays`` off in one request."""
    check_int("slave", slave, 1, MAX_SLAVE)
    check_int("relays", relays, 1, MAX_RELAYS)
    return WriteMultipleCoilsRequest(address=0, bits=[False] * relays, dev_id=slave)


_ENCODER = FramerRTU(DecodePDU(is_server=False))


def encode(pdu: ModbusPDU) -> bytes:
    """The RTU frame of ``pdu``: slave address, function, data, CRC-16 (pymodbus)."""
    return bytes(_ENCODER.buildFrame(pdu))


def matches(request: ModbusPDU, reply: ModbusPDU) -> bool:
    """Is ``reply`` the normal answer to ``request``? (An exception reply is not.)"""
    if reply.dev_id != request.dev_id or reply.function_code != request.function_code:
        return False
    if isinstance(request, WriteCoilRaw):
        return (
            isinstance(reply, WriteCoilRaw)
            and reply.address == request.address
            and reply.value == request.value
        )
    if isinstance(request, ReadDiscreteInputsRequest):
        return isinstance(reply, ReadDiscreteInputsResponse) and len(reply.bits) >= request.count
    if isinstance(request, WriteMultipleCoilsRequest):
        return (
            isinstance(reply, WriteMultipleCoilsResponse)
            and reply.address == request.address
            and reply.count == len(request.bits)
        )
    return True


class RtuReceiver:
    """Bytes from the line in, PDUs out. Not thread-safe.

    pymodbus provides every piece of the RTU framing: which function codes exist and how
    long their frames are (``DecodePDU.lookupPduClass``, ``calculateRtuFrameSize``), the
    CRC-16 (``FramerRTU.check_CRC``) and the PDU decoding. The hunt for a frame start is
    done here rather than with ``FramerRTU.decode``, because that drops everything received
    so far at the first candidate whose CRC is wrong: one junk byte in front of a reply
    that happens to look like a function code would cost the reply itself.

    Resync rule: a candidate at position *i* (slave address, known function code, length
    from the function) is accepted only when its CRC is right; otherwise only byte *i* is
    dropped and the hunt goes on at *i + 1*, so a genuine frame starting inside a rejected
    candidate is still found. A candidate not complete yet stays pending until more bytes
    arrive, or until :meth:`idle` (the line went quiet: it can never complete) drops it one
    byte at a time and finds the frames behind. :meth:`discard` forgets everything pending;
    a half-duplex master calls it before each request (nothing received earlier can be its
    reply).

    Counters: ``frames`` decoded, ``garbage_bytes`` thrown away (every byte fed ends up in
    a frame, in ``garbage_bytes`` or in :attr:`pending`), ``bad_crc`` candidates whose CRC
    was wrong, ``undecodable`` frames with a good CRC that pymodbus could not decode.
    """

    MIN_FRAME = 4  # address, function, CRC

    def __init__(self, *, is_server: bool) -> None:
        self._decoder = decoder(is_server=is_server)
        self._buf = bytearray()
        self.frames = 0
        self.garbage_bytes = 0
        self.bad_crc = 0
        self.undecodable = 0

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray) -> list[ModbusPDU]:
        """Add bytes from the line; return every frame they completed, in order."""
        if data:
            self._buf += data
        return self._scan(final=False)

    def idle(self) -> list[ModbusPDU]:
        """The line is quiet: what is pending cannot grow into a frame any more. Returns
        the frames found in it; leaves :attr:`pending` at 0."""
        return self._scan(final=True)

    def discard(self) -> int:
        """Throw away pending bytes (counted as garbage); return how many."""
        n = len(self._buf)
        self.garbage_bytes += n
        self._buf.clear()
        return n

    def _frame_size(self, data: bytes) -> int:
        """Length of the frame a candidate at ``data[0]`` would have: -1 when ``data[1]``
        is no function code we decode, 0 when more bytes are needed to tell."""
        try:
            pdu_class = self._decoder.lookupPduClass(data)
            if pdu_class is None:
                return -1
            return int(pdu_class.calculateRtuFrameSize(data))
        except Exception:  # pymodbus cannot size this function: not a frame we expect
            return -1

    def _scan(self, *, final: bool) -> list[ModbusPDU]:
        buf = self._buf
        out: list[ModbusPDU] = []
        n = len(buf)
        i = 0
        while n - i >= self.MIN_FRAME:
            data = bytes(buf[i:])
            size = self._frame_size(data)
            if size < 0:
                i += 1
                self.garbage_bytes += 1
                continue
            if size == 0 or n - i < size:  # incomplete candidate
                if not final:
                    break
                i += 1
                self.garbage_bytes += 1
                continue
            frame = data[:size]
            crc = (frame[-2] << 8) | frame[-1]
            if not FramerRTU.check_CRC(frame[:-2], crc):
                self.bad_crc += 1
                self.garbage_bytes += 1
                i += 1
                continue
            i += size
            pdu = self._decoder.decode(frame[1:-2])
            if pdu is None:
                self.undecodable += 1
                self.garbage_bytes += size
                continue
            pdu.dev_id = frame[0]
            self.frames += 1
            out.append(pdu)
        if final and i < n:
            self.garbage_bytes += n - i
            i = n
        del buf[:i]
        return out


def bits_of(reply: ModbusPDU, count: int) -> tuple[bool, ...]:
    """The first ``count`` bits of a read reply."""
    bits: Sequence[bool] = reply.bits
    return tuple(bool(b) for b in bits[:count])
