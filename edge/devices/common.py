"""Config building blocks every device kind may use: the strict config model base, GPIO
pins (BCM numbers on the 40-pin header), device names, a digital input and an output."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"


DeviceName = Annotated[str, Field(pattern=NAME_RE)]


# Pins are BCM GPIO numbers. The 40-pin header of every Raspberry Pi since the B+ carries
# GPIO 0-27; higher numbers exist only on boards such as the Compute Modules, so a number
# above 27 is almost always a physical header pin number typed by mistake.
HEADER_MAX_GPIO = 27


# physical header pin -> the BCM GPIO on it (the pins that carry a GPIO)
HEADER_PIN_TO_GPIO = {
    3: 2, 5: 3, 7: 4, 8: 14, 10: 15, 11: 17, 12: 18, 13: 27, 15: 22, 16: 23, 18: 24, 19: 10,
    21: 9, 22: 25, 23: 11, 24: 8, 26: 7, 27: 0, 28: 1, 29: 5, 31: 6, 32: 12, 33: 13, 35: 19,
    36: 16, 37: 26, 38: 20, 40: 21,
}  # fmt: skip


ALLOW_ANY_PIN = "allow_any_pin"  # validation-context flag, from devices.allow_any_pin


def on_header(v: int, info: ValidationInfo) -> int:
    context = info.context if isinstance(info.context, dict) else {}
    if v <= HEADER_MAX_GPIO or context.get(ALLOW_ANY_PIN):
        return v
    physical = HEADER_PIN_TO_GPIO.get(v)
    hint = f" (physical pin {v} is GPIO {physical})" if physical is not None else ""
    raise ValueError(
        f"GPIO {v} is not on the 40-pin header: pins are BCM GPIO numbers 0-27, not "
        f"physical pin numbers{hint}; for a board with more GPIOs (a Compute Module) set "
        "devices.allow_any_pin: true"
    )


Pin = Annotated[int, Field(ge=0, le=53), AfterValidator(on_header)]


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputConfig(ConfigModel):
    pin: Pin
    contact: Literal["nc", "no"] = Field(
        "no", description="nc: normally closed (open loop = active, cut wire = active)."
    )
    pull_up: bool = True
    debounce_ms: int = Field(50, ge=0, le=5000)

    @field_validator("contact", mode="before")
    @classmethod
    def _yaml_no(cls, v: object) -> object:
        # YAML 1.1 reads an unquoted `no` as false; accept it as the contact type it meant.
        return "no" if v is False else v


class OutputConfig(ConfigModel):
    pin: Pin
    active_high: bool = True
