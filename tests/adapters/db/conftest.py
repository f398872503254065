"""Backends for the store tests: the in-memory reference, SQLite in a temp file, and PostgreSQL 15 in a
throwaway cluster this test session starts (``initdb`` into a temp dir, as ``postgres`` when root,
port on 127.0.0.1) and always stops and removes at the end, even when a test fails.

``backend`` is parametrised over all three; a test that needs a real database (several engines,
migrations) narrows it with ``@pytest.mark.parametrize("backend", SQL, indirect=True)``. Each
PostgreSQL test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.core.store import Store
from bot.testing import MemoryStore
from tests.conftest import Cluster

SQL = ["sqlite", "postgresql"]
ALL = ["memory", *SQL]


@pytest.fixture(params=ALL)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """An empty database of the backend under test (None for the in-memory store)."""
    if backend == "memory":
        yield None
        return
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    assert backend == "postgresql", f"{backend} has no database URL"
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    name = f"t_{uuid.uuid4().hex[:12]}"
    with cluster.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield cluster.url(name)
    finally:
        with cluster.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


EngineFactory = Callable[[], Awaitable[AsyncEngine]]


@pytest.fixture
async def engines(db_url: str | None) -> AsyncIterator[EngineFactory]:
    """Opens engines on the migrated test database (one per "replica"); disposes of them all afterwards."""
    opened: list[AsyncEngine] = []
    migrated = False

    async def open_engine() -> AsyncEngine:
        nonlocal migrated
        assert db_url is not None, "the in-memory backend has no engine"
        if not migrated:
            await upgrade(db_url)
            migrated = True
        engine = create_engine(db_url)
        opened.append(engine)
        return engine

    try:
        yield open_engine
    finally:
        for engine in opened:
            await engine.dispose()


@pytest.fixture
async def store(backend: str, engines: EngineFactory) -> Store:
    """The store under test: MemoryStore (the reference behaviour) or SqlStore on a migrated database."""
    if backend == "memory":
        return MemoryStore()
    return SqlStore(await engines())
