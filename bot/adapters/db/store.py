"""``SqlStore``: the Store port (bot/core/store.py) on SQLAlchemy Core, behaving like MemoryStore.

Serialisation. On PostgreSQL ``lock_group`` inserts the group's row if missing and takes a row lock
on it (``SELECT … FOR UPDATE``) held until the transaction ends; statements after it see whatever the
previous holder committed (READ COMMITTED). On SQLite every write transaction starts with
``BEGIN IMMEDIATE``, which takes the database's write lock up front, so writers (tasks, engines or
processes) run one at a time.

Queues. Jobs are claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) and leased: a running job whose
lease expired is claimable again. Outbox claims also take a transaction-scoped advisory lock so two
senders never see the same head of an incident's queue: the per-incident order rule (see
:meth:`SqlStore.claim_messages`) needs the previous claimer's commit to be visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.adapters.db.engine import SQLITE_BEGIN
from bot.adapters.db.tables import (
    alerts,
    audit,
    chat_threads,
    counters,
    diagnoses,
    events,
    groups,
    incidents,
    jobs,
    outbox,
)
from bot.core.incidents import ChatThread, Incident, IncidentState, Job, OutboxMessage, StoredAlert, TimelineEvent
from bot.core.ports import AuditEntry
from bot.core.store import MESSAGE_LEASE, ClaimedJob, ClaimedMessage, Store, Transaction

M = TypeVar("M", bound=BaseModel)

INCIDENT_COUNTER = "incident"


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` (never Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


OUTBOX_CLAIM_LOCK = advisory_key("incident-bot:outbox-claim")


def _columns(table: Table, model: type[BaseModel]) -> list[Any]:
    return [table.c[name] for name in model.model_fields]


def _model(model: type[M], row: Any) -> M:
    return model.model_validate(dict(row._mapping))


class _Sql:
    """What the store and its transactions share: the dialect and how to upsert on it."""

    def __init__(self, dialect: str) -> None:
        self.postgres = dialect == "postgresql"

    def upsert(self, table: Table, values: Mapping[str, Any], key: str | tuple[str, ...]) -> Any:
        """``INSERT … ON CONFLICT (key) DO UPDATE`` setting every other given column."""
        keys = [key] if isinstance(key, str) else list(key)
        changes = {name: value for name, value in values.items() if name not in keys}
        if self.postgres:
            pg = postgresql.insert(table).values(**values)
            return pg.on_conflict_do_update(index_elements=keys, set_=changes)
        lite = sqlite.insert(table).values(**values)
        return lite.on_conflict_do_update(index_elements=keys, set_=changes)

    def insert_missing(self, table: Table, values: Mapping[str, Any], key: str) -> Any:
        if self.postgres:
            return postgresql.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])
        return sqlite.insert(table).values(**values).on_conflict_do_nothing(index_elements=[key])


class SqlTransaction:
    """One database transaction; everything it wrote is rolled back if the block raises."""

    def __init__(self, conn: AsyncConnection, sql: _Sql) -> None:
        self.conn = conn
        self.sql = sql

    async def lock_group(self, key: str) -> None:
        await self.conn.execute(self.sql.insert_missing(groups, {"key": key}, "key"))
        if self.sql.postgres:  # SQLite: BEGIN IMMEDIATE already holds the only write lock
            await self.conn.execute(select(groups.c.key).where(groups.c.key == key).with_for_update())

    async def get_alert(self, fingerprint: str) -> StoredAlert | None:
        row = (await self.conn.execute(select(alerts).where(alerts.c.fingerprint == fingerprint))).first()
        return _model(StoredAlert, row) if row is not None else None

    async def save_alert(self, alert: StoredAlert) -> None:
        await self.conn.execute(self.sql.upsert(alerts, alert.model_dump(), "fingerprint"))

    async def firing_alerts(self, incident_id: str) -> list[StoredAlert]:
        stmt = (
            select(alerts)
            .where(alerts.c.incident_id == incident_id, alerts.c.state == "firing")
            .order_by(alerts.c.first_seen, alerts.c.fingerprint)
        )
        return [_model(StoredAlert, row) for row in await self.conn.execute(stmt)]

    async def get_incident(self, incident_id: str) -> Incident | None:
        return await _get_incident(self.conn, incident_id)

    async def open_incident(self, key: str) -> Incident | None:
        stmt = (
            select(*_columns(incidents, Incident))
            .where(incidents.c.key == key, incidents.c.state != IncidentState.RESOLVED.value)
            .order_by(incidents.c.seq)
            .limit(1)
        )
        row = (await self.conn.execute(stmt)).first()
        return _model(Incident, row) if row is not None else None

    async def last_resolved(self, key: str, since: datetime) -> Incident | None:
        stmt = (
            select(*_columns(incidents, Incident))
            .where(
                incidents.c.key == key,
                incidents.c.state == IncidentState.RESOLVED.value,
                incidents.c.resolved_at >= since,
            )
            .order_by(incidents.c.resolved_at.desc(), incidents.c.seq)
            .limit(1)
        )
        row = (await self.conn.execute(stmt)).first()
        return _model(Incident, row) if row is not None else None

    async def next_incident_number(self) -> int:
        values = {"name": INCIDENT_COUNTER, "value": 1}
        if self.sql.postgres:
            stmt: Any = postgresql.insert(counters).values(**values)
        else:
            stmt = sqlite.insert(counters).values(**values)
        stmt = stmt.on_conflict_do_update(index_elements=["name"], set_={"value": counters.c.value + 1})
        number = (await self.conn.execute(stmt.returning(counters.c.value))).scalar_one()
        return int(number)

    async def save_incident(self, incident: Incident) -> None:
        values = incident.model_dump()
        values["state"] = incident.state.value
        await self.conn.execute(self.sql.upsert(incidents, values, "id"))

    async def add_event(self, event: TimelineEvent) -> None:
        await self.conn.execute(events.insert().values(**event.model_dump()))

    async def enqueue_job(self, job: Job) -> None:
        await self.conn.execute(jobs.insert().values(**job.model_dump(), state="queued", attempts=0))

    async def enqueue_message(self, message: OutboxMessage) -> None:
        await self.conn.execute(
            outbox.insert().values(**message.model_dump(), attempts=0, next_attempt_at=message.created_at)
        )


async def _get_incident(conn: AsyncConnection, incident_id: str) -> Incident | None:
    stmt = select(*_columns(incidents, Incident)).where(incidents.c.id == incident_id)
    row = (await conn.execute(stmt)).first()
    return _model(Incident, row) if row is not None else None


class SqlStore:
    """The store on a database prepared by :func:`bot.adapters.db.migrate.upgrade`. Owns no engine:
    whoever created the engine disposes of it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sql = _Sql(engine.dialect.name)
        self._writer = engine if self.sql.postgres else engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._writer.begin() as conn:
            yield SqlTransaction(conn, self.sql)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    # -- reads -------------------------------------------------------------------------------------

    async def get_incident(self, incident_id: str) -> Incident | None:
        async with self._read() as conn:
            return await _get_incident(conn, incident_id)

    async def list_incidents(self, *, limit: int = 50) -> list[Incident]:
        stmt = (
            select(*_columns(incidents, Incident))
            .order_by(incidents.c.opened_at.desc(), incidents.c.seq)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_model(Incident, row) for row in await conn.execute(stmt)]

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        stmt = select(*_columns(events, TimelineEvent)).where(events.c.incident_id == incident_id).order_by(events.c.id)
        async with self._read() as conn:
            return [_model(TimelineEvent, row) for row in await conn.execute(stmt)]

    async def pending_messages(self) -> list[OutboxMessage]:
        stmt = select(*_columns(outbox, OutboxMessage)).where(outbox.c.delivered_at.is_(None)).order_by(outbox.c.seq)
        async with self._read() as conn:
            return [_model(OutboxMessage, row) for row in await conn.execute(stmt)]

    async def pending_jobs(self) -> list[Job]:
        stmt = select(*_columns(jobs, Job)).where(jobs.c.state.in_(("queued", "running"))).order_by(jobs.c.seq)
        async with self._read() as conn:
            return [_model(Job, row) for row in await conn.execute(stmt)]

    # -- jobs --------------------------------------------------------------------------------------

    async def claim_job(self, worker: str, lease: timedelta, now: datetime) -> ClaimedJob | None:
        expired = and_(jobs.c.state == "running", jobs.c.lease_until <= now)
        stmt = (
            select(jobs.c.seq, jobs.c.attempts, *_columns(jobs, Job))
            .where(or_(jobs.c.state == "queued", expired))
            .order_by(jobs.c.created_at, jobs.c.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        async with self._writer.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            until = now + lease
            await conn.execute(
                update(jobs)
                .where(jobs.c.seq == row.seq)
                .values(state="running", attempts=row.attempts + 1, lease_owner=worker, lease_until=until)
            )
        fields = {name: row._mapping[name] for name in Job.model_fields}
        return ClaimedJob(**fields, attempts=row.attempts + 1, worker=worker, lease_until=until)

    async def finish_job(self, job_id: str, ok: bool, now: datetime, *, worker: str | None = None) -> bool:
        where: list[ColumnElement[bool]] = [jobs.c.id == job_id, jobs.c.state == "running"]
        if worker is not None:
            where.append(jobs.c.lease_owner == worker)
        stmt = update(jobs).where(*where).values(state="done" if ok else "failed", finished_at=now, lease_until=None)
        async with self._writer.begin() as conn:
            result = await conn.execute(stmt)
        return bool(result.rowcount == 1)

    # -- outbox ------------------------------------------------------------------------------------

    async def claim_messages(
        self, limit: int, now: datetime, *, lease: timedelta = MESSAGE_LEASE
    ) -> list[ClaimedMessage]:
        """Due, undelivered messages in insertion order; one waits while an earlier undelivered message
        of its incident to the same target is not due (leased to a sender, or set to retry later)."""
        if limit <= 0:
            return []
        earlier = outbox.alias("earlier")
        held_back = (
            select(earlier.c.seq)
            .where(
                earlier.c.incident_id == outbox.c.incident_id,
                earlier.c.target == outbox.c.target,
                earlier.c.delivered_at.is_(None),
                earlier.c.seq < outbox.c.seq,
                earlier.c.next_attempt_at > now,
            )
            .exists()
        )
        stmt = (
            select(outbox.c.seq, outbox.c.attempts, *_columns(outbox, OutboxMessage))
            .where(outbox.c.delivered_at.is_(None), outbox.c.next_attempt_at <= now, ~held_back)
            .order_by(outbox.c.seq)
            .limit(limit)
            .with_for_update(skip_locked=True, of=outbox)
        )
        async with self._writer.begin() as conn:
            if self.sql.postgres:
                await conn.execute(select(func.pg_advisory_xact_lock(OUTBOX_CLAIM_LOCK)))
            rows = (await conn.execute(stmt)).all()
            if rows:
                await conn.execute(
                    update(outbox)
                    .where(outbox.c.seq.in_([row.seq for row in rows]))
                    .values(attempts=outbox.c.attempts + 1, next_attempt_at=now + lease)
                )
        fields = OutboxMessage.model_fields
        return [ClaimedMessage(**{f: row._mapping[f] for f in fields}, attempts=row.attempts + 1) for row in rows]

    async def mark_delivered(self, message_id: str, now: datetime) -> None:
        undelivered = and_(outbox.c.id == message_id, outbox.c.delivered_at.is_(None))
        stmt = update(outbox).where(undelivered).values(delivered_at=now)
        async with self._writer.begin() as conn:
            await conn.execute(stmt)

    async def retry_message(self, message_id: str, at: datetime) -> None:
        undelivered = and_(outbox.c.id == message_id, outbox.c.delivered_at.is_(None))
        stmt = update(outbox).where(undelivered).values(next_attempt_at=at)
        async with self._writer.begin() as conn:
            await conn.execute(stmt)

    # -- diagnoses ---------------------------------------------------------------------------------

    async def save_diagnosis(self, incident_id: str, diagnosis_json: dict[str, Any], at: datetime) -> None:
        stmt = diagnoses.insert().values(incident_id=incident_id, at=at, body=diagnosis_json)
        async with self._writer.begin() as conn:
            await conn.execute(stmt)

    async def get_diagnosis(self, incident_id: str) -> dict[str, Any] | None:
        stmt = (
            select(diagnoses.c.body)
            .where(diagnoses.c.incident_id == incident_id)
            .order_by(diagnoses.c.at.desc(), diagnoses.c.id.desc())
            .limit(1)
        )
        async with self._read() as conn:
            body = (await conn.execute(stmt)).scalar_one_or_none()
        return dict(body) if body is not None else None

    # -- chat threads ------------------------------------------------------------------------------

    async def get_thread(self, incident_id: str, target: str) -> ChatThread | None:
        stmt = select(*_columns(chat_threads, ChatThread)).where(
            chat_threads.c.incident_id == incident_id, chat_threads.c.target == target
        )
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return _model(ChatThread, row) if row is not None else None

    async def save_thread(self, thread: ChatThread) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(self.sql.upsert(chat_threads, thread.model_dump(), ("incident_id", "target")))

    async def find_thread(self, target: str, channel: str, root: str) -> ChatThread | None:
        stmt = select(*_columns(chat_threads, ChatThread)).where(
            chat_threads.c.target == target, chat_threads.c.channel == channel, chat_threads.c.root == root
        )
        async with self._read() as conn:
            row = (await conn.execute(stmt)).first()
        return _model(ChatThread, row) if row is not None else None

    # -- audit -------------------------------------------------------------------------------------

    async def record_audit(self, entry: AuditEntry) -> None:
        values = entry.model_dump()
        values["argv"] = list(entry.argv)
        async with self._writer.begin() as conn:
            await conn.execute(audit.insert().values(**values))

    async def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        stmt = select(*_columns(audit, AuditEntry)).order_by(audit.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [_model(AuditEntry, row) for row in await conn.execute(stmt)]


if TYPE_CHECKING:  # mypy checks that the adapter satisfies the port

    def _is_a_store(store: SqlStore) -> Store:
        return store

    def _is_a_transaction(tx: SqlTransaction) -> Transaction:
        return tx
