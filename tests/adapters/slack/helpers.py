"""Helpers of the Slack adapter tests: a fake clock shared by the outbox worker and the fake Slack,
incidents and outbox messages as the worker hands them over."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.core.incidents import Incident, OutboxMessage
from bot.core.store import ClaimedMessage
from bot.testing import MemoryStore

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)


class Clock:
    """A fake clock: ``sleep`` moves time on; ``timestamp`` is the same time for the fake Slack."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def timestamp(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def make_incident(n: int = 1, **update: Any) -> Incident:
    return Incident(
        id=str(n), key=f"shop{n}:5xx", service="shop", routed=True, status=502, title="shop answers 502", opened_at=T0
    ).model_copy(update=update)


async def stored(store: MemoryStore, incident: Incident) -> Incident:
    async with store.transaction() as tx:
        await tx.save_incident(incident)
    return incident


def outbox(mid: str, incident: Incident, kind: str, *, attempts: int = 1, **payload: Any) -> ClaimedMessage:
    """An outbox message as the worker hands it over (``attempts`` > 1: offered again)."""
    message = OutboxMessage.model_validate(
        {"id": mid, "incident_id": incident.id, "kind": kind, "created_at": T0, "payload": payload}
    )
    return ClaimedMessage(**message.model_dump(), attempts=attempts)
