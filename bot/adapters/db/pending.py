"""``PendingWrites``: the rows a store transaction holds back until they must be sent.

Within one transaction the incident service writes the same few rows again and again (the incident,
whose alert count grows with each alert; the alert; a timeline event per alert). Sent one by one, each
costs a round trip and a statement execution. Held here instead, they go out as one ``executemany`` per
table (:meth:`PendingWrites.send`):

- when the transaction commits;
- when one of the transaction's own reads needs them (``SqlTransaction`` asks before each read);
- before **any other** statement runs on the transaction's connection: :func:`watch` puts a
  ``before_execute`` listener on the engine that sends them first, so a method that runs its own SQL
  inside the transaction (``self.conn.execute(…)``) sees every earlier write, as it would have without
  holding anything back. Only the statements :attr:`Statements.reads` lists skip it: their callers check
  what is held themselves.

Why this is the same as writing at once: rows of one table keep their order (the outbox's ``seq`` and
the events' ``id`` are assigned in that order, and a new incident's ``seq`` in the order of its first
save); an upserted row saved twice is sent once, as its last version, which is what the row would end
up as (each upsert sets every field of the model); incidents go first, and the other tables' foreign
keys to incidents are checked at commit anyway (``DEFERRABLE INITIALLY DEFERRED``). A write the
database refuses (a value too long for PostgreSQL, a constraint) fails when it is sent, still inside
the transaction, which then rolls back as it would have.
"""

from __future__ import annotations

import weakref
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import Executable

from bot.adapters.db.direct import DirectStatements
from bot.adapters.db.statements import Statements
from bot.core.incidents import Incident, StoredAlert

#: The held writes of each connection that is inside a store transaction now.
_HOLDING: weakref.WeakKeyDictionary[Connection, PendingWrites] = weakref.WeakKeyDictionary()


class PendingWrites:
    """What one transaction has written but not sent yet, table by table, in order."""

    def __init__(self, statements: Statements) -> None:
        self.statements = statements
        self._skip = frozenset(id(s) for s in statements.reads)
        #: Group rows to insert (SQLite only: on PostgreSQL ``lock_group`` inserts at once, to lock).
        self.groups: dict[str, None] = {}
        #: The last version of each incident saved, by id, in the order of first save.
        self.incidents: dict[str, Incident] = {}
        #: The last version of each alert saved, by fingerprint, in the order of first save.
        self.alerts: dict[str, StoredAlert] = {}
        self.events: list[dict[str, Any]] = []
        self.jobs: list[dict[str, Any]] = []
        self.messages: list[dict[str, Any]] = []
        #: How many statements have run on the connection while holding (reads answered from a row fetched
        #: earlier check that none ran since).
        self.executed = 0

    def __bool__(self) -> bool:
        return bool(self.groups or self.incidents or self.alerts or self.events or self.jobs or self.messages)

    def hold(self, conn: AsyncConnection) -> None:
        """Hold writes for ``conn`` (in a transaction) until :meth:`release`."""
        _HOLDING[_sync(conn)] = self

    def release(self, conn: AsyncConnection) -> None:
        _HOLDING.pop(_sync(conn), None)

    def send(self, conn: Connection) -> None:
        """Send every held row on ``conn``, one ``executemany`` per table (incidents first), and forget them.

        Synchronous: it runs inside SQLAlchemy's greenlet (``AsyncConnection.run_sync``, or the listener
        of :func:`watch`)."""
        for statement, rows in self._take():
            conn.execute(statement, rows)

    async def send_direct(self, driver: Any, direct: DirectStatements) -> None:
        """:meth:`send`, on the asyncpg connection ``driver`` inside the transaction SQLAlchemy began on it
        (:mod:`bot.adapters.db.direct`): the same statements, values and order."""
        for statement, rows in self._take():
            compiled = direct.get(statement, list(rows[0]))
            self.executed += 1
            await driver.executemany(compiled.sql, [compiled.args(row) for row in rows])

    def _take(self) -> list[tuple[Executable, list[dict[str, Any]]]]:
        """The held rows, table by table (incidents first; tables with none left out), now forgotten."""
        s = self.statements
        batches: list[tuple[Executable, list[dict[str, Any]]]] = [
            (s.add_group, [{"key": key} for key in self.groups]),
            (s.save_incident, [_incident_row(incident) for incident in self.incidents.values()]),
            (s.save_alert, [alert.model_dump() for alert in self.alerts.values()]),
            (s.add_event, self.events),
            (s.enqueue_job, self.jobs),
            (s.enqueue_message, self.messages),
        ]
        self.groups, self.incidents, self.alerts = {}, {}, {}
        self.events, self.jobs, self.messages = [], [], []
        return [(statement, rows) for statement, rows in batches if rows]

    def first(self, conn: Connection, statement: object) -> None:
        """Before ``statement`` runs on ``conn``: send what is held, unless it is a read that checks itself."""
        self.executed += 1
        if self and id(statement) not in self._skip:
            self.send(conn)


def _sync(conn: AsyncConnection) -> Connection:
    sync = conn.sync_connection
    if sync is None:
        raise RuntimeError("the connection is not open")
    return sync


def _incident_row(incident: Incident) -> dict[str, Any]:
    row = incident.model_dump()
    row["state"] = incident.state.value
    return row


def _send_first(conn: Connection, clauseelement: object, *_: object) -> None:
    pending = _HOLDING.get(conn)
    if pending is not None:
        pending.first(conn, clauseelement)


def watch(engine: AsyncEngine) -> None:
    """Make every statement run on ``engine`` inside a store transaction send the held writes first.
    Idempotent: an engine shared by several stores is watched once."""
    target = engine.sync_engine
    if not event.contains(target, "before_execute", _send_first):
        event.listen(target, "before_execute", _send_first)
