"""What a device controller may use from its site: nothing more (no god object)."""

from __future__ import annotations

from dataclasses import dataclass

from edge.clock import Clock
from edge.commands import CommandProcessor
from edge.loop import CoreLoop
from edge.outbox import Outbox
from edge.state import StateBoard
from edge.store import Store


@dataclass(frozen=True)
class Ports:
    loop: CoreLoop
    clock: Clock
    outbox: Outbox
    store: Store
    states: StateBoard
    commands: CommandProcessor
