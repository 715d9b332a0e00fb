"""The alarm's second channel: the modem driver, the Escalation machine and the modem's
health in the site status. Core thread only, except the listener shim."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from drivers.base import CallOutcome, Modem, ModemHealth
from drivers.settings import ModemSettings
from edge.config import SiteConfig
from edge.core.loop import Timer
from edge.core.ports import Ports
from edge.devices.channels import EscalationChannel
from edge.devices.kind import BuildContext, ControllerBase, section
from edge.devices.modem import KIND
from edge.devices.modem.config import ModemDevices
from edge.devices.modem.events import ModemFault, ModemRecovered
from edge.devices.modem.hardware import ModemHardware
from edge.machines.escalation import (
    Cancel,
    Effect,
    Escalation,
    Hangup,
    PlaceCall,
    SendSms,
    Wake,
    compose_sms,
)
from edge.models import Emit, ModemStatus

log = structlog.get_logger(__name__)
STATE_KEY = "escalation"


class _ModemShim:
    """Runs on the modem's worker thread: hands everything to the core loop."""

    def __init__(self, fb: ModemFallback) -> None:
        self.fb = fb

    def on_call_result(self, request_id: str, outcome: CallOutcome, detail: str) -> None:
        self.fb.p.loop.post(
            lambda: self.fb._apply(self.fb.esc.call_result(request_id, str(outcome), detail))
        )

    def on_sms_result(self, request_id: str, ok: bool, detail: str) -> None:
        self.fb.p.loop.post(lambda: self.fb._apply(self.fb.esc.sms_result(request_id, ok, detail)))

    def on_health(self, health: ModemHealth) -> None:
        self.fb.p.loop.post(lambda: self.fb._health(health))

    def on_modem_fault(self, reason: str) -> None:
        self.fb.p.loop.post(lambda: self.fb._fault(reason))

    def on_modem_recovered(self) -> None:
        self.fb.p.loop.post(self.fb._recovered)

    def on_urc(self, line: str) -> None:
        return None


class ModemFallback(ControllerBase, EscalationChannel):
    """The modem kind's controller: the escalation channel it offers the panic kind."""

    def __init__(
        self,
        cfg: SiteConfig,
        hardware: ModemHardware,
        ports: Ports,
        *,
        link_up: Callable[[], bool],
        on_health: Callable[[], None],
    ) -> None:
        self.cfg = cfg
        self.p = ports
        self.link_up = link_up
        self.on_health_change = on_health
        mcfg = section(cfg.devices, ModemDevices).modem
        self.modem: Modem | None = None
        if mcfg is not None:
            self.modem = hardware.modem(
                ModemSettings(
                    mcfg.url,
                    baudrate=mcfg.baudrate,
                    check_interval_s=mcfg.check_interval_s,
                    command_timeout_s=mcfg.command_timeout_s,
                ),
                _ModemShim(self),
            )
        self.esc = Escalation(cfg.escalation, has_modem=self.modem is not None)
        self.health: dict[str, Any] | None = None
        self._timer: Timer | None = None
        self._saved: str | None = None

    def start(self) -> None:
        if self.modem is not None:
            self.modem.start()

    def close(self) -> None:
        # After the outputs are off and the command intake closed (the alarm's last channel).
        if self.modem is not None:
            self.modem.close()

    def status(self, online: bool) -> dict[str, Any]:
        # Offline (clean stop or last will): the modem is closed or unknown.
        if self.health and online:
            return {"modem": ModemStatus(**self.health)}
        return {}

    # ---- hooks from the alarm (core thread) ----
    def alarm_raised(self, alarm_id: str, test: bool, restored: bool = False) -> None:
        now = self.p.clock.now()
        text = compose_sms(self.cfg.site.id, self.cfg.site.address, alarm_id, now)
        if restored:
            if not test:
                saved = self.p.store.get_state(STATE_KEY)
                self._apply(self.esc.restore(alarm_id, saved, text, now.timestamp()))
            return
        self._apply(self.esc.raised(alarm_id, test, self.link_up(), text, now.timestamp()))

    def alarm_stopped(self, alarm_id: str) -> None:
        self._apply(self.esc.stop(alarm_id))

    def link_lost(self) -> None:
        self._apply(self.esc.link_lost())

    # ---- effects ----
    def _apply(self, effects: list[Effect]) -> None:
        for e in effects:
            if isinstance(e, Emit):
                try:
                    self.p.outbox.record(e)
                except Exception:  # reporting must never stop the SMS and calls after it
                    log.exception("escalation_event_failed", type=e.type)
            elif isinstance(e, SendSms) and self.modem is not None:
                self.modem.send_sms(e.request_id, e.number, e.text)
            elif isinstance(e, PlaceCall) and self.modem is not None:
                self.modem.call(e.request_id, e.number, e.ring_timeout_s, e.talk_s)
            elif isinstance(e, Hangup) and self.modem is not None:
                self.modem.hangup()
            elif isinstance(e, Cancel) and self.modem is not None:
                self.modem.cancel(e.request_id)
            elif isinstance(e, Wake):
                self._wake(e.delay_s)
        saved = self.esc.dump()
        if saved is not None and saved != self._saved:
            self._saved = saved
            self.p.store.put_state(STATE_KEY, saved)  # progress survives a restart

    def _wake(self, delay_s: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        run = self.esc.run
        if run is None:
            return
        alarm_id = run.alarm_id
        self._timer = self.p.loop.call_later(delay_s, lambda: self._apply(self.esc.due(alarm_id)))

    # ---- health ----
    def _health(self, h: ModemHealth) -> None:
        new = {
            "ok": h.ok,
            "registered": h.registered,
            "signal_dbm": h.signal_dbm,
            "last_error": h.last_error,
        }
        if new != self.health:
            self.health = new
            self.p.states.set("modem", new)
            self.on_health_change()

    def _fault(self, reason: str) -> None:
        log.warning("modem_fault", reason=reason)
        self.p.outbox.emit("modem", ModemFault(reason=reason), alarm=True)

    def _recovered(self) -> None:
        self.p.outbox.emit("modem", ModemRecovered())
        self._apply(self.esc.modem_recovered())


def build(ctx: BuildContext) -> ModemFallback:
    """Always there: without a modem the escalation still reports that it cannot escalate."""
    hardware: ModemHardware = ctx.kind_hardware(KIND)
    return ModemFallback(
        ctx.cfg, hardware, ctx.ports, link_up=ctx.link_up, on_health=ctx.publish_status
    )
