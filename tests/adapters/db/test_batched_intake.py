"""A delivery's alerts are stored one transaction per incident group (issue #10), on every backend:
the in-memory reference, SQLite and PostgreSQL give the same answers. What a failure costs: a group
whose transaction fails is retried one alert per transaction, so only an alert the store refuses, and
the alerts after it in its group, stay unstored; other groups are stored; the delivery then fails."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from bot.adapters.db import SqlStore
from bot.core.incidents import IncidentState, StoredAlert
from bot.core.store import Store, Transaction
from bot.services.incidents import IncidentService
from tests.adapters.db.conftest import SQL, EngineFactory
from tests.services.test_incidents import Clock, alert, group_of, service_of


class Refused(RuntimeError):
    """What :class:`Recording` raises for an alert it was told to refuse."""


class _RefusingTransaction:
    """The store's transaction, except that it notes the groups it locks and saving a refused fingerprint
    raises (as a database refuses a value it cannot hold)."""

    def __init__(self, tx: Transaction, refuse: set[str], locked: list[str]) -> None:
        self._tx = tx
        self._refuse = refuse
        self._locked = locked

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)

    async def lock_group(self, key: str) -> None:
        self._locked.append(key)
        await self._tx.lock_group(key)

    async def save_alert(self, alert: StoredAlert) -> None:
        if alert.fingerprint in self._refuse:
            raise Refused(alert.fingerprint)
        await self._tx.save_alert(alert)


class Recording:
    """Wraps a store: counts transactions and the groups each locked; refuses some alerts; can fail the
    next ``fail_next`` transactions when they end (as a dropped connection fails a commit)."""

    def __init__(self, store: Store, refuse: Sequence[str] = ()) -> None:
        self.store = store
        self.refuse = set(refuse)
        self.fail_next = 0
        self.locked: list[list[str]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        locked: list[str] = []
        self.locked.append(locked)
        async with self.store.transaction() as tx:
            yield _RefusingTransaction(tx, self.refuse, locked)
            if self.fail_next:
                self.fail_next -= 1
                raise ConnectionResetError("the connection dropped before the commit")


@pytest.fixture
def clock() -> Clock:
    return Clock()


def service(store: Any, clock: Clock) -> IncidentService:
    return IncidentService(store, route=service_of, group=group_of, clock=clock)


async def stored(store: Store, fingerprint: str) -> StoredAlert | None:
    async with store.transaction() as tx:
        return await tx.get_alert(fingerprint)


async def test_a_webhook_of_one_group_is_stored_in_one_transaction_locking_the_group_once(
    store: Store, clock: Clock
) -> None:
    recording = Recording(store)
    report = await service(recording, clock).ingest([alert("a1"), alert("a2"), alert("a3")])
    assert recording.locked == [["shop:5xx"]]
    assert [r.outcome for r in report.results] == ["opened", "joined", "joined"]
    [incident] = await store.list_incidents()
    assert incident.alert_count == 3
    assert [m.kind for m in await store.pending_messages()] == ["opened"]
    assert [e.kind for e in await store.timeline(incident.id)] == [
        "opened", "diagnosis_queued", "alert_firing", "alert_firing"
    ]  # fmt: skip


async def test_groups_get_a_transaction_each_in_order_of_first_appearance_and_results_keep_the_input_order(
    store: Store, clock: Clock
) -> None:
    recording = Recording(store)
    report = await service(recording, clock).ingest(
        [alert("a1"), alert("b1", service="blog"), alert("a2"), alert("a3", status=504)]
    )
    assert recording.locked == [["shop:5xx"], ["blog:5xx"]]
    assert [(r.fingerprint, r.outcome, r.incident_id) for r in report.results] == [
        ("a1", "opened", "1"), ("b1", "opened", "2"), ("a2", "joined", "1"), ("a3", "joined", "1")
    ]  # fmt: skip


async def test_the_same_alert_twice_in_one_webhook_is_a_duplicate_the_second_time(store: Store, clock: Clock) -> None:
    report = await service(store, clock).ingest([alert("a1"), alert("a1")])
    assert [r.outcome for r in report.results] == ["opened", "duplicate"]
    got = await stored(store, "a1")
    assert got is not None and got.repeats == 1


async def test_an_alert_firing_then_resolved_in_one_webhook_opens_and_resolves_its_incident(
    store: Store, clock: Clock
) -> None:
    report = await service(store, clock).ingest([alert("a1"), alert("a2"), alert("a1", state="resolved"),
                                                 alert("a2", state="resolved")])  # fmt: skip
    assert [r.outcome for r in report.results] == ["opened", "joined", "resolved_alert", "resolved_incident"]
    [incident] = await store.list_incidents()
    assert incident.state is IncidentState.RESOLVED and incident.alert_count == 2
    assert [m.kind for m in await store.pending_messages()] == ["opened", "resolved", "post"]


async def test_a_refused_alert_costs_itself_and_the_alerts_after_it_in_its_group_and_the_delivery_fails(
    store: Store, clock: Clock
) -> None:
    recording = Recording(store, refuse=["bad"])
    webhook = [alert("a1"), alert("b1", service="blog"), alert("bad"), alert("a2")]
    with pytest.raises(Refused):
        await service(recording, clock).ingest(webhook)
    # the shop group's batch failed, then a1 alone (stored) and bad alone (refused: a2 is not tried);
    # blog had its own transaction
    assert recording.locked == [["shop:5xx"], ["shop:5xx"], ["shop:5xx"], ["blog:5xx"]]
    assert await stored(store, "a1") is not None and await stored(store, "b1") is not None
    assert await stored(store, "bad") is None and await stored(store, "a2") is None
    # Alertmanager's retry of the same delivery, once the store takes the alert: nothing is doubled
    recording.refuse.clear()
    report = await service(recording, clock).ingest(webhook)
    assert [r.outcome for r in report.results] == ["duplicate", "duplicate", "joined", "joined"]
    assert sorted((i.key, i.alert_count) for i in await store.list_incidents()) == [("blog:5xx", 1), ("shop:5xx", 3)]
    assert [m.kind for m in await store.pending_messages()] == ["opened", "opened"]


async def test_a_group_whose_transaction_fails_once_is_stored_by_the_retry_and_the_delivery_succeeds(
    store: Store, clock: Clock
) -> None:
    recording = Recording(store)
    recording.fail_next = 1
    report = await service(recording, clock).ingest([alert("a1"), alert("a2")])
    assert [r.outcome for r in report.results] == ["opened", "joined"]
    assert recording.locked == [["shop:5xx"], ["shop:5xx"], ["shop:5xx"]]
    [incident] = await store.list_incidents()
    assert incident.alert_count == 2
    assert [m.kind for m in await store.pending_messages()] == ["opened"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_an_alert_postgresql_refuses_is_left_out_and_the_rest_of_the_delivery_is_stored(
    store: Store, clock: Clock
) -> None:
    """A fingerprint longer than the column allows: PostgreSQL refuses it when the held rows are sent."""
    too_long = "f" * 300
    with pytest.raises(Exception, match="too long"):
        await service(store, clock).ingest([alert("a1"), alert(too_long), alert("a2"), alert("b1", service="blog")])
    assert await stored(store, "a1") is not None and await stored(store, "b1") is not None
    assert await stored(store, "a2") is None
    assert sorted(i.key for i in await store.list_incidents()) == ["blog:5xx", "shop:5xx"]


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_after_postgresql_drops_every_connection_the_next_webhook_is_stored_without_an_error(
    engines: EngineFactory, db_url: str, clock: Clock
) -> None:
    """No ping per transaction. Killed right before the delivery, the pooled connection is handed out before
    the event loop reads the server's goodbye: its transaction fails, and the group's retry stores it."""
    store = SqlStore(await engines())
    incidents = service(store, clock)
    await incidents.ingest([alert("a1")])
    database = db_url.rsplit("/", 1)[1]
    with psycopg.connect(db_url.replace("+asyncpg", ""), autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        )
    report = await incidents.ingest([alert("a2")])
    assert [r.outcome for r in report.results] == ["joined"]
    assert await stored(store, "a2") is not None


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_two_alerts_joining_an_open_incident_cost_eight_round_trips_on_postgresql(
    store: Store, clock: Clock, backend: str
) -> None:
    """The round trips of the common case. PostgreSQL: BEGIN, lock the group, read the first alert with the
    open incident, read the second alert, send the incident, the alerts and the events, COMMIT; all but the
    lock (which begins the transaction) straight on asyncpg. SQLite
    (no round trips, but each statement is a hop to aiosqlite's thread): BEGIN IMMEDIATE instead of the
    lock, the same reads and writes plus the group's row, and the commit."""
    assert isinstance(store, SqlStore)
    incidents = service(store, clock)
    await incidents.ingest([alert("a1")])
    sent: list[str] = []
    drivers: list[Any] = []

    def statement(_conn: object, _cursor: object, sql: str, *_: object) -> None:  # through SQLAlchemy
        sent.append("sqlalchemy " + sql.split(None, 1)[0].upper())

    def query(logged: Any) -> None:  # straight to asyncpg (the transaction's own statements, BEGIN, COMMIT)
        sent.append("asyncpg " + logged.query.split(None, 1)[0].upper().rstrip(";"))

    def checkout(dbapi_connection: Any, *_: object) -> None:
        if backend == "postgresql" and dbapi_connection.driver_connection not in drivers:
            drivers.append(dbapi_connection.driver_connection)
            dbapi_connection.driver_connection.add_query_logger(query)

    engine = store.engine.sync_engine
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "checkout", checkout)
    try:
        await incidents.ingest([alert("a2"), alert("a3")])
    finally:
        event.remove(engine, "before_cursor_execute", statement)
        event.remove(engine, "checkout", checkout)
        for driver in drivers:
            driver.remove_query_logger(query)
    if backend == "postgresql":  # the lock begins the transaction through SQLAlchemy; the rest go direct
        assert Counter(sent) == {
            "asyncpg BEGIN": 1, "sqlalchemy SELECT": 1, "asyncpg SELECT": 2, "asyncpg INSERT": 3, "asyncpg COMMIT": 1
        }  # fmt: skip
    else:
        assert sent == ["sqlalchemy BEGIN", "sqlalchemy SELECT", "sqlalchemy SELECT"] + ["sqlalchemy INSERT"] * 4
