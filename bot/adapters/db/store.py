"""``SqlStore``: the Store port (bot/core/store.py) on SQLAlchemy Core, behaving like MemoryStore.

Serialisation. On PostgreSQL ``lock_group`` takes a row lock on the group's row (``SELECT … FOR
UPDATE``; the first time, ``INSERT … ON CONFLICT DO UPDATE`` inserts and locks it in one statement) held
until the transaction ends; statements after it see whatever the previous holder committed (READ
COMMITTED). On SQLite every write transaction starts with ``BEGIN IMMEDIATE``, which takes the
database's write lock up front, so writers (tasks, engines or processes) run one at a time; within
this process they take turns in arrival order (:class:`bot.adapters.db.writer.Writer`).

Cost. The alert path's statements are built once per dialect (:mod:`bot.adapters.db.statements`), and a
transaction holds its writes to alerts, incidents, events, jobs and the outbox back until they are
needed, then sends them as one ``executemany`` per table (:mod:`bot.adapters.db.pending`, which says why
that changes nothing a reader of the transaction or of the database could see). On PostgreSQL a
transaction's own statements go straight to asyncpg once SQLAlchemy has begun it
(:mod:`bot.adapters.db.direct`). A method added to :class:`SqlTransaction` may run its own statements on
``self.conn`` as usual: the held writes go first.

Queues. Jobs are claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL) and leased: a running job whose
lease expired is claimable again. Outbox claims also take a transaction-scoped advisory lock so two
senders never see the same head of an incident's queue: the per-incident order rule (see
:meth:`SqlStore.claim_messages`) needs the previous claimer's commit to be visible.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel
from sqlalchemy import ColumnElement, Table, and_, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import Executable

from bot.adapters.db.direct import DirectStatements, direct_statements
from bot.adapters.db.pending import PendingWrites, watch
from bot.adapters.db.statements import Statements, statements
from bot.adapters.db.tables import (
    approvals,
    audit,
    chat_threads,
    diagnoses,
    escalation_timers,
    events,
    incidents,
    jobs,
    oncall_overrides,
    outbox,
    pagings,
)
from bot.adapters.db.writer import Writer
from bot.core.approvals import Approval, ApprovalState
from bot.core.audit_chain import GENESIS, ChainedEntry, entry_hash
from bot.core.incidents import (
    ChatThread,
    EscalationTimer,
    Incident,
    Job,
    OutboxMessage,
    Paging,
    StoredAlert,
    TimelineEvent,
)
from bot.core.oncall import Override
from bot.core.ports import AuditEntry
from bot.core.store import MESSAGE_LEASE, ClaimedJob, ClaimedMessage, ClaimedTimer, Store, Transaction

M = TypeVar("M", bound=BaseModel)


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for ``pg_advisory_xact_lock`` (never Python's salted ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


OUTBOX_CLAIM_LOCK = advisory_key("incident-bot:outbox-claim")


def _columns(table: Table, model: type[BaseModel]) -> list[Any]:
    return [table.c[name] for name in model.model_fields]


def _model(model: type[M], row: Any) -> M:
    return model.model_validate(dict(row._mapping))


def _prefixed(model: type[M], values: Mapping[str, Any], prefix: str, key: str) -> M | None:
    """The ``model`` in the columns named ``prefix + field``; None when its ``key`` is NULL."""
    if values[prefix + key] is None:
        return None
    return model.model_validate({name: values[prefix + name] for name in model.model_fields})


#: A row as the transaction's reads hand it on: column name → converted value.
Row = Mapping[Any, Any]


def _first(model: type[M], rows: Sequence[Row]) -> M | None:
    return model.model_validate(rows[0]) if rows else None


class _Sql:
    """What the store and its transactions share: the dialect and how to upsert on it."""

    def __init__(self, dialect: str, direct: DirectStatements | None = None) -> None:
        self.postgres = dialect == "postgresql"
        self.statements: Statements = statements(dialect)
        #: PostgreSQL: the transaction's own statements, compiled for asyncpg (:mod:`bot.adapters.db.direct`).
        self.direct = direct

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
    """One database transaction; everything it wrote is rolled back if the block raises.

    Writes to alerts, incidents, events, jobs and the outbox are held back (:attr:`pending`) and sent
    together: at commit, before a read of this class that needs them, or before any other statement on
    ``conn``. A read of one alert or incident that is held answers from the held row; the reads of
    several rows send the held ones first.

    On PostgreSQL this class's own statements go straight to asyncpg once SQLAlchemy has begun the
    transaction (:mod:`bot.adapters.db.direct`); statements on ``conn`` go through SQLAlchemy."""

    def __init__(self, conn: AsyncConnection, sql: _Sql) -> None:
        self.conn = conn
        self.sql = sql
        self.statements = sql.statements
        self.pending = PendingWrites(sql.statements)
        self._group: str | None = None
        #: The group's open incident as read along with an alert: (key, incident, ``pending.executed`` then).
        self._open: tuple[str, Incident | None, int] | None = None
        self._asyncpg: Any = None

    async def flush(self) -> None:
        """Send the held writes now (still inside the transaction)."""
        if not self.pending:
            return
        driver = await self._driver()
        if driver is None or self.sql.direct is None:
            await self.conn.run_sync(self.pending.send)
        else:
            await self.pending.send_direct(driver, self.sql.direct)

    async def _driver(self) -> Any:
        """The asyncpg connection, while SQLAlchemy's transaction is open on it (else None: SQLite, or no
        statement has begun the transaction yet)."""
        if self.sql.direct is None:
            return None
        if self._asyncpg is None:
            self._asyncpg = (await self.conn.get_raw_connection()).driver_connection
        return self._asyncpg if self._asyncpg.is_in_transaction() else None

    async def _fetch(self, statement: Executable, values: Mapping[str, Any] | None = None) -> Sequence[Row]:
        """The rows of one of :attr:`statements` (directly on asyncpg when it can)."""
        driver = await self._driver()
        if driver is None or self.sql.direct is None:
            return (await self.conn.execute(statement, values)).mappings().all()
        direct = self.sql.direct.get(statement)
        self.pending.executed += 1
        return direct.rows(await driver.fetch(direct.sql, *direct.args(values or {})))

    async def _run(self, statement: Executable, values: Mapping[str, Any]) -> None:
        """Run one of :attr:`statements` that returns no rows."""
        driver = await self._driver()
        if driver is None or self.sql.direct is None:
            await self.conn.execute(statement, values)
            return
        direct = self.sql.direct.get(statement)
        self.pending.executed += 1
        await driver.execute(direct.sql, *direct.args(values))

    async def lock_group(self, key: str) -> None:
        s = self.statements
        self._group = key
        if s.lock_group is None:  # SQLite: BEGIN IMMEDIATE already holds the only write lock
            self.pending.groups[key] = None
            return
        if not await self._fetch(s.lock_group, {"key": key}):
            await self._run(s.add_group, {"key": key})  # inserts and locks, or waits for the inserter

    async def get_alert(self, fingerprint: str) -> StoredAlert | None:
        """The alert; in a transaction that locked a group whose incident it does not hold, the group's open
        incident is read in the same statement, for an :meth:`open_incident` that comes next."""
        held = self.pending.alerts.get(fingerprint)
        if held is not None:
            return held
        key = self._group
        if key is None or any(incident.key == key for incident in self.pending.incidents.values()):
            return _first(StoredAlert, await self._fetch(self.statements.get_alert, {"fingerprint": fingerprint}))
        both = self.statements.alert_and_open_incident
        [row] = await self._fetch(both, {"fingerprint": fingerprint, "key": key})
        self._open = (key, _prefixed(Incident, row, "i_", "id"), self.pending.executed)
        return _prefixed(StoredAlert, row, "a_", "fingerprint")

    async def save_alert(self, alert: StoredAlert) -> None:
        self.pending.alerts[alert.fingerprint] = alert

    async def firing_alerts(self, incident_id: str) -> list[StoredAlert]:
        if self.pending.alerts:
            await self.flush()
        rows = await self._fetch(self.statements.firing_alerts, {"incident_id": incident_id})
        return [StoredAlert.model_validate(row) for row in rows]

    async def get_incident(self, incident_id: str) -> Incident | None:
        held = self.pending.incidents.get(incident_id)
        if held is not None:
            return held
        return _first(Incident, await self._fetch(self.statements.get_incident, {"id": incident_id}))

    async def open_incident(self, key: str) -> Incident | None:
        held = [incident for incident in self.pending.incidents.values() if incident.key == key]
        for incident in held:
            if incident.open:  # the one open incident of the group (a unique index allows no second)
                return incident
        read, self._open = self._open, None
        if read is not None and read[0] == key and read[2] == self.pending.executed and not held:
            return read[1]  # read with the alert just now, and no statement ran since
        if held:  # a held resolution of the group's incident: ask the database as it will be
            await self.flush()
        return _first(Incident, await self._fetch(self.statements.open_incident, {"key": key}))

    async def last_resolved(self, key: str, since: datetime) -> Incident | None:
        if any(incident.key == key for incident in self.pending.incidents.values()):
            await self.flush()
        return _first(Incident, await self._fetch(self.statements.last_resolved, {"key": key, "since": since}))

    async def next_incident_number(self) -> int:
        [row] = await self._fetch(self.statements.next_number)
        return int(row["value"])

    async def save_incident(self, incident: Incident) -> None:
        self.pending.incidents[incident.id] = incident

    async def add_event(self, event: TimelineEvent) -> None:
        self.pending.events.append(event.model_dump())

    async def enqueue_job(self, job: Job) -> None:
        self.pending.jobs.append({**job.model_dump(), "state": "queued", "attempts": 0})

    async def enqueue_message(self, message: OutboxMessage) -> None:
        self.pending.messages.append({**message.model_dump(), "attempts": 0, "next_attempt_at": message.created_at})

    # -- paging (issue #7) -------------------------------------------------------------------------

    async def get_paging(self, incident_id: str) -> Paging | None:
        return await _get_paging(self.conn, incident_id)

    async def save_paging(self, paging: Paging) -> None:
        await self.conn.execute(self.sql.upsert(pagings, paging.model_dump(), "incident_id"))

    async def storm_leader(self, service: str, since: datetime) -> Paging | None:
        stmt = (
            select(*_columns(pagings, Paging))
            .where(
                pagings.c.service == service,
                pagings.c.paged_at >= since,
                pagings.c.state.in_(("paged", "acknowledged")),
                pagings.c.storm_of.is_(None),
            )
            .order_by(pagings.c.paged_at.desc(), pagings.c.incident_id)
            .limit(1)
        )
        row = (await self.conn.execute(stmt)).first()
        return _model(Paging, row) if row is not None else None

    async def storm_followers(self, incident_id: str) -> list[Paging]:
        stmt = (
            select(*_columns(pagings, Paging))
            .where(pagings.c.storm_of == incident_id, pagings.c.state == "folded")
            .order_by(pagings.c.updated_at, pagings.c.incident_id)
        )
        return [_model(Paging, row) for row in await self.conn.execute(stmt)]

    async def schedule_timer(self, timer: EscalationTimer) -> None:
        values = {**timer.model_dump(), "state": "pending", "attempts": 0}
        await self.conn.execute(self.sql.insert_missing(escalation_timers, values, "id"))

    async def cancel_timers(self, incident_id: str, now: datetime) -> int:
        timers = escalation_timers
        stmt = (
            update(timers)
            .where(timers.c.incident_id == incident_id, timers.c.state.in_(("pending", "claimed")))
            .values(state="cancelled", finished_at=now, lease_until=None)
        )
        return int((await self.conn.execute(stmt)).rowcount)

    async def fire_timer(self, timer_id: str, worker: str, now: datetime) -> bool:
        stmt = (
            update(escalation_timers)
            .where(
                escalation_timers.c.id == timer_id,
                escalation_timers.c.state == "claimed",
                escalation_timers.c.lease_owner == worker,
            )
            .values(state="fired", finished_at=now, lease_until=None)
        )
        return bool((await self.conn.execute(stmt)).rowcount == 1)

    async def save_diagnosis(self, incident_id: str, diagnosis_json: dict[str, Any], at: datetime) -> None:
        await self.conn.execute(diagnoses.insert().values(incident_id=incident_id, at=at, body=diagnosis_json))

    async def finish_job(self, job_id: str, ok: bool, now: datetime, *, worker: str | None = None) -> bool:
        result = await self.conn.execute(_finish_job(job_id, ok, now, worker))
        return bool(result.rowcount == 1)

    async def add_approval(self, approval: Approval) -> None:
        await self.conn.execute(approvals.insert().values(**approval.model_dump(mode="python")))


def _finish_job(job_id: str, ok: bool, now: datetime, worker: str | None) -> Any:
    """The update that ends a running job (held by ``worker``, when given)."""
    where: list[ColumnElement[bool]] = [jobs.c.id == job_id, jobs.c.state == "running"]
    if worker is not None:
        where.append(jobs.c.lease_owner == worker)
    return update(jobs).where(*where).values(state="done" if ok else "failed", finished_at=now, lease_until=None)


async def _get_paging(conn: AsyncConnection, incident_id: str) -> Paging | None:
    stmt = select(*_columns(pagings, Paging)).where(pagings.c.incident_id == incident_id)
    row = (await conn.execute(stmt)).first()
    return _model(Paging, row) if row is not None else None


async def _get_incident(conn: AsyncConnection, incident_id: str) -> Incident | None:
    stmt = select(*_columns(incidents, Incident)).where(incidents.c.id == incident_id)
    row = (await conn.execute(stmt)).first()
    return _model(Incident, row) if row is not None else None


class SqlStore:
    """The store on a database prepared by :func:`bot.adapters.db.migrate.upgrade`. Owns no engine:
    whoever created the engine disposes of it."""

    def __init__(self, engine: AsyncEngine, *, writer_wait: float = 15.0) -> None:
        self.engine = engine
        postgres = engine.dialect.name == "postgresql"
        self.sql = _Sql(engine.dialect.name, direct_statements(engine.dialect) if postgres else None)
        self._writer = Writer(engine, wait=writer_wait)
        watch(engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqlTransaction]:
        async with self._writer.begin() as conn:
            tx = SqlTransaction(conn, self.sql)
            tx.pending.hold(conn)
            try:
                yield tx
                await tx.flush()
            finally:
                tx.pending.release(conn)

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
            select(*_columns(incidents, Incident)).order_by(incidents.c.opened_at.desc(), incidents.c.seq).limit(limit)
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
        async with self._writer.begin() as conn:
            result = await conn.execute(_finish_job(job_id, ok, now, worker))
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

    #: Serialises audit appends across replicas (PostgreSQL); SQLite's BEGIN IMMEDIATE already does.
    _AUDIT_CHAIN_LOCK = advisory_key("incident-bot:audit-chain")

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append ``entry`` to the hash chain (bot/core/audit_chain.py) after the last chained row.

        PostgreSQL: a transaction-scoped advisory lock makes appenders take turns, and the read of the
        last hash after it sees the previous holder's commit (READ COMMITTED). The unique ``prev`` index
        refuses a fork should anything write without the lock."""
        values = entry.model_dump()
        values["argv"] = list(entry.argv)
        last = select(audit.c.hash).where(audit.c.hash.is_not(None)).order_by(audit.c.id.desc()).limit(1)
        async with self._writer.begin() as conn:
            if self.sql.postgres:
                await conn.execute(select(func.pg_advisory_xact_lock(self._AUDIT_CHAIN_LOCK)))
            prev = (await conn.execute(last)).scalar() or GENESIS
            await conn.execute(audit.insert().values(**values, prev=prev, hash=entry_hash(entry, prev)))

    async def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        stmt = select(*_columns(audit, AuditEntry)).order_by(audit.c.id.desc()).limit(limit)
        async with self._read() as conn:
            return [_model(AuditEntry, row) for row in await conn.execute(stmt)]

    async def audit_chain(self, *, page: int = 1000) -> AsyncIterator[ChainedEntry]:
        """Every audit row in id order with its link, ``ref`` the row id; read ``page`` rows per query."""
        stmt = select(audit.c.id, audit.c.prev, audit.c.hash, *_columns(audit, AuditEntry)).order_by(audit.c.id)
        after: int | None = None
        while True:
            query = stmt.limit(page) if after is None else stmt.where(audit.c.id > after).limit(page)
            async with self._read() as conn:
                rows = [dict(row._mapping) for row in await conn.execute(query)]
            if not rows:
                return
            after = int(rows[-1]["id"])
            for row in rows:
                ref, prev, digest = str(row.pop("id")), row.pop("prev"), row.pop("hash")
                yield ChainedEntry(ref=ref, entry=AuditEntry.model_validate(row), prev=prev, hash=digest)
            if len(rows) < page:
                return

    # -- escalation timers and on-call overrides (issue #7) ----------------------------------------

    async def claim_timer(self, worker: str, lease: timedelta, now: datetime) -> ClaimedTimer | None:
        timers = escalation_timers
        due = and_(timers.c.state == "pending", timers.c.due_at <= now)
        expired = and_(timers.c.state == "claimed", timers.c.lease_until <= now)
        stmt = (
            select(timers.c.seq, timers.c.attempts, *_columns(timers, EscalationTimer))
            .where(or_(due, expired))
            .order_by(timers.c.due_at, timers.c.seq)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        async with self._writer.begin() as conn:
            row = (await conn.execute(stmt)).first()
            if row is None:
                return None
            until = now + lease
            await conn.execute(
                update(timers)
                .where(timers.c.seq == row.seq)
                .values(state="claimed", attempts=row.attempts + 1, lease_owner=worker, lease_until=until)
            )
        fields = {name: row._mapping[name] for name in EscalationTimer.model_fields}
        return ClaimedTimer(**fields, attempts=row.attempts + 1, worker=worker, lease_until=until)

    async def pending_timers(self, incident_id: str | None = None) -> list[EscalationTimer]:
        timers = escalation_timers
        stmt = select(*_columns(timers, EscalationTimer)).where(timers.c.state.in_(("pending", "claimed")))
        if incident_id is not None:
            stmt = stmt.where(timers.c.incident_id == incident_id)
        async with self._read() as conn:
            rows = await conn.execute(stmt.order_by(timers.c.due_at, timers.c.seq))
            return [_model(EscalationTimer, row) for row in rows]

    async def get_paging(self, incident_id: str) -> Paging | None:
        async with self._read() as conn:
            return await _get_paging(conn, incident_id)

    async def add_override(self, override: Override) -> None:
        async with self._writer.begin() as conn:
            await conn.execute(oncall_overrides.insert().values(**override.model_dump()))

    async def overrides(self, now: datetime) -> list[Override]:
        stmt = (
            select(*_columns(oncall_overrides, Override))
            .where(oncall_overrides.c.ends_at > now)
            .order_by(oncall_overrides.c.created_at, oncall_overrides.c.seq)
        )
        async with self._read() as conn:
            return [_model(Override, row) for row in await conn.execute(stmt)]

    # -- approvals of mutating runbooks (issue #9) -------------------------------------------------

    async def get_approval(self, approval_id: str) -> Approval | None:
        async with self._read() as conn:
            stmt = select(*_columns(approvals, Approval)).where(approvals.c.id == approval_id)
            return _first(Approval, (await conn.execute(stmt)).mappings().all())

    async def transition_approval(
        self,
        approval_id: str,
        expect: Sequence[ApprovalState],
        to: ApprovalState,
        at: datetime,
        *,
        decided_by: str | None = None,
        decider: str | None = None,
        outcome: str | None = None,
        unexpired: bool = False,
    ) -> Approval | None:
        changes: dict[str, Any] = {"state": to.value}
        if decided_by is not None or decider is not None:
            changes.update(decided_by=decided_by, decider=decider, decided_at=at)
        if outcome is not None:
            changes["outcome"] = outcome
        where = [approvals.c.id == approval_id, approvals.c.state.in_([s.value for s in expect])]
        if unexpired:
            where.append(approvals.c.expires_at > at)
        async with self._writer.begin() as conn:
            if not (await conn.execute(update(approvals).where(*where).values(**changes))).rowcount:
                return None
            stmt = select(*_columns(approvals, Approval)).where(approvals.c.id == approval_id)
            return _first(Approval, (await conn.execute(stmt)).mappings().all())

    async def due_approvals(self, now: datetime, *, limit: int = 100) -> list[Approval]:
        stmt = (
            select(*_columns(approvals, Approval))
            .where(approvals.c.state == ApprovalState.PENDING.value, approvals.c.expires_at <= now)
            .order_by(approvals.c.expires_at, approvals.c.id)
            .limit(limit)
        )
        async with self._read() as conn:
            return [_model(Approval, row) for row in await conn.execute(stmt)]

    async def stuck_approvals(self, started_before: datetime) -> list[Approval]:
        stmt = (
            select(*_columns(approvals, Approval))
            .where(approvals.c.state == ApprovalState.RUNNING.value, approvals.c.decided_at < started_before)
            .order_by(approvals.c.decided_at, approvals.c.id)
        )
        async with self._read() as conn:
            return [_model(Approval, row) for row in await conn.execute(stmt)]

    async def approvals(self, incident_id: str) -> list[Approval]:
        stmt = (
            select(*_columns(approvals, Approval))
            .where(approvals.c.incident_id == incident_id)
            .order_by(approvals.c.created_at, approvals.c.id)
        )
        async with self._read() as conn:
            return [_model(Approval, row) for row in await conn.execute(stmt)]


if TYPE_CHECKING:  # mypy checks that the adapter satisfies the port

    def _is_a_store(store: SqlStore) -> Store:
        return store

    def _is_a_transaction(tx: SqlTransaction) -> Transaction:
        return tx
