"""The shelter store's alarm: panic buttons, reset key, sent/ack lamps, buzzer.

Wires debounced inputs to the AlarmMachine and the machine's results to the outbox,
the store (state survives restarts) and the outputs. Core thread only.
"""

from __future__ import annotations

import functools
from typing import Any

import structlog

from drivers.base import DigitalOutput, Hardware
from edge.alarm import AlarmMachine, Emit
from edge.commands import CommandContext
from edge.config import DevicesConfig, PanicButtonConfig
from edge.inputs import DebouncedInput
from edge.models import AlarmAckArgs, AlarmClearArgs, InputFault
from edge.ports import Ports

log = structlog.get_logger(__name__)
STATE_KEY = "alarm"


class _Button:
    def __init__(self, cfg: PanicButtonConfig, inp: DebouncedInput) -> None:
        self.cfg = cfg
        self.inp = inp
        self.generation = 0


class ShelterAlarm:
    def __init__(
        self,
        devices: DevicesConfig,
        cameras: list[str],
        hardware: Hardware,
        outputs: dict[str, DigitalOutput],
        ports: Ports,
    ) -> None:
        self.p = ports
        self.outputs = outputs
        self.test_mode = False
        self.machine = AlarmMachine.load(cameras, ports.store.get_state(STATE_KEY))
        self.buttons: dict[str, _Button] = {}
        for b in devices.panic_buttons:
            dev = hardware.input(b.name, b.pin, contact=b.contact, pull_up=b.pull_up)
            inp = DebouncedInput(
                dev,
                b.debounce_ms / 1000,
                ports.loop,
                on_change=functools.partial(self._button_changed, b.name),
                on_fault=functools.partial(self._fault, b.name),
            )
            self.buttons[b.name] = _Button(b, inp)
        self.reset_key: DebouncedInput | None = None
        if devices.reset_key is not None:
            k = devices.reset_key
            dev = hardware.input("reset_key", k.pin, contact=k.contact, pull_up=k.pull_up)
            self.reset_key = DebouncedInput(
                dev,
                k.debounce_ms / 1000,
                ports.loop,
                on_change=self._key_changed,
                on_fault=lambda reason: self._fault("reset_key", reason),
            )
        ports.outbox.delivered_listeners.append(self._delivered)
        ports.commands.register("alarm.ack", AlarmAckArgs, self._cmd_ack)
        ports.commands.register("alarm.clear", AlarmClearArgs, self._cmd_clear)

    # ---- lifecycle (core thread) ----
    def start(self) -> None:
        self._apply()
        for name, b in self.buttons.items():
            level = b.inp.start()
            self.p.states.set(name, self._button_state(b))
            if level:
                self._button_changed(name, True)  # held or cut at boot: an alarm, once
        if self.reset_key is not None:
            self.reset_key.start()
            self.p.states.set("reset_key", {"active": self.reset_key.level})

    def stop(self) -> None:
        for b in self.buttons.values():
            b.inp.stop()
        if self.reset_key is not None:
            self.reset_key.stop()

    @property
    def restored_alarm(self) -> str | None:
        return self.machine.s.alarm_id if self.machine.s.state != "idle" else None

    # ---- inputs ----
    def _button_state(self, b: _Button) -> dict[str, Any]:
        return {"active": b.inp.level, "fault": b.inp.fault}

    def _button_changed(self, name: str, level: bool) -> None:
        b = self.buttons[name]
        b.generation += 1
        self.p.states.set(name, self._button_state(b))
        if not level:
            self._run(self.machine.release(name))
            return
        if b.cfg.hold_ms <= 0:
            self._press(b)
            return
        gen = b.generation
        self.p.loop.call_later(b.cfg.hold_ms / 1000, lambda: self._held(b, gen))

    def _held(self, b: _Button, gen: int) -> None:
        if b.generation == gen and b.inp.level:
            self._press(b)

    def _press(self, b: _Button) -> None:
        emits = self.machine.press(b.cfg.name, b.cfg.mode, self.test_mode)
        if not emits:
            log.info("press_ignored", button=b.cfg.name, state=self.machine.s.state)
        self._run(emits)

    def _key_changed(self, level: bool) -> None:
        self.p.states.set("reset_key", {"active": level})
        if level and self.machine.s.state != "idle":
            self._run(self.machine.clear("reset_key", self._held_buttons()))

    def _held_buttons(self) -> list[str]:
        return [n for n, b in self.buttons.items() if b.inp.level]

    def _fault(self, device: str, reason: str) -> None:
        self.p.outbox.emit(device, "input.fault", InputFault(reason=reason), alarm=True)

    def _delivered(self, event_id: str) -> None:
        if self.machine.delivered(event_id):
            self._run([])

    # ---- commands ----
    def _cmd_ack(self, args: AlarmAckArgs, ctx: CommandContext) -> dict[str, Any]:
        self._run(self.machine.ack(args.alarm_id, args.by))
        return {"alarm_id": args.alarm_id, "state": self.machine.s.state}

    def _cmd_clear(self, args: AlarmClearArgs, ctx: CommandContext) -> dict[str, Any]:
        alarm_id = self.machine.s.alarm_id
        self._run(self.machine.clear(ctx.key_id, self._held_buttons(), args.alarm_id))
        return {"alarm_id": alarm_id, "state": self.machine.s.state}

    # ---- effects ----
    def _run(self, emits: list[Emit]) -> None:
        for e in emits:
            self.p.outbox.emit(e.device, e.type, e.data, alarm=e.alarm, event_id=e.event_id)
        self.p.store.put_state(STATE_KEY, self.machine.dump())
        self._apply()

    def _apply(self) -> None:
        for name, on in self.machine.outputs().items():
            out = self.outputs.get(name)
            if out is not None and out.is_on != on:
                if on:
                    out.on()
                else:
                    out.off()
            if out is not None:
                self.p.states.set(name, {"on": on})
        self.p.states.set("alarm", self.machine.public_state())
