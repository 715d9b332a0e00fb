"""The panic kind's config: buttons (with supervision), lamps, buzzer, reset key, walk test."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge.devices.common import ConfigModel, DeviceName, InputConfig, OutputConfig


class SupervisionConfig(InputConfig):
    """A second input watching the button's wiring (end-of-line supervision output, second
    loop or tamper contact): active = the loop is cut, shorted or the housing is open."""

    contact: Literal["nc", "no"] = "nc"


class PanicButtonConfig(InputConfig):
    name: DeviceName
    contact: Literal["nc", "no"] = "nc"
    hold_ms: int = Field(0, ge=0, le=30_000, description="Must stay pressed this long to count.")
    mode: Literal["silent", "audible"] = "silent"
    supervision: SupervisionConfig | None = Field(
        None, description="Optional wiring-supervision / tamper input for this button."
    )
    chatter_max: int = Field(
        10,
        ge=3,
        le=1000,
        description="More changes (after debounce) than this within the window: chatter.",
    )
    chatter_window_s: float = Field(10, gt=0, le=3600, description="Chatter counting window.")


class TestModeConfig(ConfigModel):
    default_minutes: int = Field(30, ge=1, le=240, description="Walk test length by key.")
    key_turns: int = Field(
        3, ge=2, le=10, description="Reset-key turns within key_window_s that start a walk test."
    )
    key_window_s: float = Field(5, gt=0, le=60, description="Window for the key sequence.")


class PanicDevices(ConfigModel):
    """The panic kind's fields under ``devices``."""

    panic_buttons: list[PanicButtonConfig] = Field(default_factory=list)
    sent_led: OutputConfig | None = None
    ack_led: OutputConfig | None = None
    buzzer: OutputConfig | None = None
    reset_key: InputConfig | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> PanicDevices:
        names = [b.name for b in self.panic_buttons]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate device names: {sorted(dup)}")
        reserved = {"sent_led", "ack_led", "buzzer", "reset_key", "alarm"} & set(names)
        if reserved:
            raise ValueError(f"device names reserved for built-in devices: {sorted(reserved)}")
        return self


OUTPUTS = ("sent_led", "ack_led", "buzzer")


def pins(d: PanicDevices) -> list[tuple[str, int]]:
    out: list[tuple[str, int]] = [(b.name, b.pin) for b in d.panic_buttons]
    out += [
        (f"{b.name} supervision", b.supervision.pin)
        for b in d.panic_buttons
        if b.supervision is not None
    ]
    for name in (*OUTPUTS, "reset_key"):
        dev = getattr(d, name)
        if dev is not None:
            out.append((name, dev.pin))
    return out


# Rows of the config table (docs/config.md) that need more than a field description.
NOTES: dict[str, str] = {
    "devices.panic_buttons": "Panic buttons; names unique, and not a built-in device name.",
    "devices.panic_buttons[].pin": "BCM GPIO number.",
    "devices.panic_buttons[].contact": (
        "nc: normally closed (a press or a cut wire opens the loop = active); "
        "no: normally open (a press closes it)."
    ),
    "devices.panic_buttons[].pull_up": (
        "true: contact to ground, internal pull-up; false: contact to 3.3 V, pull-down."
    ),
    "devices.panic_buttons[].debounce_ms": "A level counts once stable this long.",
    "devices.panic_buttons[].name": "Device name: MQTT state topic level and event device.",
    "devices.panic_buttons[].hold_ms": (
        "Must stay active this long (after debounce) to raise the alarm; 0 = at once."
    ),
    "devices.panic_buttons[].mode": "silent: never sounds the buzzer; audible: buzzer on.",
    "devices.panic_buttons[].supervision.pin": "BCM GPIO number of the supervision input.",
    "devices.panic_buttons[].supervision.contact": (
        "nc (default): the supervision contact opens on a fault; no: it closes on a fault."
    ),
    "devices.panic_buttons[].supervision.pull_up": (
        "true: contact to ground, internal pull-up; false: contact to 3.3 V, pull-down."
    ),
    "devices.panic_buttons[].supervision.debounce_ms": "A level counts once stable this long.",
    "devices.sent_led": (
        "Lamp on from the broker's acknowledgement of the alarm.raised event until the "
        "alarm is cleared."
    ),
    "devices.sent_led.pin": "BCM GPIO number.",
    "devices.sent_led.active_high": "true: the pin is driven high to turn the lamp on.",
    "devices.ack_led": "Lamp on while the alarm is acknowledged.",
    "devices.ack_led.pin": "BCM GPIO number.",
    "devices.ack_led.active_high": "true: the pin is driven high to turn the lamp on.",
    "devices.buzzer": "Buzzer, on while an audible alarm is active or acknowledged.",
    "devices.buzzer.pin": "BCM GPIO number.",
    "devices.buzzer.active_high": "true: the pin is driven high to sound it.",
    "devices.reset_key": (
        "The clerk's key switch: turning it to active clears the alarm; with no alarm, "
        "test_mode.key_turns turns within test_mode.key_window_s toggle the walk test."
    ),
    "devices.reset_key.pin": "BCM GPIO number.",
    "devices.reset_key.contact": "no: normally open (turning closes it); nc: normally closed.",
    "devices.reset_key.pull_up": (
        "true: contact to ground, internal pull-up; false: contact to 3.3 V, pull-down."
    ),
    "devices.reset_key.debounce_ms": "A level counts once stable this long.",
}
