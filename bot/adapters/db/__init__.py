"""The SQL store (DESIGN §8): SQLAlchemy 2 async on SQLite (embedded default) or PostgreSQL (replicas).

``create_engine(url)`` builds an engine set up for the store, ``upgrade(url_or_engine)`` applies the
Alembic migrations, ``SqlStore(engine)`` implements :class:`bot.core.store.Store`.
"""

from __future__ import annotations

from bot.adapters.db.engine import create_engine
from bot.adapters.db.migrate import upgrade, upgrade_blocking
from bot.adapters.db.store import SqlStore

__all__ = ["SqlStore", "create_engine", "upgrade", "upgrade_blocking"]
