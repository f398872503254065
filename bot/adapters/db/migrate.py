"""Alembic migrations, run from code or from the ``alembic`` command line.

From code (``serve``, ``incident-bot db upgrade``, tests): ``await upgrade(url_or_engine)``. It runs
Alembic on a connection of our own engine inside the running event loop (Alembic's synchronous API on
SQLAlchemy's greenlet bridge, ``conn.run_sync``), never ``asyncio.run`` inside a running loop.
Synchronous callers use :func:`upgrade_blocking`. From a shell::

    DATABASE_URL=sqlite:///incident-bot.db alembic -c bot/adapters/db/alembic.ini upgrade head
    alembic -c bot/adapters/db/alembic.ini -x url=postgresql://… upgrade head

Either way a migration runs in one transaction that holds the database against other migrators:
``BEGIN IMMEDIATE`` on SQLite, a transaction-scoped advisory lock on PostgreSQL (two replicas starting
at once migrate one after the other; the second finds nothing to do).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select
from sqlalchemy.engine import URL, Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from bot.adapters.db.engine import SQLITE_BEGIN, create_engine

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK = int.from_bytes(hashlib.sha256(b"incident-bot:migrations").digest()[:8], "big", signed=True)


def alembic_config() -> Config:
    """An Alembic config pointing at our migrations, with no ini file needed."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


async def run_locked(target: str | URL | AsyncEngine, work: Callable[[Connection], None]) -> None:
    """Run ``work`` on a synchronous view of one connection, in one transaction holding the migration lock."""
    engine = target if isinstance(target, AsyncEngine) else create_engine(target, poolclass=NullPool)
    try:
        async with engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}).begin() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            await conn.run_sync(work)
    finally:
        if engine is not target:
            await engine.dispose()


async def upgrade(target: str | URL | AsyncEngine, revision: str = "head") -> None:
    """Bring the database at ``target`` (a URL, or an engine we leave open) up to ``revision``."""

    def work(connection: Connection) -> None:
        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    await run_locked(target, work)


def upgrade_blocking(target: str | URL, revision: str = "head") -> None:
    """:func:`upgrade` for synchronous callers; from inside a running loop it runs in a worker thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(upgrade(target, revision))
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(lambda: asyncio.run(upgrade(target, revision))).result()
