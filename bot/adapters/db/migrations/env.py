"""Alembic environment for the store.

Called by :func:`bot.adapters.db.migrate.upgrade` with a connection in ``config.attributes`` (the
cookbook recipe "programmatic API use with asyncio"), or by the ``alembic`` command line, which has
no event loop running, so here (and only here) ``asyncio.run`` is safe.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from bot.adapters.db.engine import database_url
from bot.adapters.db.migrate import run_locked
from bot.adapters.db.tables import metadata

config = context.config


def _configure_and_run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def _url() -> str:
    url = (
        context.get_x_argument(as_dictionary=True).get("url")
        or os.environ.get("DATABASE_URL")
        or config.get_main_option("sqlalchemy.url")
    )
    if not url:
        raise SystemExit("no database URL: pass -x url=… or set DATABASE_URL")
    return url


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure_and_run(connection)
        return
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        context.configure(
            url=database_url(_url()).render_as_string(hide_password=False),
            target_metadata=metadata,
            literal_binds=True,
            render_as_batch=True,
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(run_locked(_url(), _configure_and_run))


run()
