"""``Statements``: the SQL of the alert hot path, built once per dialect and run with bind parameters.

Building a SQLAlchemy statement for each call (``insert(t).values(**row)``, ``select(…).where(c == v)``)
and computing its cache key cost more CPU than running it. These are built the first time a dialect
asks for them (:func:`statements`), kept for the life of the process, and executed as
``conn.execute(statement, row)``, or ``conn.execute(statement, rows)`` for one ``executemany``. Their
columns are the models' fields, so a column added to a table and to its model is picked up here
without an edit.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Table, and_, bindparam, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.expression import Executable

from bot.adapters.db.tables import alerts, counters, events, groups, incidents, jobs, outbox
from bot.core.incidents import Incident, IncidentState, StoredAlert

#: The counter row that numbers incidents.
INCIDENT_COUNTER = "incident"

_RESOLVED = IncidentState.RESOLVED.value


@dataclass(frozen=True, eq=False)
class Statements:
    """One dialect's statements; bind parameter names are the column names."""

    postgres: bool
    #: PostgreSQL: ``SELECT … FOR UPDATE`` of the group's row (``key``); None on SQLite, where
    #: ``BEGIN IMMEDIATE`` already holds the only write lock.
    lock_group: Executable | None
    #: Inserts the group's row (``key``). PostgreSQL: ``ON CONFLICT DO UPDATE``, which also locks the row
    #: (or waits for the transaction that is inserting it, then locks it); SQLite: ``DO NOTHING``.
    add_group: Executable
    get_alert: Executable
    #: The alert (``fingerprint``; columns ``a_<field>``) and the group's open incident (``key``; columns
    #: ``i_<field>``) in one row, either side all NULL when missing: both reads of a firing alert in one
    #: round trip.
    alert_and_open_incident: Executable
    save_alert: Executable
    firing_alerts: Executable
    get_incident: Executable
    open_incident: Executable
    last_resolved: Executable
    next_number: Executable
    save_incident: Executable
    add_event: Executable
    enqueue_job: Executable
    enqueue_message: Executable

    @property
    def reads(self) -> tuple[Executable, ...]:
        """The statements that read the tables a transaction holds writes back for (or, for the incident
        counter, touch none of them): the transaction decides itself whether to send its writes first."""
        return (
            self.get_alert,
            self.alert_and_open_incident,
            self.firing_alerts,
            self.get_incident,
            self.open_incident,
            self.last_resolved,
            self.next_number,
        )


def _fields(table: Table, model: type[BaseModel]) -> list[Any]:
    return [table.c[name] for name in model.model_fields]


def _upsert(insert: Callable[[Table], Any], table: Table, model: type[BaseModel], key: str) -> Executable:
    """``INSERT … ON CONFLICT (key) DO UPDATE`` setting every other field of ``model`` to the new row's."""
    stmt = insert(table)
    changes = {name: stmt.excluded[name] for name in model.model_fields if name != key}
    result: Executable = stmt.on_conflict_do_update(index_elements=[key], set_=changes)
    return result


@functools.cache
def statements(dialect: str) -> Statements:
    """The statements for ``dialect`` (``postgresql`` or ``sqlite``), built on the first call."""
    postgres = dialect == "postgresql"
    insert: Callable[[Table], Any] = postgresql.insert if postgres else sqlite.insert
    incident_fields = _fields(incidents, Incident)
    group = insert(groups)
    if postgres:
        lock: Executable | None = select(groups.c.key).where(groups.c.key == bindparam("key")).with_for_update()
        add_group: Executable = group.on_conflict_do_update(index_elements=["key"], set_={"key": group.excluded.key})
    else:
        lock = None
        add_group = group.on_conflict_do_nothing(index_elements=["key"])
    counter = insert(counters).values(name=INCIDENT_COUNTER, value=1)
    one = select(literal(1).label("one")).subquery("one")
    both = (
        select(
            *(column.label(f"a_{column.name}") for column in _fields(alerts, StoredAlert)),
            *(column.label(f"i_{column.name}") for column in incident_fields),
        )
        .select_from(
            one.outerjoin(alerts, alerts.c.fingerprint == bindparam("fingerprint")).outerjoin(
                incidents, and_(incidents.c.key == bindparam("key"), incidents.c.state != _RESOLVED)
            )
        )
        .order_by(incidents.c.seq)
        .limit(1)
    )
    return Statements(
        postgres=postgres,
        lock_group=lock,
        add_group=add_group,
        get_alert=select(*_fields(alerts, StoredAlert)).where(alerts.c.fingerprint == bindparam("fingerprint")),
        alert_and_open_incident=both,
        save_alert=_upsert(insert, alerts, StoredAlert, "fingerprint"),
        firing_alerts=select(*_fields(alerts, StoredAlert))
        .where(alerts.c.incident_id == bindparam("incident_id"), alerts.c.state == "firing")
        .order_by(alerts.c.first_seen, alerts.c.fingerprint),
        get_incident=select(*incident_fields).where(incidents.c.id == bindparam("id")),
        open_incident=select(*incident_fields)
        .where(incidents.c.key == bindparam("key"), incidents.c.state != _RESOLVED)
        .order_by(incidents.c.seq)
        .limit(1),
        last_resolved=select(*incident_fields)
        .where(
            incidents.c.key == bindparam("key"),
            incidents.c.state == _RESOLVED,
            incidents.c.resolved_at >= bindparam("since"),
        )
        .order_by(incidents.c.resolved_at.desc(), incidents.c.seq)
        .limit(1),
        next_number=counter.on_conflict_do_update(
            index_elements=["name"], set_={"value": counters.c.value + 1}
        ).returning(counters.c.value),
        save_incident=_upsert(insert, incidents, Incident, "id"),
        add_event=events.insert(),
        enqueue_job=jobs.insert(),
        enqueue_message=outbox.insert(),
    )
