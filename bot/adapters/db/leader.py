"""One leader among replicas, for what only one process may do: hold Slack's Socket Mode connection,
long-poll Telegram (DESIGN §8).

On PostgreSQL the leader holds a session-level advisory lock on a connection of its own for as long
as it leads; when that process dies its connection closes, the lock drops, and the next replica that
tries takes over. On SQLite there is only ever one process (the embedded store is single-instance),
so it leads at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.adapters.db.store import advisory_key

log = logging.getLogger(__name__)


class Leadership:
    def __init__(self, engine: AsyncEngine, name: str, *, retry: float = 5.0) -> None:
        self.engine = engine
        self.name = name
        self.key = advisory_key(f"incident-bot:leader:{name}")
        self.retry = retry
        self._conn: AsyncConnection | None = None
        self._leading = False

    @property
    def held(self) -> bool:
        return self._leading

    async def try_acquire(self) -> bool:
        """Take the lead if nobody holds it; True when this process leads (now or already)."""
        if self._leading:
            return True
        if self.engine.dialect.name != "postgresql":
            self._leading = True
            return True
        conn = await self.engine.connect()
        try:
            got = bool(await conn.scalar(select(func.pg_try_advisory_lock(self.key))))
            await conn.commit()  # the session lock outlives the transaction; the connection stays open
        except BaseException:
            await conn.close()
            raise
        if not got:
            await conn.close()
            return False
        self._conn, self._leading = conn, True
        log.info("leading %s", self.name)
        return True

    async def wait(self, stop: asyncio.Event) -> bool:
        """Try every ``retry`` seconds until this process leads (True) or ``stop`` is set (False)."""
        while not stop.is_set():
            try:
                if await self.try_acquire():
                    return True
            except Exception:
                log.exception("leader election for %s failed; trying again", self.name)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.retry)
        return False

    async def release(self) -> None:
        self._leading = False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.scalar(select(func.pg_advisory_unlock(self.key)))
        finally:
            await conn.close()
