"""`ansim-edge safe-outputs`: drive every GPIO output a config names (locker solenoids, the
lamps, the buzzer) to its off level, without starting the site.

systemd runs it as ``ExecStopPost=`` after every exit of the daemon, including SIGKILL, an
OOM kill and a watchdog kill, when the daemon's own shutdown never ran: a Raspberry Pi keeps
a GPIO output driven after the process that set it dies (unless ``dtparam=strict_gpiod``,
docs/wiring.md), and an energised fail-secure lock is an open door.

Each line is claimed as an output at its off level (low for ``active_high: true``, high
for ``active_high: false``) and left claimed: when the command exits the kernel releases
the lines, and they keep the off level (or, with ``strict_gpiod``, revert to inputs and
the gate pull-down holds the driver off). CU16 lock boards time their own coil pulses and
need nothing here; neither does the modem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edge.config import SiteConfig


@dataclass(frozen=True)
class OutputPin:
    name: str  # as in the logs: sent_led, ack_led, buzzer, coil-<locker>
    pin: int  # BCM GPIO number
    active_high: bool

    @property
    def off_level(self) -> bool:
        """The pin level that switches the output off (True = high)."""
        return not self.active_high


@dataclass(frozen=True)
class Result:
    output: OutputPin
    error: str | None  # None: driven to its off level


def configured_outputs(cfg: SiteConfig) -> list[OutputPin]:
    """Every GPIO output of the site, in the order the site creates them."""
    d = cfg.devices
    outputs: list[OutputPin] = []
    for name in ("sent_led", "ack_led", "buzzer"):
        ocfg = getattr(d, name)
        if ocfg is not None:
            outputs.append(OutputPin(name, ocfg.pin, ocfg.active_high))
    if d.lockers is not None:
        outputs.extend(
            OutputPin(f"coil-{g.locker}", g.solenoid_pin, g.active_high) for g in d.lockers.gpio
        )
    return outputs


def drive_off(outputs: list[OutputPin], pin_factory: Any) -> list[Result]:
    """Claim each pin as an output at its off level. One pin that fails (e.g. still held by
    a running daemon: 'GPIO busy') does not stop the others."""
    results: list[Result] = []
    for out in outputs:
        try:
            pin = pin_factory.pin(out.pin)
            pin.output_with_state(out.off_level)
        except Exception as exc:
            results.append(Result(out, f"{type(exc).__name__}: {exc}"))
        else:
            results.append(Result(out, None))
    return results


def describe(result: Result) -> str:
    out = result.output
    level = "high" if out.off_level else "low"
    head = f"{out.name} (GPIO{out.pin}, active_{'high' if out.active_high else 'low'})"
    if result.error is None:
        return f"{head}: off ({level})"
    return f"{head}: FAILED to drive {level}: {result.error}"
