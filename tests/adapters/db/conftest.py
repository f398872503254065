"""Backends for the store tests: the in-memory reference, SQLite in a temp file, and PostgreSQL 15 in a
throwaway cluster this test session starts (``initdb`` into a temp dir, as ``postgres`` when root,
port on 127.0.0.1) and always stops and removes at the end, even when a test fails.

``backend`` is parametrised over all three; a test that needs a real database (several engines,
migrations) narrows it with ``@pytest.mark.parametrize("backend", SQL, indirect=True)``. Each
PostgreSQL test gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.core.store import Store
from bot.lab import postgres
from bot.lab.errors import LabError
from bot.lab.paths import LabPaths
from bot.lab.process import free_port
from bot.testing import MemoryStore

SQL = ["sqlite", "postgresql"]
ALL = ["memory", *SQL]


@dataclass(frozen=True)
class Cluster:
    port: int

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(postgres.conninfo(self.port), autocommit=True)

    def url(self, database: str) -> str:
        return f"postgresql+asyncpg://{postgres.superuser()}@127.0.0.1:{self.port}/{database}"


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Cluster]:
    try:
        postgres.bin_dir()
    except LabError as exc:
        pytest.fail(f"PostgreSQL server binaries are needed for the store tests: {exc}")
    root = Path(tempfile.mkdtemp(prefix="incident-bot-dbtest-"))
    root.chmod(0o755)  # the server runs as ``postgres`` and must reach its data dir below
    paths = LabPaths(root)
    paths.logs.mkdir()
    port = free_port()
    try:
        postgres.init(paths, port)
        with (paths.pg_data / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("max_connections = 60\n")  # the lab keeps 12; concurrency tests open more
        postgres.start(paths)
        yield Cluster(port)
    finally:
        postgres.stop(paths)
        shutil.rmtree(root, ignore_errors=True)


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
