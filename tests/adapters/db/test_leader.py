"""Leader election for Socket Mode and Telegram polling: on PostgreSQL one replica of three leads; when
it lets go (or its connection dies with it) another takes over; on SQLite the one process leads."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text

from bot.adapters.db.leader import Leadership
from tests.adapters.db.conftest import EngineFactory


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_one_replica_of_three_leads_and_another_takes_over_when_it_stops(engines: EngineFactory) -> None:
    replicas = [Leadership(await engines(), "socket-mode", retry=0.05) for _ in range(3)]
    got = [await r.try_acquire() for r in replicas]
    assert got == [True, False, False]
    assert await replicas[0].try_acquire()  # asking again while leading keeps the lead
    other = Leadership(await engines(), "telegram-polling")
    assert await other.try_acquire()  # another name is another election
    await replicas[0].release()
    stop = asyncio.Event()
    waiting = [asyncio.create_task(r.wait(stop)) for r in replicas[1:]]
    done, pending = await asyncio.wait(waiting, timeout=5, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1 and next(iter(done)).result() is True
    stop.set()
    assert [await task for task in pending] == [False]  # stopped while waiting: never leads
    assert sum(r.held for r in replicas) == 1
    for r in [*replicas, other]:
        await r.release()


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_leader_whose_connection_dies_loses_the_lead_to_the_next_replica(engines: EngineFactory) -> None:
    first, second = Leadership(await engines(), "x", retry=0.05), Leadership(await engines(), "x", retry=0.05)
    assert await first.try_acquire() and not await second.try_acquire()
    assert first._conn is not None
    pid = await first._conn.scalar(text("SELECT pg_backend_pid()"))
    killer = await engines()
    async with killer.connect() as conn:  # the leader's process dies: the server drops its session
        await conn.scalar(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    assert await asyncio.wait_for(second.wait(asyncio.Event()), 5)
    await first._conn.invalidate()
    await first._conn.close()
    await second.release()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_on_sqlite_the_single_process_leads(engines: EngineFactory) -> None:
    leader = Leadership(await engines(), "socket-mode")
    assert await leader.try_acquire() and leader.held
    await leader.release()
    assert not leader.held
