"""Engines for the store: SQLite through aiosqlite, PostgreSQL through asyncpg.

SQLite gets WAL, a busy timeout and foreign keys on every connection, and takes transaction control
away from the ``sqlite3`` module (which would not BEGIN before a SELECT): SQLAlchemy's ``begin``
emits ``BEGIN``, or ``BEGIN IMMEDIATE`` on connections with the ``sqlite_begin="IMMEDIATE"``
execution option, which every write transaction of the store uses so that writers serialise on the
database lock instead of failing half-way with "database is locked".

PostgreSQL connections are not pinged when taken from the pool (``pool_pre_ping`` would cost three round
trips, BEGIN, a ping and ROLLBACK, per transaction, more than an alert's own statements). Instead a
connection the server has closed (a restart, ``pg_terminate_backend``, an idle timeout) is discarded at
checkout for free: asyncpg saw the socket close while it sat in the pool. One that dies unseen (a
network partition, or a close that arrives during checkout) fails its transaction; SQLAlchemy then
discards every connection pooled before the failure, and the incident service tries the failed alerts
once more on a new connection. Pass ``pool_pre_ping=True`` to get pings back.

The PostgreSQL pool is :data:`PG_POOL_SIZE` connections with no overflow: overflow connections are
closed whenever they are given back to a full pool, so under a storm of more concurrent requests than
the pool holds, each transaction paid for a new connection (a TCP and authentication handshake here, a
backend process forked there). Beyond the pool, transactions wait their turn for a connection instead.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.errors import ConfigError

#: Execution option naming how SQLite transactions begin (``DEFERRED`` unless set).
SQLITE_BEGIN = "sqlite_begin"

DRIVERS = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}

#: PostgreSQL connections a process keeps (and never more: a transaction beyond them waits for one).
PG_POOL_SIZE = 16


def database_url(url: str | URL) -> URL:
    """``url`` with the async driver we use named (``sqlite:///x.db`` → ``sqlite+aiosqlite:///x.db``)."""
    try:
        parsed = make_url(url)
    except Exception as exc:  # sqlalchemy raises ArgumentError, ValueError… for malformed URLs
        raise ConfigError("database_url", "not a database URL") from exc
    backend = parsed.get_backend_name()
    if backend not in DRIVERS:
        raise ConfigError("database_url", f"unsupported database {backend!r}: use sqlite or postgresql")
    if parsed.drivername != DRIVERS[backend]:
        parsed = parsed.set(drivername=DRIVERS[backend])
    return parsed


def create_engine(url: str | URL, *, busy_timeout: float = 15.0, **kwargs: Any) -> AsyncEngine:
    """An async engine for the store; ``busy_timeout`` (seconds) is how long SQLite waits for its lock."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_async_engine(parsed, **kwargs)
        _setup_sqlite(engine, int(busy_timeout * 1000))
        return engine
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", PG_POOL_SIZE)
        kwargs.setdefault("max_overflow", 0)
    engine = create_async_engine(parsed, **kwargs)
    event.listen(engine.sync_engine, "checkout", _discard_closed)
    return engine


def _discard_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled connection whose socket the server closed is replaced (the pool retries the checkout)."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the server closed this pooled connection")


def _setup_sqlite(engine: AsyncEngine, busy_timeout_ms: int) -> None:
    memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we say BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN, "DEFERRED")
        if mode not in ("DEFERRED", "IMMEDIATE", "EXCLUSIVE"):
            raise ValueError(f"{SQLITE_BEGIN} must be DEFERRED, IMMEDIATE or EXCLUSIVE, not {mode!r}")
        connection.exec_driver_sql(f"BEGIN {mode}")
