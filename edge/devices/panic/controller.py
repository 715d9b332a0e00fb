"""The shelter store's alarm: panic buttons (with optional wiring supervision), the reset
key, sent/ack lamps, buzzer, walk-test mode, and the hand-over to the modem fallback.

Wires debounced inputs to the AlarmMachine and the machine's results to the outbox,
the store (state survives restarts) and the outputs. Core thread only.
"""

from __future__ import annotations

import functools
from collections import deque
from datetime import datetime, timedelta
from typing import Any, cast

import structlog

from drivers.base import DigitalOutput, Hardware
from edge.config import SiteConfig
from edge.core.clock import rfc3339
from edge.core.commands import CommandContext
from edge.core.ports import Ports
from edge.devices.channels import EscalationChannel, escalation_channel
from edge.devices.inputs import DebouncedInput
from edge.devices.kind import BuildContext, ControllerBase, section
from edge.devices.panic.commands import AlarmAckArgs, AlarmClearArgs, SiteTestModeArgs
from edge.devices.panic.config import PanicButtonConfig, PanicDevices
from edge.devices.panic.events import SiteTestMode, WiringFault, WiringRestored
from edge.machines.alarm import AlarmMachine
from edge.models import Emit, InputFault

log = structlog.get_logger(__name__)
STATE_KEY = "alarm"
TEST_KEY = "test_mode_until"
STUCK = "stuck_active"


class _Button:
    def __init__(self, cfg: PanicButtonConfig, inp: DebouncedInput) -> None:
        self.cfg = cfg
        self.inp = inp
        self.generation = 0
        self.sup: DebouncedInput | None = None
        self.edges: deque[float] = deque()  # debounced changes, for chatter detection
        self.chatter = False
        self.wiring: set[str] = set()  # active wiring faults: supervision, chatter, stuck_active


