"""``incident-bot serve``: the HTTP API on the store, owned by one async lifespan.

Built from the settings once: the SQL store (the embedded SQLite database is migrated on start; a
PostgreSQL one needs ``incident-bot db upgrade``), the incident service with routing, and the FastAPI
app run by uvicorn. Refuses to listen on a non-loopback address while a token is unset (DESIGN §4.4).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime

import uvicorn

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.adapters.http import build_api
from bot.config import Settings
from bot.errors import ConfigError
from bot.services.incidents import IncidentService
from bot.services.routing import group_key, route


def listen_address(settings: Settings) -> tuple[str, int]:
    host, _, port = settings.listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError("listen", f"{settings.listen!r} is not HOST:PORT")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(settings: Settings) -> None:
    """A public listener needs both tokens: alerts and the API must never be open to anyone."""
    host, _ = listen_address(settings)
    if is_loopback(host):
        return
    missing = [
        name
        for name, value in (
            ("INCIDENT_BOT_WEBHOOK_TOKEN", settings.secrets.webhook_token),
            ("INCIDENT_BOT_API_TOKEN", settings.secrets.api_token),
        )
        if value is None
    ]
    if missing:
        raise ConfigError("listen", f"{host} is not a loopback address and {' and '.join(missing)} is unset")


async def serve(settings: Settings) -> None:
    check_exposure(settings)
    host, port = listen_address(settings)
    engine = create_engine(settings.database_url)
    try:
        if engine.dialect.name == "sqlite":
            await upgrade(engine)
        store = SqlStore(engine)
        service = IncidentService(
            store,
            route=lambda alert: route(alert, settings),
            group=group_key,
            clock=lambda: datetime.now(UTC),
        )
        secrets = settings.secrets
        api = build_api(
            service,
            store,
            webhook_token=secrets.webhook_token.get_secret_value() if secrets.webhook_token else None,
            api_token=secrets.api_token.get_secret_value() if secrets.api_token else None,
        )
        config = uvicorn.Config(api, host=host, port=port, log_level="info", access_log=False, lifespan="off")
        await uvicorn.Server(config).serve()
    finally:
        await engine.dispose()
