"""``Writer``: where the store's write transactions begin.

PostgreSQL: straight from the engine's pool; rows are locked where needed (``lock_group``, ``FOR UPDATE
SKIP LOCKED``), so writers of different groups run side by side.

SQLite has one write lock for the whole database. Every write transaction begins with ``BEGIN
IMMEDIATE`` (it takes that lock up front, so no transaction fails half-way with "database is locked"),
and inside this process the writers first queue on one ``asyncio.Lock``, which hands the turn over in
arrival order: SQLite's own busy handler, which writers of several pooled connections would otherwise
meet, retries in sleeps of up to 100 ms in no order, so one unlucky request could wait seconds while later
ones went ahead. Other processes on the same file still meet SQLite's lock (its ``busy_timeout``). A
writer that waits longer than ``wait`` seconds for its turn gets :class:`WriterBusy`, as it would get
"database is locked" from SQLite after its busy timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.adapters.db.engine import SQLITE_BEGIN


class WriterBusy(TimeoutError):
    """Another write transaction of this process held the SQLite database for longer than we wait."""


class Writer:
    def __init__(self, engine: AsyncEngine, *, wait: float = 15.0) -> None:
        self.sqlite = engine.dialect.name == "sqlite"
        self.engine = engine.execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}) if self.sqlite else engine
        self.wait = wait
        self._turn = asyncio.Lock() if self.sqlite else None

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a write transaction, committed when the block ends, rolled back if it raises."""
        if self._turn is None:
            async with self.engine.begin() as conn:
                yield conn
            return
        try:
            async with asyncio.timeout(self.wait):
                await self._turn.acquire()
        except TimeoutError:
            raise WriterBusy(f"waited {self.wait:g} s for the SQLite database's write lock") from None
        try:
            async with self.engine.begin() as conn:
                yield conn
        finally:
            self._turn.release()
