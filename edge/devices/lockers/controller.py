"""The parcel-locker bank: CU16 and Modbus buses and GPIO lockers behind one door/lock
interface, coil safety, the locker machine, and the locker commands; offline pickup by code
at its reader is its :class:`~edge.devices.lockers.pickup_desk.PickupDesk`. Core thread
only, except the small listener shims that post from driver threads."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, cast

import structlog
from pydantic import BaseModel

from drivers.base import Coil, Hardware, LockBus
from drivers.settings import BoardSettings, Cu16BusSettings, ModbusBoardSettings, ModbusBusSettings
from edge.core.commands import CommandContext, Deferred
from edge.core.errors import CommandError
from edge.core.ports import Ports
from edge.devices.inputs import DebouncedInput
from edge.devices.kind import BuildContext, ControllerBase, section
from edge.devices.lockers import KIND, pickup
from edge.devices.lockers.commands import (
    LockerAssignArgs,
    LockerOpenArgs,
    LockerReleaseArgs,
    LockerServiceArgs,
    LockerStatusArgs,
)
from edge.devices.lockers.config import (
    Cu16BoardConfig,
    LockersConfig,
    LockersDevices,
    ModbusBoardConfig,
)
from edge.devices.lockers.events import (
    BoardFault,
    BoardRecovered,
    DoorForced,
    DoorOpened,
    LockFault,
)
from edge.devices.lockers.hardware import LockerHardware
from edge.devices.lockers.pickup import CodeHash, CodeHasher
from edge.devices.lockers.pickup_desk import PickupDesk, parsed, upgrade_legacy_hashes
from edge.machines.coils import CoilScheduler
from edge.machines.locker import LockerMachine, OpenReason
from edge.models import Emit, InputFault, InputRestored

log = structlog.get_logger(__name__)

STATE_KEY = "lockers"
BUS_HOLD_S = 5.5  # Cu16Bus drops an unlock not sent within 5 s (command_ttl)
# A GPIO coil still on when its time is up (gpiozero's blink thread turns it off late on a
# busy machine) counts as energised; looked at again this often until it is off.
COIL_RECHECK_S = 0.01
TICK_S = 60.0


LOCKER_COMMANDS: dict[str, type[BaseModel]] = dict(KIND.commands)


@dataclass(frozen=True)
class _BusLock:
    bus: str
    board: int
    lock: int


class _BusListener:
    """Runs on a bus thread: hands everything to the core loop, nothing else."""

    def __init__(self, bank: LockerBank, bus: str) -> None:
        self.bank = bank
        self.bus = bus

    def on_status(
        self, board: int, closed: tuple[bool, ...], items: tuple[bool, ...], t: float
    ) -> None:
        self.bank.p.loop.post(lambda: self.bank._board_status(self.bus, board, closed, items))

    def on_unlock_sent(self, board: int, lock: int, t: float) -> None:
        self.bank.p.loop.post(lambda: self.bank._unlock_sent(self.bus, board, lock))

    def on_board_fault(self, board: int, reason: str) -> None:
        self.bank.p.loop.post(lambda: self.bank._board_fault(self.bus, board, reason))

    def on_board_recovered(self, board: int) -> None:
        self.bank.p.loop.post(lambda: self.bank._board_recovered(self.bus, board))

    def on_garbage(self, count: int) -> None:
        self.bank.p.loop.post(lambda: self.bank._garbage(self.bus, count))


class LockerBank(ControllerBase):
    def __init__(
        self,
        cfg: LockersConfig,
        hardware: Hardware,
        devices: LockerHardware,
        coils: dict[int, Coil],
        ports: Ports,
        self_check_s: float = 60.0,
    ) -> None:
        self.self_check_s = self_check_s
        self.cfg = cfg
        self.p = ports
        self.coils = coils
        self.machine = LockerMachine(
            cfg.locker_ids(),
            forced_window_s=cfg.forced_window_s,
            free_hours=cfg.free_hours,
            fee_per_day_krw=cfg.fee_per_day_krw,
            persisted=ports.store.get_state(STATE_KEY),
        )
        self.policy = cfg.coil_policy()
        self.sched = CoilScheduler(self.policy)
        self.garbage = 0
        self._via: dict[int, str] = {}
        self._fire_failed: set[int] = set()
        self._pump_timer: Any = None
        self.hasher = CodeHasher()
        self.desk = PickupDesk(self.machine, ports, self.hasher, self.open, self._run)
        upgrade_legacy_hashes(self.machine, ports, STATE_KEY)
        # Where each locker lives.
        self.bus_locks: dict[int, _BusLock] = {}
        self.boards: dict[tuple[str, int], Cu16BoardConfig | ModbusBoardConfig] = {}
        self.buses: dict[str, LockBus] = {}
        for bus in cfg.buses:
            for b in bus.boards:
                self._place(bus.name, b.id, b)
            boards = tuple(
                BoardSettings(
                    board_id=b.id,
                    closed_bit=b.closed_bit,
                    unlock_replies=b.unlock_replies,
                    pulse_ms=self.policy.pulse_ms,
                )
                for b in bus.boards
            )
            self.buses[bus.name] = devices.lock_bus(
                Cu16BusSettings(
                    bus.name,
                    bus.url,
                    baudrate=bus.baudrate,
                    poll_hz=bus.poll_hz,
                    max_pulse_ms=self.policy.max_on_ms,
                    boards=boards,
                ),
                _BusListener(self, bus.name),
            )
        for mb in cfg.modbus_buses:  # Modbus RTU relay boards: the same LockBus interface
            for mbb in mb.boards:
                self._place(mb.name, mbb.slave_id, mbb)
            relay_boards = tuple(
                ModbusBoardSettings(
                    slave_id=mbb.slave_id,
                    relays=mbb.locks,
                    pulse=mbb.pulse,
                    closed_bit=mbb.closed_bit,
                    pulse_ms=self.policy.pulse_ms,
                )
                for mbb in mb.boards
            )
            self.buses[mb.name] = devices.modbus_bus(
                ModbusBusSettings(
                    mb.name,
                    mb.url,
                    baudrate=mb.baudrate,
                    parity=mb.parity,
                    poll_hz=mb.poll_hz,
                    max_pulse_ms=self.policy.max_on_ms,
                    boards=relay_boards,
                ),
                _BusListener(self, mb.name),
            )
        self.doors: dict[int, DebouncedInput] = {}
        for g in cfg.gpio:
            dev = hardware.input(
                f"door-{g.locker}", g.door_pin, contact=g.door_contact, pull_up=g.pull_up
            )
            self.doors[g.locker] = DebouncedInput(
                dev,
                g.debounce_ms / 1000,
                ports.loop,
                on_change=functools.partial(self._gpio_door, g.locker),
                on_fault=functools.partial(self._gpio_fault, g.locker),
            )
        if cfg.code_reader is not None:
            self.desk.attach(cfg.code_reader, devices)
        self.reader = self.desk.reader
        for name, model in LOCKER_COMMANDS.items():
            ports.commands.register(name, model, getattr(self, "_cmd_" + name.split(".")[1]))

    def _place(self, bus: str, board_id: int, b: Cu16BoardConfig | ModbusBoardConfig) -> None:
        """Board ``board_id`` on ``bus`` and the lockers on its locks (1..``b.locks``)."""
        self.boards[(bus, board_id)] = b
        for i in range(b.locks):
            self.bus_locks[b.first_locker + i] = _BusLock(bus, board_id, i + 1)

    # ---- lifecycle ----
    def start(self) -> None:
        for locker, inp in self.doors.items():
            level = inp.start()
            if inp.fault is None:
                self.machine.door(locker, not level, self.p.clock.monotonic(), self.p.clock.now())
        for name, bus in self.buses.items():
            bus.start()
            for (bname, board_id), _b in self.boards.items():
                if bname == name:
                    bus.set_unlock_time(board_id, self.policy.pulse_ms)
        if self.reader is not None:
            self.reader.start()
        self._publish()
        self.p.loop.call_later(1.0, self._tick)
        self.p.loop.call_later(self.self_check_s, self._self_check)

    def _self_check(self) -> None:
        """Re-read every GPIO door switch: a fault is reported once, its end too."""
        for locker, inp in self.doors.items():
            was = inp.fault
            if inp.check() is None and was is not None:
                self.machine.set_fault(locker, None)
                self._run([Emit(f"locker-{locker}", InputRestored())])
        self.p.loop.call_later(self.self_check_s, self._self_check)

    def stop(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.hasher.close()
        for inp in self.doors.values():
            inp.stop()
        for bus in self.buses.values():
            bus.close()

    # ---- effects ----
    def _run(self, emits: list[Emit]) -> None:
        for e in emits:
            self.p.outbox.record(e)
            if isinstance(e.event, DoorOpened | DoorForced):
                locker = e.event.locker
                opened_at = self.machine.lockers[locker].opened_at
                if opened_at is not None:
                    self.p.loop.call_later(
                        self.cfg.left_open_s,
                        functools.partial(self._left_open, locker, opened_at),
                    )
        self.p.store.put_state(STATE_KEY, self.machine.dump())
        self._publish()

    def _publish(self) -> None:
        for locker in self.machine.lockers:
            self.p.states.set(f"locker-{locker}", self.machine.public_state(locker))

    def _left_open(self, locker: int, opened_at: float) -> None:
        self._run(self.machine.left_open_check(locker, opened_at, self.p.clock.monotonic()))

    def _tick(self) -> None:
        emits = self.machine.tick(self.p.clock.now())
        if emits:
            self._run(emits)
        self.p.loop.call_later(TICK_S, self._tick)

    # ---- coils ----
    def open(self, locker: int, reason: OpenReason, via: str) -> int:
        """Validate, then queue a pulse (CommandError if refused). Returns queue position."""
        self.machine.check_open(locker, reason)
        pos = self.sched.request(locker, reason, self.p.clock.monotonic())
        self._via[locker] = via
        self._fire_failed.discard(locker)
        self._pump()
        if locker in self._fire_failed:
            self._fire_failed.discard(locker)
            raise CommandError("failed", f"locker {locker} coil could not be driven; see logs")
        return pos

    def _pump(self) -> None:
        now = self.p.clock.monotonic()
        for locker, coil in self.coils.items():
            if coil.is_on:  # the next coil waits until this one is really off
                self.sched.hold(locker, now + COIL_RECHECK_S)
        for pulse in self.sched.due(now):
            try:
                self._fire(pulse.locker, pulse.seconds)
            except Exception as exc:  # one lock failing must not stop the queue
                log.error("coil_fire_failed", locker=pulse.locker, error=str(exc))
                self._fire_failed.add(pulse.locker)
                self._via.pop(pulse.locker, None)
                self._run(
                    [
                        Emit(
                            f"locker-{pulse.locker}",
                            LockFault(locker=pulse.locker, reason=f"{type(exc).__name__}: {exc}"),
                        )
                    ]
                )
                continue
            via = self._via.pop(pulse.locker, "centre")
            self.machine.pulse_fired(pulse.locker, pulse.reason, via, now)
            self.p.loop.call_later(
                pulse.seconds + self.cfg.open_timeout_s,
                functools.partial(self._jam_check, pulse.locker, now),
            )
        if self._pump_timer is not None:
            self._pump_timer.cancel()
            self._pump_timer = None
        wake = self.sched.next_wake()
        if wake is not None:
            self._pump_timer = self.p.loop.call_later(max(0.0, wake - now), self._pump)

    def _fire(self, locker: int, seconds: float) -> None:
        where = self.bus_locks.get(locker)
        if where is not None:
            self.buses[where.bus].unlock(where.board, where.lock)
            # Until the bus says it went out, assume the worst: it may be held back.
            self.sched.hold(locker, self.p.clock.monotonic() + BUS_HOLD_S + seconds)
        else:
            self.coils[locker].pulse(seconds)
        log.info("coil_pulse", locker=locker, ms=int(seconds * 1000))

    def _unlock_sent(self, bus: str, board: int, lock: int) -> None:
        b = self.boards.get((bus, board))
        if b is None:
            return
        locker = b.first_locker + lock - 1
        lk = self.machine.lockers.get(locker)
        if lk is None or lk.last_pulse is None:
            return
        now = self.p.clock.monotonic()
        self.sched.confirm(locker, now)
        # The coil fired now: the jam check and the forced window count from here.
        self.machine.pulse_fired(
            locker, lk.pulse_reason or "service", lk.pulse_via or "centre", now
        )
        self.p.loop.call_later(
            self.policy.pulse_s + self.cfg.open_timeout_s,
            functools.partial(self._jam_check, locker, now),
        )
        self._pump()

    def _jam_check(self, locker: int, pulse_time: float) -> None:
        emits = self.machine.jam_check(locker, pulse_time)
        if emits:
            self._run(emits)

    # ---- hardware readings (core thread) ----
    def _board_status(
        self, bus: str, board: int, closed: tuple[bool, ...], items: tuple[bool, ...]
    ) -> None:
        b = self.boards.get((bus, board))
        if b is None:
            return
        now, wall = self.p.clock.monotonic(), self.p.clock.now()
        emits: list[Emit] = []
        for i in range(b.locks):
            locker = b.first_locker + i
            self.machine.set_fault(locker, None) if self.machine.lockers[locker].fault else None
            self.machine.item(locker, items[i] if b.item_sensors else None)
            emits += self.machine.door(locker, not closed[i], now, wall)
        self._run(emits)

    def _board_fault(self, bus: str, board: int, reason: str) -> None:
        b = self.boards.get((bus, board))
        if b is None:
            return
        for i in range(b.locks):
            self.machine.set_fault(b.first_locker + i, f"board {bus}/{board}: {reason}")
        self._run([Emit(f"board-{bus}-{board}", BoardFault(bus=bus, board=board, reason=reason))])

    def _board_recovered(self, bus: str, board: int) -> None:
        # A board that lost power forgets its pulse time: set it again.
        self.buses[bus].set_unlock_time(board, self.policy.pulse_ms)
        self._run([Emit(f"board-{bus}-{board}", BoardRecovered(bus=bus, board=board))])

    def _garbage(self, bus: str, count: int) -> None:
        self.garbage += count

    def _gpio_door(self, locker: int, level: bool) -> None:
        now, wall = self.p.clock.monotonic(), self.p.clock.now()
        self._run(self.machine.door(locker, not level, now, wall))

    def _gpio_fault(self, locker: int, reason: str) -> None:
        self.machine.set_fault(locker, reason)
        self._run([Emit(f"locker-{locker}", InputFault(reason=reason))])

    # ---- commands ----
    def _cmd_open(self, args: LockerOpenArgs, ctx: CommandContext) -> dict[str, Any]:
        pos = self.open(args.locker, args.reason, ctx.key_id)
        self._publish()
        return {"locker": args.locker, "queued": pos}

    def _cmd_assign(self, args: LockerAssignArgs, ctx: CommandContext) -> dict[str, Any] | Deferred:
        self.machine.check_assign(args.locker, args.parcel_id)  # refused before any hashing
        if args.pickup_code_hash is not None:
            # Hashed by the centre (validated, bounded cost): stored as it is, no hashing.
            stored = CodeHash.from_json(args.pickup_code_hash.model_dump()).to_json()
            return self._assigned(args, stored)
        code = args.pickup_code
        assert code is not None
        cost = self.cfg.code_hash
        others = [h for _, _, h in parsed(self.machine.stored_codes(exclude=args.locker))]
        hasher = self.hasher

        def work() -> dict[str, Any] | None:
            # Worker thread. Every other code has its own salt: a duplicate is found only by
            # hashing this code with each of them (checked against the codes stored when
            # the command arrived).
            if any(hasher.matches(code, others)):
                return None
            return pickup.hash_code(code, cost.n, cost.r, cost.p).to_json()

        def finish(stored: dict[str, Any] | None) -> dict[str, Any]:
            # Core thread again; the state is checked now (it may have changed meanwhile).
            self.machine.check_assign(args.locker, args.parcel_id)
            if stored is None:
                raise CommandError("duplicate_code", "that pickup code is in use at this site")
            return self._assigned(args, stored)

        # scrypt is slow on purpose: not on the core thread.
        return Deferred(work=work, finish=finish)

    def _assigned(self, args: LockerAssignArgs, stored: dict[str, Any]) -> dict[str, Any]:
        self.machine.assign(args.locker, args.parcel_id, stored, args.deposited_at)
        self._run([])
        return {"locker": args.locker, "state": self.machine.public_state(args.locker)["state"]}

    def _cmd_release(self, args: LockerReleaseArgs, ctx: CommandContext) -> dict[str, Any]:
        self.machine.release(args.locker)
        self.sched.cancel(args.locker)
        self._run([])
        return {"locker": args.locker, "state": self.machine.public_state(args.locker)["state"]}

    def _cmd_set_service(self, args: LockerServiceArgs, ctx: CommandContext) -> dict[str, Any]:
        self.machine.set_service(args.locker, args.in_service)
        if not args.in_service:
            self.sched.cancel(args.locker)
        self._run([])
        return {"locker": args.locker, "state": self.machine.public_state(args.locker)["state"]}

    def _cmd_status(self, args: LockerStatusArgs, ctx: CommandContext) -> dict[str, Any]:
        return {
            "lockers": [self.machine.public_state(i) for i in sorted(self.machine.lockers)],
            "coils_queued": self.sched.queued,
            "garbage_bytes": self.garbage,
        }


def build(ctx: BuildContext) -> LockerBank | None:
    cfg = section(ctx.cfg.devices, LockersDevices).lockers
    if cfg is None:
        return None
    coils = {int(name.removeprefix("coil-")): cast(Coil, out) for name, out in ctx.outputs.items()}
    devices: LockerHardware = ctx.kind_hardware(KIND)
    return LockerBank(cfg, ctx.hardware, devices, coils, ctx.ports, ctx.cfg.self_check_s)
