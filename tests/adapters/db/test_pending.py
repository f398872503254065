"""The SQL store's transactions hold their writes back and send them in batches (bot/adapters/db/pending.py);
nothing run inside the transaction, nor the database after the commit, may tell the difference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import func, insert, select

from bot.adapters.db import SqlStore
from bot.adapters.db.store import SqlTransaction
from bot.adapters.db.tables import events, incidents, outbox
from bot.core.incidents import Incident, IncidentState, OutboxMessage, StoredAlert, TimelineEvent
from bot.core.store import Store
from tests.adapters.db.conftest import SQL

pytestmark = pytest.mark.parametrize("backend", SQL, indirect=True)

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)


def incident(number: int, **changes: object) -> Incident:
    base = Incident(id=str(number), key="shop:5xx", service="shop", routed=True, status=502, title="t", opened_at=T0)
    return base.model_copy(update=changes)


def alert(fingerprint: str, incident_id: str = "1", **changes: object) -> StoredAlert:
    base = StoredAlert(fingerprint=fingerprint, source="generic", state="firing", incident_id=incident_id, status=502,
                       first_seen=T0, last_seen=T0)  # fmt: skip
    return base.model_copy(update=changes)


def sql_tx(tx: object) -> SqlTransaction:
    assert isinstance(tx, SqlTransaction)
    return tx


async def test_a_statement_of_its_own_inside_the_transaction_sees_every_earlier_write(store: Store) -> None:
    """What a method added to SqlTransaction (running SQL on ``self.conn``) relies on."""
    async with store.transaction() as tx:
        await tx.save_incident(incident(1))
        await tx.add_event(TimelineEvent(incident_id="1", at=T0, kind="opened", text="opened"))
        conn = sql_tx(tx).conn
        assert (await conn.execute(select(func.count()).select_from(events))).scalar_one() == 1
        assert (await conn.execute(select(incidents.c.alert_count))).scalar_one() == 0
        await tx.save_incident(incident(1, alert_count=2))
        assert (await conn.execute(select(incidents.c.alert_count))).scalar_one() == 2


async def test_held_rows_are_written_in_the_order_given_and_an_upsert_saved_twice_ends_as_its_last_version(
    store: Store,
) -> None:
    async with store.transaction() as tx:
        await tx.save_incident(incident(2, key="blog:5xx"))
        await tx.save_incident(incident(1))
        await tx.save_incident(incident(2, key="blog:5xx", alert_count=5, title="last"))
        for n in range(3):
            await tx.enqueue_message(
                OutboxMessage.model_validate({"id": f"m{n}", "incident_id": "1", "kind": "post", "created_at": T0})
            )
        await tx.save_alert(alert("a1"))
        await tx.save_alert(alert("a1", repeats=3))
    got = await store.get_incident("2")
    assert got is not None and (got.alert_count, got.title) == (5, "last")
    assert [i.id for i in await store.list_incidents()] == ["2", "1"]  # same opened_at: first saved first
    assert [m.id for m in await store.pending_messages()] == ["m0", "m1", "m2"]
    async with store.transaction() as tx:
        saved = await tx.get_alert("a1")
    assert saved is not None and saved.repeats == 3


async def test_reads_of_the_transaction_answer_from_what_it_holds(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.lock_group("shop:5xx")
        await tx.save_incident(incident(1))
        await tx.save_alert(alert("a1"))
        assert await tx.open_incident("shop:5xx") == incident(1)
        assert await tx.get_incident("1") == incident(1)
        assert await tx.get_alert("a1") == alert("a1")
        assert [a.fingerprint for a in await tx.firing_alerts("1")] == ["a1"]
        await tx.save_incident(incident(1, state=IncidentState.RESOLVED, resolved_at=T0))
        assert await tx.open_incident("shop:5xx") is None
        last = await tx.last_resolved("shop:5xx", T0)
        assert last is not None and last.id == "1"


async def test_the_open_incident_read_along_with_an_alert_is_read_again_once_another_statement_ran(
    store: Store,
) -> None:
    async with store.transaction() as tx:
        await tx.lock_group("shop:5xx")
        assert await tx.get_alert("a1") is None  # read with the group's open incident: none yet
        row = {**incident(7).model_dump(), "state": "triggered"}
        await sql_tx(tx).conn.execute(insert(incidents).values(**row))
        found = await tx.open_incident("shop:5xx")
        assert found is not None and found.id == "7"


async def test_a_refused_held_write_fails_the_transaction_and_leaves_nothing_behind(store: Store) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with store.transaction() as tx:
            await tx.save_incident(incident(1))
            await tx.add_event(TimelineEvent(incident_id="1", at=datetime(2026, 11, 30), kind="note", text="naive"))
    assert await store.list_incidents() == []
    assert isinstance(store, SqlStore)
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(outbox))).scalar_one() == 0


async def test_writes_after_the_transaction_began_convert_values_as_sqlalchemy_does(store: Store) -> None:
    """On PostgreSQL these go straight to asyncpg (bot/adapters/db/direct.py): JSON, UTC datetimes from any
    offset, NULLs and the refusal of naive datetimes must come out as through SQLAlchemy."""
    ist = timezone(timedelta(hours=5, minutes=30))
    opened = datetime(2026, 11, 30, 8, 55, 0, 654321, tzinfo=ist)
    data = {"cause": "upstream_down", "hosts": ["web-1", "app-1"], "confidence": 0.93, "none": None, "ü": "✓"}
    async with store.transaction() as tx:
        await tx.lock_group("shop:5xx")  # the transaction has begun
        await tx.save_incident(incident(1, opened_at=opened, url=None))
        await tx.add_event(TimelineEvent(incident_id="1", at=opened, kind="note", text="x", data=data))
        await tx.enqueue_message(OutboxMessage.model_validate(
            {"id": "m1", "incident_id": "1", "kind": "post", "created_at": opened, "payload": data}
        ))  # fmt: skip
    got = await store.get_incident("1")
    assert got is not None and got.opened_at == opened and got.opened_at.utcoffset() == timedelta(0)
    assert got.url is None
    [event] = await store.timeline("1")
    assert event.data == data and event.at == opened
    [message] = await store.pending_messages()
    assert message.payload == data
    with pytest.raises(Exception, match="naive datetime"):
        async with store.transaction() as tx:
            await tx.lock_group("shop:5xx")
            await tx.add_event(TimelineEvent(incident_id="1", at=datetime(2026, 11, 30), kind="note", text="naive"))
    assert len(await store.timeline("1")) == 1
