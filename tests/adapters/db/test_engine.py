"""The PostgreSQL engine's pool (bot/adapters/db/engine.py): no ping per checkout, yet a connection the
server closed is not handed out; and a storm never opens more connections than the pool keeps."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from sqlalchemy import func, select

from bot.adapters.db import SqlStore
from bot.adapters.db.engine import PG_POOL_SIZE
from tests.adapters.db.conftest import EngineFactory

pytestmark = pytest.mark.parametrize("backend", ["postgresql"], indirect=True)


async def test_a_pooled_connection_the_server_closed_is_replaced_at_checkout_without_an_error(
    engines: EngineFactory, db_url: str
) -> None:
    store = SqlStore(await engines())
    await asyncio.gather(*(store.list_incidents() for _ in range(4)))  # a few connections now sit in the pool
    with psycopg.connect(db_url.replace("+asyncpg", ""), autocommit=True) as admin:
        killed = admin.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> "
            "pg_backend_pid()",
            (db_url.rsplit("/", 1)[1],),
        ).fetchone()
    assert killed is not None and killed[0] >= 1
    await asyncio.sleep(0.2)  # any idle moment: the event loop reads the server's goodbye
    for _ in range(4):
        assert await store.list_incidents() == []


async def test_a_storm_of_transactions_shares_the_pool_and_opens_no_extra_connection(engines: EngineFactory) -> None:
    """Two waves of three times as many concurrent transactions as the pool keeps: they wait for a pooled
    connection instead of opening (and closing) one each."""
    store = SqlStore(await engines())
    backends: set[int] = set()

    async def one(n: int) -> None:
        async with store.transaction() as tx:
            await tx.lock_group(f"service-{n}:5xx")
            backends.add(int((await tx.conn.execute(select(func.pg_backend_pid()))).scalar_one()))
            await asyncio.sleep(0.01)

    for _wave in range(2):  # an overflowing pool closes connections between waves and opens new ones in the next
        await asyncio.gather(*(one(n) for n in range(3 * PG_POOL_SIZE)))
    assert 1 < len(backends) <= PG_POOL_SIZE
