"""deploy/config/incident-bot.yaml is a configuration the bot accepts, and it needs both tokens to serve."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import load_settings
from bot.errors import ConfigError
from bot.serve import check_exposure

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "config" / "incident-bot.yaml"
TOKENS = {"INCIDENT_BOT_WEBHOOK_TOKEN": "deploy-hook-0f3c9a7e5b1d", "INCIDENT_BOT_API_TOKEN": "deploy-api-8e2b6d4f0a9c"}


def test_the_deployment_configuration_loads() -> None:
    """The file validates as Settings; its service routes to hosts it defines; SSH paths are the mounted ones."""
    settings = load_settings(str(CONFIG), env={})
    assert settings.listen == "0.0.0.0:8080"
    assert settings.services["shop"].hosts == ["web-1", "app-1", "db-1"]
    assert settings.ssh.identity == "/etc/incident-bot/ssh/id_ed25519"
    assert settings.ssh.known_hosts == "/etc/incident-bot/ssh/known_hosts"


def test_serving_it_needs_both_tokens() -> None:
    """On 0.0.0.0 `serve` refuses without the tokens and accepts with them; DATABASE_URL wins over the file."""
    with pytest.raises(ConfigError):
        check_exposure(load_settings(str(CONFIG), env={}))
    url = "postgresql+asyncpg://incident_bot:pw@postgres:5432/incident_bot"
    settings = load_settings(str(CONFIG), env={**TOKENS, "DATABASE_URL": url})
    check_exposure(settings)
    assert settings.database_url == url


def test_empty_variables_of_the_environment_example_count_as_unset() -> None:
    """An env file copied from the example with a value left empty does not override the file's database."""
    settings = load_settings(str(CONFIG), env={"DATABASE_URL": "", **TOKENS})
    assert settings.database_url.startswith("sqlite+aiosqlite:////var/lib/incident-bot/")
