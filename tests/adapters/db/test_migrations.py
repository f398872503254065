"""Alembic migrations on SQLite and PostgreSQL: from code and from the ``alembic`` command line,
idempotent, on a database that already holds other tables, concurrently, and matching tables.py."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection

from bot.adapters.db import SqlStore, create_engine, upgrade, upgrade_blocking
from bot.adapters.db.tables import metadata
from bot.core.incidents import Incident
from tests.adapters.db.conftest import SQL

pytestmark = pytest.mark.parametrize("backend", SQL, indirect=True)

ROOT = Path(__file__).resolve().parents[3]
TABLES = {
    "incidents", "alerts", "events", "jobs", "outbox", "groups", "counters", "audit", "diagnoses",
    "pagings", "escalation_timers", "oncall_overrides",
}  # fmt: skip


async def revision(url: str) -> str | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())
    finally:
        await engine.dispose()


async def test_upgrade_is_idempotent_and_keeps_the_data(db_url: str) -> None:
    await upgrade(db_url)
    engine = create_engine(db_url)
    try:
        store = SqlStore(engine)
        opened = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
        async with store.transaction() as tx:
            await tx.save_incident(Incident(id="1", key="k", service=None, routed=False, status=502, opened_at=opened))
        await upgrade(engine)  # an engine we keep using afterwards
        await upgrade(db_url)
        assert [i.id for i in await store.list_incidents()] == ["1"]
    finally:
        await engine.dispose()
    assert await revision(db_url) == "0006"


async def test_upgrade_runs_on_a_database_that_already_holds_other_tables(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE legacy (id INTEGER PRIMARY KEY, note TEXT)"))
            await conn.execute(text("INSERT INTO legacy VALUES (1, 'kept')"))
        await upgrade(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT note FROM legacy"))).scalar_one() == "kept"
            names = await conn.run_sync(lambda c: set(c.dialect.get_table_names(c)))
        assert names >= TABLES | {"legacy", "alembic_version"}
    finally:
        await engine.dispose()


async def test_the_migrations_build_exactly_the_tables_the_store_uses(db_url: str) -> None:
    await upgrade(db_url)

    def differences(conn: Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    engine = create_engine(db_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(differences) == []
    finally:
        await engine.dispose()


async def test_replicas_starting_at_once_migrate_one_after_the_other(db_url: str) -> None:
    await asyncio.gather(*(upgrade(db_url) for _ in range(3)))
    assert await revision(db_url) == "0006"


async def test_upgrade_blocking_runs_from_inside_a_running_loop(db_url: str) -> None:
    """Synchronous callers get a worker thread with its own loop instead of asyncio.run in ours."""
    upgrade_blocking(db_url)
    assert await revision(db_url) == "0006"


async def test_the_alembic_command_line_upgrades_the_database(db_url: str) -> None:
    env = {**os.environ, "DATABASE_URL": db_url}
    ini = str(ROOT / "bot" / "adapters" / "db" / "alembic.ini")
    for argv in (["upgrade", "head"], ["-x", f"url={db_url}", "upgrade", "head"]):
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", ini, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
            timeout=60, check=False,
        )
        assert done.returncode == 0, done.stderr
    assert await revision(db_url) == "0006"
