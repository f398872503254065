"""The store port: what the incident service needs from persistence.

All changes happen inside :meth:`Store.transaction`; an implementation makes each transaction atomic
and serialises transactions that lock the same group key (:meth:`Transaction.lock_group`), so two
deliveries of the same alert (retries, HA peers, several replicas) can never open two incidents. The
SQL adapter does it with a row lock per group; :class:`bot.testing.MemoryStore` with one asyncio lock.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Protocol

from bot.core.incidents import Incident, Job, OutboxMessage, StoredAlert, TimelineEvent


class Transaction(Protocol):
    async def lock_group(self, key: str) -> None:
        """Serialise every transaction that works on this incident group until this one ends."""
        ...

    async def get_alert(self, fingerprint: str) -> StoredAlert | None: ...

    async def save_alert(self, alert: StoredAlert) -> None: ...

    async def firing_alerts(self, incident_id: str) -> Sequence[StoredAlert]: ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def open_incident(self, key: str) -> Incident | None:
        """The group's incident that is not resolved, if any."""
        ...

    async def last_resolved(self, key: str, since: datetime) -> Incident | None:
        """The group's most recent incident resolved at or after ``since`` (flapping window)."""
        ...

    async def next_incident_number(self) -> int: ...

    async def save_incident(self, incident: Incident) -> None: ...

    async def add_event(self, event: TimelineEvent) -> None: ...

    async def enqueue_job(self, job: Job) -> None: ...

    async def enqueue_message(self, message: OutboxMessage) -> None: ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def list_incidents(self, *, limit: int = 50) -> Sequence[Incident]: ...

    async def timeline(self, incident_id: str) -> Sequence[TimelineEvent]: ...

    async def pending_messages(self) -> Sequence[OutboxMessage]: ...

    async def pending_jobs(self) -> Sequence[Job]: ...
