"""SQLite's single write lock, within one process: writers take turns in the order they arrived
(bot/adapters/db/writer.py), and one that waits too long is told so instead of hanging."""

from __future__ import annotations

import asyncio

import pytest

from bot.adapters.db import SqlStore
from bot.adapters.db.writer import WriterBusy
from bot.core.incidents import Incident
from bot.core.store import Store
from tests.adapters.db.conftest import EngineFactory
from tests.adapters.db.test_pending import T0

pytestmark = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


async def test_writers_of_one_process_enter_in_the_order_they_arrived(store: Store) -> None:
    entered: list[int] = []
    release = asyncio.Event()

    async def first() -> None:
        async with store.transaction() as tx:
            await tx.lock_group("shop:5xx")
            entered.append(0)
            await release.wait()

    async def writer(n: int) -> None:
        async with store.transaction() as tx:
            entered.append(n)
            await tx.save_incident(
                Incident(id=str(n), key=f"k{n}", service=None, routed=False, status=502, title="t", opened_at=T0)
            )

    holder = asyncio.create_task(first())
    while not entered:
        await asyncio.sleep(0.01)
    waiting = []
    for n in range(1, 9):  # arrive one after the other, each queued before the next one starts
        waiting.append(asyncio.create_task(writer(n)))
        await asyncio.sleep(0.01)
    release.set()
    await asyncio.gather(holder, *waiting)
    assert entered == list(range(9))
    assert len(await store.list_incidents()) == 8


async def test_a_writer_that_waits_longer_than_its_limit_gets_writer_busy(engines: EngineFactory) -> None:
    store = SqlStore(await engines(), writer_wait=0.2)
    release = asyncio.Event()
    holding = asyncio.Event()

    async def hold() -> None:
        async with store.transaction():
            holding.set()
            await release.wait()

    holder = asyncio.create_task(hold())
    await holding.wait()
    with pytest.raises(WriterBusy, match=r"waited 0\.2 s"):
        async with store.transaction():
            pass
    release.set()
    await holder
    async with store.transaction() as tx:  # the turn is free again
        await tx.lock_group("shop:5xx")
