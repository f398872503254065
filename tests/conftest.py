"""Fixtures shared across the test tree (request them by name, or with ``pytest.mark.usefixtures``)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from bot.lab import postgres
from bot.lab.errors import LabError
from bot.lab.paths import LabPaths
from bot.lab.process import free_port


@pytest.fixture
def audit_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audit log (under ``$XDG_STATE_HOME``) goes to this test's own temporary directory."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))


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


@pytest.fixture
def pg_database_url(request: pytest.FixtureRequest) -> Iterator[Callable[[], str]]:
    """Makes empty databases on the session's throwaway PostgreSQL; each is dropped at the end of the test."""
    cluster: Cluster = request.getfixturevalue("pg_cluster")
    made: list[str] = []

    def make() -> str:
        name = f"t_{uuid.uuid4().hex[:12]}"
        with cluster.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return cluster.url(name)

    yield make
    for name in made:
        with cluster.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
