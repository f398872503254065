"""The paging part of the Store port on every backend (memory, SQLite, PostgreSQL): pagings, storm
leaders and followers, escalation timers (scheduled once, claimed when due under a lease, fired only by
their holder, cancelled), transactions that fail leaving nothing behind, and on-call overrides."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.adapters.db import SqlStore
from bot.core.incidents import EscalationTimer, Incident, Paging
from bot.core.oncall import Override
from bot.core.store import Store
from tests.adapters.db.conftest import SQL, EngineFactory

T0 = datetime(2026, 3, 29, 0, 30, 0, 250000, tzinfo=UTC)
LEASE = timedelta(seconds=60)


def incident(number: int, service: str = "shop") -> Incident:
    return Incident(id=str(number), key=f"{service}{number}:5xx", service=service, routed=True, status=502,
                    opened_at=T0)  # fmt: skip


def paging(number: int, **changes: object) -> Paging:
    base = Paging(incident_id=str(number), service="shop", updated_at=T0)
    return base.model_copy(update=changes)


def timer(tid: str, number: int = 1, level: int = 1, due: float = 0) -> EscalationTimer:
    return EscalationTimer(
        id=tid, incident_id=str(number), level=level, due_at=T0 + timedelta(seconds=due), created_at=T0
    )


async def seed(store: Store, *numbers: int) -> None:
    async with store.transaction() as tx:
        for n in numbers:
            await tx.save_incident(incident(n))


async def test_a_paging_is_saved_replaced_and_read_inside_and_outside_transactions(store: Store) -> None:
    await seed(store, 1)
    first = paging(1, found={"cause": {"id": "upstream_down"}, "evidence": ["connect() failed (111"]})
    async with store.transaction() as tx:
        assert await tx.get_paging("1") is None
        await tx.save_paging(first)
        assert await tx.get_paging("1") == first
    paged = first.model_copy(update={"state": "paged", "level": 0, "paged_at": T0, "pagerduty": True, "round": 2})
    async with store.transaction() as tx:
        await tx.save_paging(paged)
    assert await store.get_paging("1") == paged
    assert (await store.get_paging("1") or paged).paged_at == T0  # an aware UTC datetime comes back
    assert await store.get_paging("2") is None


async def test_the_storm_leader_is_the_latest_page_of_the_service_in_the_window(store: Store) -> None:
    await seed(store, 1, 2, 3, 4, 5)
    async with store.transaction() as tx:
        await tx.save_paging(paging(1, state="paged", paged_at=T0 - timedelta(minutes=20)))  # too old
        await tx.save_paging(paging(2, state="acknowledged", paged_at=T0 - timedelta(minutes=5)))
        await tx.save_paging(paging(3, state="resolved", paged_at=T0 - timedelta(minutes=1)))  # over
        await tx.save_paging(paging(4, state="folded", storm_of="2", paged_at=None))
        await tx.save_paging(paging(5, service="blog", state="paged", paged_at=T0))  # another service
        leader = await tx.storm_leader("shop", T0 - timedelta(minutes=10))
        assert leader is not None and leader.incident_id == "2"
        assert await tx.storm_leader("shop", T0 - timedelta(minutes=2)) is None
        assert [p.incident_id for p in await tx.storm_followers("2")] == ["4"]
        assert list(await tx.storm_followers("1")) == []


async def test_followers_come_in_the_order_they_were_folded(store: Store) -> None:
    await seed(store, 1, 2, 3, 4)
    async with store.transaction() as tx:
        await tx.save_paging(paging(1, state="paged", paged_at=T0))
        await tx.save_paging(paging(3, state="folded", storm_of="1", updated_at=T0 + timedelta(seconds=2)))
        await tx.save_paging(paging(2, state="folded", storm_of="1", updated_at=T0 + timedelta(seconds=1)))
        await tx.save_paging(paging(4, state="resolved", storm_of="1", updated_at=T0))
    async with store.transaction() as tx:
        assert [p.incident_id for p in await tx.storm_followers("1")] == ["2", "3"]


async def test_a_timer_is_claimed_only_when_due_and_by_one_worker_at_a_time(store: Store) -> None:
    await seed(store, 1)
    async with store.transaction() as tx:
        await tx.schedule_timer(timer("late", due=120))
        await tx.schedule_timer(timer("soon", due=60))
        await tx.schedule_timer(timer("soon", due=999))  # the same id again changes nothing
    assert [t.id for t in await store.pending_timers()] == ["soon", "late"]
    assert await store.claim_timer("w1", LEASE, T0 + timedelta(seconds=59)) is None
    claimed = await store.claim_timer("w1", LEASE, T0 + timedelta(seconds=61))
    assert claimed is not None and (claimed.id, claimed.attempts, claimed.worker) == ("soon", 1, "w1")
    assert claimed.due_at == T0 + timedelta(seconds=60)
    assert await store.claim_timer("w2", LEASE, T0 + timedelta(seconds=62)) is None  # leased to w1
    assert [t.id for t in await store.pending_timers("1")] == ["soon", "late"]  # claimed is still pending


async def test_only_the_holder_fires_a_timer_and_only_once(store: Store) -> None:
    await seed(store, 1)
    async with store.transaction() as tx:
        await tx.schedule_timer(timer("t"))
    held = await store.claim_timer("w1", LEASE, T0)
    assert held is not None
    async with store.transaction() as tx:
        assert not await tx.fire_timer("t", "w2", T0)
        assert await tx.fire_timer("t", "w1", T0)
    async with store.transaction() as tx:
        assert not await tx.fire_timer("t", "w1", T0)
    assert await store.pending_timers() == []
    assert await store.claim_timer("w2", LEASE, T0 + timedelta(hours=1)) is None


async def test_an_expired_lease_lets_another_worker_take_the_timer_and_the_first_loses_it(store: Store) -> None:
    await seed(store, 1)
    async with store.transaction() as tx:
        await tx.schedule_timer(timer("t"))
    assert await store.claim_timer("dead", LEASE, T0) is not None
    assert await store.claim_timer("w2", LEASE, T0 + LEASE - timedelta(seconds=1)) is None
    again = await store.claim_timer("w2", LEASE, T0 + LEASE)
    assert again is not None and again.attempts == 2 and again.worker == "w2"
    async with store.transaction() as tx:
        assert not await tx.fire_timer("t", "dead", T0 + LEASE)
        assert await tx.fire_timer("t", "w2", T0 + LEASE)


async def test_cancelling_stops_pending_and_claimed_timers_of_the_incident_only(store: Store) -> None:
    await seed(store, 1, 2)
    async with store.transaction() as tx:
        for t in (timer("a", 1, due=0), timer("b", 1, level=2, due=600), timer("c", 2, due=0)):
            await tx.schedule_timer(t)
    held = await store.claim_timer("w1", LEASE, T0)
    assert held is not None and held.id == "a"
    async with store.transaction() as tx:
        assert await tx.cancel_timers("1", T0) == 2
        assert await tx.cancel_timers("1", T0) == 0
    async with store.transaction() as tx:
        assert not await tx.fire_timer("a", "w1", T0)  # cancelled under the worker's feet
    assert [t.id for t in await store.pending_timers()] == ["c"]
    claimed = await store.claim_timer("w1", LEASE, T0 + timedelta(hours=1))
    assert claimed is not None and claimed.id == "c"


async def test_a_failed_transaction_leaves_pagings_and_timers_as_they_were(store: Store) -> None:
    await seed(store, 1)
    async with store.transaction() as tx:
        await tx.schedule_timer(timer("kept"))
    assert await store.claim_timer("w1", LEASE, T0) is not None
    with pytest.raises(RuntimeError):
        async with store.transaction() as tx:
            await tx.save_paging(paging(1, state="paged"))
            await tx.schedule_timer(timer("lost", due=5))
            assert await tx.fire_timer("kept", "w1", T0)
            raise RuntimeError("boom")
    assert await store.get_paging("1") is None
    assert [t.id for t in await store.pending_timers()] == ["kept"]
    async with store.transaction() as tx:
        assert await tx.fire_timer("kept", "w1", T0)


async def test_a_timer_cancelled_and_scheduled_again_in_one_transaction_is_postponed(store: Store) -> None:
    await seed(store, 1)
    async with store.transaction() as tx:
        await tx.schedule_timer(timer("first", due=0))
    async with store.transaction() as tx:
        assert await tx.cancel_timers("1", T0) == 1
        await tx.schedule_timer(timer("later", due=300))
    assert [t.id for t in await store.pending_timers("1")] == ["later"]
    assert await store.claim_timer("w", LEASE, T0 + timedelta(seconds=299)) is None


async def test_overrides_are_kept_and_listed_until_they_end(store: Store) -> None:
    def override(oid: str, person: str, start: float, end: float, created: float) -> Override:
        return Override(
            id=oid, schedule="primary", person=person, starts_at=T0 + timedelta(hours=start),
            ends_at=T0 + timedelta(hours=end), created_at=T0 + timedelta(minutes=created), created_by="ana (slack)",
        )  # fmt: skip

    past, now, future = override("a", "bob", -3, -1, 0), override("b", "ana", -1, 1, 2), override("c", "cy", 2, 4, 1)
    for item in (past, now, future):
        await store.add_override(item)
    assert list(await store.overrides(T0)) == [future, now]  # oldest created first; ended ones left out
    assert list(await store.overrides(T0 + timedelta(hours=1))) == [future]


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_replicas_claiming_at_once_never_take_the_same_timer(engines: EngineFactory) -> None:
    stores = [SqlStore(await engines()) for _ in range(3)]
    await seed(stores[0], 1)
    async with stores[0].transaction() as tx:
        for n in range(6):
            await tx.schedule_timer(timer(f"t{n}", due=n))

    async def claim_all(store: Store, worker: str) -> list[str]:
        got: list[str] = []
        while (claimed := await store.claim_timer(worker, LEASE, T0 + timedelta(minutes=1))) is not None:
            got.append(claimed.id)
        return got

    results = await asyncio.gather(*(claim_all(s, f"w{n}") for n, s in enumerate(stores)))
    taken = [tid for got in results for tid in got]
    assert sorted(taken) == [f"t{n}" for n in range(6)]
