"""What a device controller may use from its site: nothing more (no god object)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.core.clock import Clock
from edge.core.commands import CommandProcessor
from edge.core.loop import CoreLoop
from edge.core.outbox import Outbox
from edge.core.state import StateBoard
from edge.core.store import Store


@dataclass(frozen=True)
class Ports:
    loop: CoreLoop
    clock: Clock
    outbox: Outbox
    store: Store
    states: StateBoard
    commands: CommandProcessor
