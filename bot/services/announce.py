"""Who hears about an incident: one outbox message per chat target, queued in the caller's transaction.

The composition root decides an incident's targets from the configuration (``slack`` when Slack is set
up and the incident has a channel, ``telegram`` likewise, else the console); the services only say what
happened. Each target gets its own copy of every message, so one chat's outage never delays another's
thread.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from bot.core.incidents import Incident, OutboxMessage
from bot.core.store import Transaction

#: ``targets(incident)``: the names of the chat senders that show this incident.
Targets = Callable[[Incident], Sequence[str]]


def default_target(incident: Incident) -> Sequence[str]:
    """The outbox's default sender only (tests, and a bot with no chat configured)."""
    return ("",)


class Announcer:
    def __init__(self, targets: Targets = default_target) -> None:
        self.targets = targets

    def messages(
        self, incident: Incident, kind: str, at: datetime, payload: dict[str, Any] | None = None
    ) -> list[OutboxMessage]:
        """The same message once per target of ``incident`` (each with its own id)."""
        return [
            OutboxMessage.model_validate(
                {
                    "id": uuid.uuid4().hex,
                    "incident_id": incident.id,
                    "kind": kind,
                    "created_at": at,
                    "payload": payload or {},
                    "target": target,
                }
            )
            for target in self.targets(incident)
        ]

    async def say(
        self, tx: Transaction, incident: Incident, kind: str, at: datetime, payload: dict[str, Any] | None = None
    ) -> None:
        """Queue the message for every target inside ``tx`` (it commits with the change it reports)."""
        for message in self.messages(incident, kind, at, payload):
            await tx.enqueue_message(message)
