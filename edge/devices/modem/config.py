"""The modem kind's config: the modem under devices, the escalation policy."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from edge.devices.common import ConfigModel

PhoneNumber = Annotated[str, Field(pattern=r"^\+?[0-9]{2,20}$")]


class ModemDeviceConfig(ConfigModel):
    url: str = Field(description="Serial device of the GSM/LTE modem (AT commands).")
    baudrate: int = Field(115200, description="Line speed.")
    check_interval_s: float = Field(
        30, ge=1, le=3600, description="Registration and signal check period."
    )
    command_timeout_s: float = Field(2.0, gt=0, le=60, description="Timeout of simple commands.")


class EscalationConfig(ConfigModel):
    escalate_after_s: float = Field(
        15, ge=0, le=3600, description="No alarm.ack this long after the press: escalate."
    )
    sms_numbers: list[PhoneNumber] = Field(
        default_factory=list, description="Numbers texted on escalation."
    )
    call_number: PhoneNumber | None = Field(
        None, description="Number called on escalation (112 in production)."
    )
    call_attempts: int = Field(
        3,
        ge=1,
        le=10,
        description="Calls in all on busy / no answer / drop; also tries per SMS number.",
    )
    call_retry_delay_s: float = Field(10, ge=0, le=600, description="Between call attempts.")
    ring_timeout_s: float = Field(30, gt=0, le=300, description="Ring this long, then no_answer.")
    talk_s: float = Field(60, gt=0, le=3600, description="Keep an answered call this long.")


class ModemDevices(ConfigModel):
    """The modem kind's field under ``devices``."""

    modem: ModemDeviceConfig | None = Field(
        None, description="GSM/LTE modem: the alarm's second channel (SMS, voice call)."
    )
