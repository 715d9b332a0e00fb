"""Simulated Modbus RTU relay boards (one or more slaves) on the far side of a pty pair.

:class:`SimulatedModbusBus`, a :class:`~simulator.boardbus_device.SimulatedBoardBus` (doors,
faults and the serving it shares with the CU16 boards), serves the master
side of a pty with pymodbus's PDUs and CRC (:mod:`drivers.modbus_protocol`): the lock-bus
driver under test opens :attr:`SimulatedModbusBus.port` exactly like a USB RS-485 adapter.

Served per board (slave id) on this bus; other slave ids stay silent:

* function 01 / 02: read the relays / the door inputs (``closed_bit`` when the door is
  shut, the inverse when open);
* function 05: relay on (``0xFF00``) or off (``0x0000``), or "flash on" at
  ``0x0200 + relay - 1`` with the on-time in 100 ms units, when the board has the flash
  command (``flash``; without it that address is answered with exception 02);
* function 15: write several relays (the driver's "all off");
* anything else: exception 01 (illegal function).

Physical model per door: shut (latched) or open. A relay switching on makes a shut door
spring open, unless its lock is jammed. Doors are forced open and pushed shut by hand with
the control methods. Every relay pulse is recorded (:meth:`SimulatedModbusBus.snapshot`).

Faults per board: ``silent`` (dead: neither answers nor acts), ``corrupt`` (acts, but every
reply has junk in front and a wrong CRC), ``noisy`` (acts and answers correctly, but junk
precedes every reply: the driver must find the frame behind it).

Threading: every public method is thread-safe; no global state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pymodbus.pdu.bit_message import (
    ReadCoilsRequest,
    ReadCoilsResponse,
    ReadDiscreteInputsResponse,
)

from drivers.modbus_protocol import (
    COIL_OFF,
    COIL_ON,
    FLASH_ON_BASE,
    FLASH_UNIT_MS,
    MAX_RELAYS,
    MAX_SLAVE,
    ExceptionResponse,
    ModbusPDU,
    ReadDiscreteInputsRequest,
    RtuReceiver,
    WriteCoilRaw,
    WriteMultipleCoilsRequest,
    WriteMultipleCoilsResponse,
    encode,
)
from simulator.boardbus_device import SimulatedBoardBus, check_closed_bit

ILLEGAL_FUNCTION = 0x01
ILLEGAL_ADDRESS = 0x02
ILLEGAL_VALUE = 0x03
NOISE = (0x00, 0x01, 0x02, 0x05, 0x0F, 0x83, 0xFF)
NEVER = float("inf")


@dataclass(slots=True)
class _Board:
    slave: int
    relays: int
    closed_bit: int
    flash: bool
    door_open: list[bool]
    forced: list[bool]
    jammed: list[bool]
    relay_until: list[float]  # on until then (inf: until switched off)
    pulse_index: list[int | None]  # the running pulse's entry in the history
    silent: bool = False
    corrupt: bool = False
    noisy: bool = False
    requests: int = 0
    input_reads: int = 0

    @property
    def locks(self) -> int:
        return self.relays

    def as_dict(self, now: float) -> dict[str, Any]:
        return {
            "board": self.slave,
            "door_open": list(self.door_open),
            "forced": list(self.forced),
            "jammed": list(self.jammed),
            "relay_on": [now < until for until in self.relay_until],
            "silent": self.silent,
            "corrupt": self.corrupt,
            "noisy": self.noisy,
            "closed_bit": self.closed_bit,
            "flash": self.flash,
            "requests": self.requests,
            "input_reads": self.input_reads,
        }


@dataclass(slots=True)
class _Pulse:
    board: int
    lock: int
    start: float
    end: float | None
    via: str  # "flash" (board-timed) or "coil" (on ... off)

    def as_dict(self) -> dict[str, Any]:
        return {
            "board": self.board,
            "lock": self.lock,
            "start": self.start,
            "end": self.end,
            "via": self.via,
        }


class SimulatedModbusBus(SimulatedBoardBus[_Board, ModbusPDU]):
    """Simulated relay boards behind a pty. See the module docstring.

    ``boards``: slave ids (1-255) on this bus, each with ``relays`` relays and as many door
    inputs; ``closed_bit`` and ``flash`` are the initial per-board settings. ``monotonic``
    stamps the pulse history and times flashes; ``seed`` makes the junk reproducible;
    ``link_name`` serves :attr:`port` as a stable link (for unplug tests).
    Locks (relays) are numbered 1..relays in every control method.
    """

    BOARD = "slave"
    _parser: RtuReceiver

    def __init__(
        self,
        boards: Sequence[int],
        *,
        relays: int = 8,
        closed_bit: int = 1,
        flash: bool = True,
        monotonic: Callable[[], float] = time.monotonic,
        seed: int = 0,
        link_name: str | None = None,
    ) -> None:
        ids = list(boards)
        if not ids or len(set(ids)) != len(ids):
            raise ValueError(f"boards must be distinct slave ids, got {ids!r}")
        for slave in ids:
            if isinstance(slave, bool) or not isinstance(slave, int) or not 1 <= slave <= MAX_SLAVE:
                raise ValueError(f"slave ids are ints in 1..{MAX_SLAVE}, got {slave!r}")
        if not 1 <= relays <= MAX_RELAYS:
            raise ValueError(f"relays must be in 1..{MAX_RELAYS}, got {relays!r}")
        check_closed_bit(closed_bit)
        super().__init__(
            RtuReceiver(is_server=True), monotonic=monotonic, seed=seed, link_name=link_name
        )
        self._boards = {
            s: _Board(
                s,
                relays,
                closed_bit,
                flash,
                door_open=[False] * relays,
                forced=[False] * relays,
                jammed=[False] * relays,
                relay_until=[0.0] * relays,
                pulse_index=[None] * relays,
            )
            for s in sorted(ids)
        }
        self._pulses: list[_Pulse] = []
        self._overlapping = 0
        self._start_serving(f"modbus-sim[{self.port}]")

    # ------------------------------------------------------------------ public API

    def set_item(self, board: int, lock: int, present: bool) -> None:
        """Relay boards have door inputs only."""
        raise ValueError("Modbus relay boards have no item sensors")

    def set_noisy(self, board: int, noisy: bool = True) -> None:
        with self._lock:
            self._board(board).noisy = bool(noisy)

    def set_flash(self, board: int, flash: bool) -> None:
        """Whether the board has the "flash on" command."""
        with self._lock:
            self._board(board).flash = bool(flash)

    def relay_on(self, board: int, lock: int) -> bool:
        with self._lock:
            b, i = self._locate(board, lock)
            return self._monotonic() < b.relay_until[i]

    def pulses(self) -> list[dict[str, Any]]:
        """Every relay pulse so far, oldest first: ``board``, ``lock``, ``start``, ``end``
        (None while a driver-switched relay is still on), ``via`` (flash / coil)."""
        with self._lock:
            return [p.as_dict() for p in self._pulses]

    def snapshot(self) -> dict[str, Any]:
        """JSON-serialisable state: ``boards`` keyed by ``str(slave)``, ``pulses``,
        ``overlapping_pulses`` (pulses started while another relay on this bus was on),
        what the boards received (``frames``, ``garbage_bytes``, ``bad_crc``) and
        simulator trouble (``dropped_reply_bytes``, ``errors``)."""
        with self._lock:
            now = self._monotonic()
            return {
                "port": self.port,
                "protocol": "modbus-rtu",
                "boards": {str(s): b.as_dict(now) for s, b in self._boards.items()},
                "pulses": [p.as_dict() for p in self._pulses],
                "overlapping_pulses": self._overlapping,
                "frames": self._parser.frames,
                "garbage_bytes": self._parser.garbage_bytes,
                "bad_crc": self._parser.bad_crc,
                "dropped_reply_bytes": self._dropped_bytes,
                "errors": self._errors,
            }

    # ------------------------------------------------------------------ internals

    def _apply(self, request: ModbusPDU) -> bytes:
        """Act on one request (lock held); return the bytes to answer with."""
        b = self._boards.get(request.dev_id)
        if b is None:
            return b""
        b.requests += 1
        if b.silent:
            return b""
        reply = encode(self._answer(b, request))
        if b.corrupt:
            junk = bytes(self._random.choice(NOISE) for _ in range(3))
            reply = junk + reply[:-1] + bytes(((reply[-1] + 1) & 0xFF,))
        elif b.noisy:
            reply = bytes(self._random.choice(NOISE) for _ in range(3)) + reply
        return reply

    def _answer(self, b: _Board, request: ModbusPDU) -> ModbusPDU:
        now = self._monotonic()
        slave = b.slave
        fc = request.function_code
        if isinstance(request, ReadCoilsRequest):  # also ReadDiscreteInputsRequest
            if request.address + request.count > b.relays:
                return ExceptionResponse(fc, ILLEGAL_ADDRESS, device_id=slave)
            span = range(request.address, request.address + request.count)
            if isinstance(request, ReadDiscreteInputsRequest):
                b.input_reads += 1
                closed = bool(b.closed_bit)
                bits = [closed != b.door_open[i] for i in span]
                return ReadDiscreteInputsResponse(dev_id=slave, bits=bits)
            return ReadCoilsResponse(dev_id=slave, bits=[now < b.relay_until[i] for i in span])
        if isinstance(request, WriteCoilRaw):
            address, value = request.address, request.value
            if address < b.relays:
                if value not in (COIL_ON, COIL_OFF):
                    return ExceptionResponse(fc, ILLEGAL_VALUE, device_id=slave)
                self._switch(b, address, value == COIL_ON, now)
            elif b.flash and FLASH_ON_BASE <= address < FLASH_ON_BASE + b.relays:
                if value == 0:
                    return ExceptionResponse(fc, ILLEGAL_VALUE, device_id=slave)
                self._switch(b, address - FLASH_ON_BASE, True, now, value * FLASH_UNIT_MS)
            else:
                return ExceptionResponse(fc, ILLEGAL_ADDRESS, device_id=slave)
            return WriteCoilRaw(slave, address, value)
        if isinstance(request, WriteMultipleCoilsRequest):
            if request.address + request.count > b.relays:
                return ExceptionResponse(fc, ILLEGAL_ADDRESS, device_id=slave)
            for offset, on in enumerate(request.bits[: request.count]):
                self._switch(b, request.address + offset, bool(on), now)
            return WriteMultipleCoilsResponse(
                address=request.address, count=request.count, dev_id=slave
            )
        return ExceptionResponse(fc & 0x7F, ILLEGAL_FUNCTION, device_id=slave)

    def _switch(self, b: _Board, i: int, on: bool, now: float, flash_ms: int = 0) -> None:
        was_on = now < b.relay_until[i]
        if not on:
            if was_on:
                self._end_pulse(b, i, now)
            b.relay_until[i] = min(b.relay_until[i], now)
            return
        if not was_on:
            if any(now < until for other in self._boards.values() for until in other.relay_until):
                self._overlapping += 1
            end = now + flash_ms / 1000.0 if flash_ms else None
            b.pulse_index[i] = len(self._pulses)
            self._pulses.append(_Pulse(b.slave, i + 1, now, end, "flash" if flash_ms else "coil"))
            if not b.jammed[i] and not b.door_open[i]:
                b.door_open[i] = True
                b.forced[i] = False
        elif flash_ms:  # a new flash while on: the board restarts its timer
            self._end_pulse(b, i, now)
            b.pulse_index[i] = len(self._pulses)
            self._pulses.append(_Pulse(b.slave, i + 1, now, now + flash_ms / 1000.0, "flash"))
        b.relay_until[i] = now + flash_ms / 1000.0 if flash_ms else NEVER

    def _end_pulse(self, b: _Board, i: int, now: float) -> None:
        index = b.pulse_index[i]
        if index is not None:
            pulse = self._pulses[index]
            pulse.end = now if pulse.end is None else min(pulse.end, now)
            b.pulse_index[i] = None