class ShelterAlarm(ControllerBase):
    def __init__(
        self,
        cfg: SiteConfig,
        hardware: Hardware,
        outputs: dict[str, DigitalOutput],
        ports: Ports,
        fallback: EscalationChannel,
    ) -> None:
        devices = section(cfg.devices, PanicDevices)
        self.cfg = cfg
        self.p = ports
        self.outputs = outputs
        self.fallback = fallback
        self.machine = AlarmMachine.load(cfg.site.cameras, ports.store.get_state(STATE_KEY))
        self.test_until: datetime | None = None
        saved = ports.store.get_state(TEST_KEY)
        if saved:
            self.test_until = datetime.fromisoformat(saved)
        self._test_timer: Any = None
        self._key_turns: deque[float] = deque()
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
            btn = _Button(b, inp)
            if b.supervision is not None:
                s = b.supervision
                sdev = hardware.input(
                    f"{b.name}-supervision", s.pin, contact=s.contact, pull_up=s.pull_up
                )
                btn.sup = DebouncedInput(
                    sdev,
                    s.debounce_ms / 1000,
                    ports.loop,
                    on_change=functools.partial(self._supervision_changed, b.name),
                    on_fault=functools.partial(self._fault, f"{b.name}-supervision"),
                )
            self.buttons[b.name] = btn
        self.reset_key: DebouncedInput | None = None
        if devices.reset_key is not None:
            k = devices.reset_key
            dev = hardware.input("reset_key", k.pin, contact=k.contact, pull_up=k.pull_up)
            self.reset_key = DebouncedInput(
                dev,
                k.debounce_ms / 1000,
                ports.loop,
                on_change=self._key_changed,
                on_fault=functools.partial(self._fault, "reset_key"),
            )
        ports.outbox.delivered_listeners.append(self._delivered)
        ports.commands.register("alarm.ack", AlarmAckArgs, self._cmd_ack)
        ports.commands.register("alarm.clear", AlarmClearArgs, self._cmd_clear)
        ports.commands.register("site.test_mode", SiteTestModeArgs, self._cmd_test_mode)

    # ---- lifecycle (core thread) ----
    def start(self) -> None:
        self._apply()
        if self.test_until is not None:
            # A Pi has no real-time clock: after a restart "until" may be wrong, and a real
            # press flagged as a test would never escalate. A walk test ends with a restart.
            self._set_test_mode(False, 0, "restart")
        s = self.machine.s
        if s.state == "active" and s.alarm_id is not None:
            self.fallback.alarm_raised(s.alarm_id, s.test, restored=True)
        # Buttons still active after a clear, as of the last run: known stuck from the start
        # (released while we were down: the release below reports wiring.restored).
        stuck = set(s.await_release)
        for name in stuck & set(self.buttons):
            self.buttons[name].wiring.add(STUCK)
        for name, b in self.buttons.items():
            if b.sup is not None and b.sup.start():
                self._supervision_changed(name, True)
            level = b.inp.start()
            if name in stuck and level:
                self._emit_wiring_fault(b, STUCK)  # reported again, as supervision is
            self.p.states.set(name, self._button_state(b))
            if level:
                self._button_changed(name, True)  # held or cut at boot: an alarm, once
            else:
                self._run(self.machine.release(name))  # released while we were down
        if self.reset_key is not None:
            self.reset_key.start()
            self.p.states.set("reset_key", {"active": self.reset_key.level, "fault": None})
        self.p.loop.call_later(self.cfg.self_check_s, self._self_check)

    def stop(self) -> None:
        for b in self.buttons.values():
            b.inp.stop()
            if b.sup is not None:
                b.sup.stop()
        if self.reset_key is not None:
            self.reset_key.stop()

    @property
    def restored_alarm(self) -> str | None:
        return self.machine.s.alarm_id if self.machine.s.state != "idle" else None

    def site_started(self) -> dict[str, Any]:
        return {"restored_alarm": self.restored_alarm}

    # ---- test mode ----
    @property
    def test_mode(self) -> bool:
        return self.test_until is not None and self.p.clock.now() < self.test_until

    def _set_test_mode(self, on: bool, minutes: int, by: str) -> dict[str, Any]:
        now = self.p.clock.now()
        self.test_until = now + timedelta(minutes=minutes) if on else None
        until = rfc3339(self.test_until) if self.test_until else None
        self.p.store.put_state(TEST_KEY, self.test_until.isoformat() if self.test_until else "")
        self.p.outbox.emit("site", SiteTestMode(on=on, until=until, by=by))
        self._arm_test_timer()
        self._apply()
        return {"on": on, "until": until}

    def _arm_test_timer(self) -> None:
        if self._test_timer is not None:
            self._test_timer.cancel()
            self._test_timer = None
        if self.test_until is None:
            return
        left = (self.test_until - self.p.clock.now()).total_seconds()
        if left <= 0:
            self._set_test_mode(False, 0, "timeout")
            return
        self._test_timer = self.p.loop.call_later(left, self._test_expired)

    def _test_expired(self) -> None:
        self._test_timer = None
        if self.test_until is not None and not self.test_mode:
            self._set_test_mode(False, 0, "timeout")
        elif self.test_until is not None:
            self._arm_test_timer()  # clock moved: check again later

    # ---- inputs ----
    def _button_state(self, b: _Button) -> dict[str, Any]:
        return {
            "active": b.inp.level,
            "fault": b.inp.fault,
            "wiring": sorted(b.wiring) or None,
        }

    def _count_change(self, b: _Button) -> None:
        """Chatter: more debounced changes than chatter_max within chatter_window_s.
        (Contact bounce inside the debounce time does not count: only real changes do.)"""
        now = self.p.loop.clock.monotonic()
        b.edges.append(now)
        while b.edges and now - b.edges[0] > b.cfg.chatter_window_s:
            b.edges.popleft()
        if not b.chatter and len(b.edges) > b.cfg.chatter_max:
            b.chatter = True
            self._wiring(b, "chatter")
        if b.chatter:
            self.p.loop.call_later(b.cfg.chatter_window_s, functools.partial(self._quiet, b))

    def _quiet(self, b: _Button) -> None:
        """A chattering button calmed down: report it, and a button still active is a
        press after all (a loose wire that finally broke must still raise the alarm)."""
        if not b.chatter:
            return
        now = self.p.loop.clock.monotonic()
        left = (b.edges[-1] + b.cfg.chatter_window_s - now) if b.edges else 0.0
        if left > 1e-6:  # a newer change arrived: wait the rest (its own timer may be gone)
            self.p.loop.call_later(left, functools.partial(self._quiet, b))
            return
        b.chatter = False
        b.edges.clear()
        self._wiring_restored(b, "chatter")
        if b.inp.level:
            self._press(b)

    def _button_changed(self, name: str, level: bool) -> None:
        b = self.buttons[name]
        b.generation += 1
        self._count_change(b)
        self.p.states.set(name, self._button_state(b))
        if not level:
            self._run(self.machine.release(name))
            return
        if b.chatter:
            # Not lost: _quiet presses if the button is still active once it calms down.
            log.warning("press_deferred_chatter", button=name)
            return
        if b.cfg.hold_ms <= 0:
            self._press(b)
            return
        gen = b.generation
        self.p.loop.call_later(b.cfg.hold_ms / 1000, lambda: self._held(b, gen))

    def _held(self, b: _Button, gen: int) -> None:
        if b.generation == gen and b.inp.level and not b.chatter:
            self._press(b)

    def _press(self, b: _Button) -> None:
        emits = self.machine.press(b.cfg.name, b.cfg.mode, self.test_mode)
        if not emits:
            log.info("press_ignored", button=b.cfg.name, state=self.machine.s.state)
            return
        s = self.machine.s
        assert s.alarm_id is not None
        try:
            self._run(emits)
        finally:  # the modem escalation never depends on recording the event
            self.fallback.alarm_raised(s.alarm_id, s.test)

    def _supervision_changed(self, name: str, level: bool) -> None:
        b = self.buttons[name]
        if level:
            self._wiring(b, "supervision")
        else:
            self._wiring_restored(b, "supervision")

    def _wiring(self, b: _Button, reason: str) -> None:
        if reason in b.wiring:
            return
        b.wiring.add(reason)
        self._emit_wiring_fault(b, reason)
        self.p.states.set(b.cfg.name, self._button_state(b))

    def _emit_wiring_fault(self, b: _Button, reason: str) -> None:
        self.p.outbox.emit(
            b.cfg.name,
            WiringFault(button=b.cfg.name, reason=reason, loop_open=b.inp.level),
            alarm=True,
        )

    def _wiring_restored(self, b: _Button, reason: str) -> None:
        if reason not in b.wiring:
            return
        b.wiring.discard(reason)
        self.p.outbox.emit(b.cfg.name, WiringRestored(button=b.cfg.name, reason=reason))
        self.p.states.set(b.cfg.name, self._button_state(b))

    def _self_check(self) -> None:
        for b in self.buttons.values():
            b.inp.check()
            if b.sup is not None:
                b.sup.check()
            self.p.states.set(b.cfg.name, self._button_state(b))
        if self.reset_key is not None:
            self.reset_key.check()
        self.p.loop.call_later(self.cfg.self_check_s, self._self_check)

    def _key_changed(self, level: bool) -> None:
        self.p.states.set("reset_key", {"active": level, "fault": None})
        if not level:
            return
        if self.machine.s.state != "idle":
            alarm_id = self.machine.s.alarm_id
            self._run(self.machine.clear("reset_key", self._held_buttons()))
            if alarm_id is not None:
                self.fallback.alarm_stopped(alarm_id)
            self._key_turns.clear()
            return
        # Idle: key_turns turns within key_window_s toggle the walk test.
        now = self.p.loop.clock.monotonic()
        tm = self.cfg.test_mode
        self._key_turns.append(now)
        while self._key_turns and now - self._key_turns[0] > tm.key_window_s:
            self._key_turns.popleft()
        if len(self._key_turns) >= tm.key_turns:
            self._key_turns.clear()
            self._set_test_mode(not self.test_mode, tm.default_minutes, "reset_key")

    def _held_buttons(self) -> list[str]:
        return [n for n, b in self.buttons.items() if b.inp.level]

    def _fault(self, device: str, reason: str) -> None:
        self.p.outbox.emit(device, InputFault(reason=reason), alarm=True)

    def _delivered(self, event_id: str) -> None:
        if self.machine.delivered(event_id):
            self._run([])

    # ---- commands ----
    def _cmd_ack(self, args: AlarmAckArgs, ctx: CommandContext) -> dict[str, Any]:
        self._run(self.machine.ack(args.alarm_id, args.by))
        self.fallback.alarm_stopped(args.alarm_id)
        return {"alarm_id": args.alarm_id, "state": self.machine.s.state}

    def _cmd_clear(self, args: AlarmClearArgs, ctx: CommandContext) -> dict[str, Any]:
        alarm_id = self.machine.s.alarm_id
        self._run(self.machine.clear(ctx.key_id, self._held_buttons(), args.alarm_id))
        if alarm_id is not None:
            self.fallback.alarm_stopped(alarm_id)
        return {"alarm_id": alarm_id, "state": self.machine.s.state}

    def _cmd_test_mode(self, args: SiteTestModeArgs, ctx: CommandContext) -> dict[str, Any]:
        return self._set_test_mode(args.on, args.minutes, ctx.key_id)

    # ---- effects ----
    def _run(self, emits: list[Emit]) -> None:
        # Lamps and buzzer follow the in-memory machine first: the alarm path never waits
        # on (or is stopped by) recording it.
        self._apply()
        for e in emits:
            self.p.outbox.record(e)
        self._sync_stuck()
        self.p.store.put_state(STATE_KEY, self.machine.dump())

    def _sync_stuck(self) -> None:
        """A button still active when its alarm is cleared (key or command) cannot raise a
        new alarm until it is released: a cut NC loop the key turn hid. Report it as a
        wiring fault while it lasts (after the alarm.cleared that caused it)."""
        stuck = self.machine.s.await_release
        for name, b in self.buttons.items():
            if name in stuck:
                self._wiring(b, STUCK)
            else:
                self._wiring_restored(b, STUCK)

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
        until = rfc3339(self.test_until) if self.test_mode and self.test_until else None
        self.p.states.set("alarm", {**self.machine.public_state(), "test_mode_until": until})


def build(ctx: BuildContext) -> ShelterAlarm | None:
    if not section(ctx.cfg.devices, PanicDevices).panic_buttons:
        return None
    fallback = escalation_channel(ctx.devices["modem"])  # the modem kind's (KIND.needs)
    outputs = cast(dict[str, DigitalOutput], dict(ctx.outputs))  # lamps and buzzer (OUTPUTS)
    return ShelterAlarm(ctx.cfg, ctx.hardware, outputs, ctx.ports, fallback)
