"""The core's dead-letter commands: ``outbox.dead_letters`` (a page of the messages the
broker refused, oldest first) and ``outbox.resend`` (put them back into the outbox). See
docs/mqtt-api.md. Core thread only (command handlers).
"""

from __future__ import annotations

from typing import Any

from edge.core.commands import CommandContext, CommandProcessor
from edge.core.outbox import Outbox
from edge.core.store import PRIORITY_NAMES, Store
from edge.models import DeadLetterInfo, OutboxDeadLettersArgs, OutboxResendArgs


class DeadLetterCommands:
    def __init__(self, store: Store, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    def register(self, commands: CommandProcessor) -> None:
        commands.register("outbox.dead_letters", OutboxDeadLettersArgs, self.list)
        commands.register("outbox.resend", OutboxResendArgs, self.resend)

    def list(self, args: OutboxDeadLettersArgs, ctx: CommandContext) -> dict[str, Any]:
        found = self.store.dead_letters(args.after_id, args.limit + 1)
        more = len(found) > args.limit
        page = found[: args.limit]
        return {
            "dead_letters": [
                DeadLetterInfo(
                    id=d.id,
                    type=d.type,
                    seq=d.seq,
                    event_id=d.event_id,
                    priority=PRIORITY_NAMES.get(d.priority, str(d.priority)),
                    topic=d.topic,
                    bytes=len(d.payload),
                    reason=d.reason,
                    at=d.at,
                ).model_dump()
                for d in page
            ],
            "total": self.store.dead_letter_count(),
            "dropped": self.store.dead_letters_dropped(),
            "next_after_id": page[-1].id if more else None,
        }

    def resend(self, args: OutboxResendArgs, ctx: CommandContext) -> dict[str, Any]:
        moved = self.outbox.resend_dead_letters(None if args.all else args.ids)
        missing = sorted(set(args.ids or []) - set(moved))
        return {"resent": len(moved), "missing": missing}
