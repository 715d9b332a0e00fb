"""What one device kind offers another, as ports: a kind asks for a channel by the kind
that provides it (``DeviceKind.needs``, found in ``BuildContext.devices``) and talks to it
only through the protocol here, never through the other kind's controller module (a rule
in tests/test_layers.py)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class EscalationChannel(Protocol):
    """The alarm's second channel (the modem kind's controller offers it to the panic kind):
    told when an alarm is raised and when it stops, it escalates by SMS and voice call when
    the centre does not hear of the alarm. Core thread; never blocks."""

    def alarm_raised(self, alarm_id: str, test: bool, restored: bool = False) -> None:
        """An alarm is active (``restored``: found active again after a restart)."""
        ...

    def alarm_stopped(self, alarm_id: str) -> None:
        """The alarm was acknowledged or cleared: stop escalating it."""
        ...


def escalation_channel(provider: object) -> EscalationChannel:
    """``provider`` as an escalation channel, or TypeError naming what it is."""
    if not isinstance(provider, EscalationChannel):
        raise TypeError(f"{type(provider).__name__} is not an escalation channel")
    return provider
