"""Settings: one YAML file plus the environment (DESIGN §4.5). Secrets are SecretStr.

The file is ``--config``, else ``$INCIDENT_BOT_CONFIG``, else ``./incident-bot.yaml`` if present, else
the built-in defaults. Environment variables win over the file for the values they name. Nothing here
runs at import time: the composition root calls :func:`load_settings` once.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from bot.errors import ConfigError

DEFAULT_FILE = "incident-bot.yaml"


class SshDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = None
    identity: str | None = None
    known_hosts: str = "~/.ssh/known_hosts"
    #: ``strict`` verifies every host key; ``accept-new`` trusts a first key and records it.
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    config: str | None = None
    use_agent: bool = False
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    command_timeout: float = Field(default=15.0, gt=0, le=600)
    deadline: float = Field(default=60.0, gt=0, le=3600)
    max_parallel_hosts: int = Field(default=64, ge=1, le=4096)


class HostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    address: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    identity: str | None = None
    known_hosts: str | None = None
    proxy_jump: str | None = None
    allow_sudo: bool = False
    roles: list[str] = Field(default_factory=list)
    facts: dict[str, str] = Field(default_factory=dict)

    @field_validator("facts", mode="before")
    @classmethod
    def _facts_as_text(cls, value: Any) -> Any:
        """Facts are text on the wire (ports and counts written as YAML numbers included)."""
        if isinstance(value, dict):
            return {k: v if isinstance(v, str) else str(v) for k, v in value.items() if v is not None}
        return value


class ServiceMatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    labels: dict[str, str] = Field(default_factory=dict)
    url_host: str | None = None


class ServiceChat(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slack_channel: str | None = None
    telegram_chat: str | None = None

    @field_validator("telegram_chat", mode="before")
    @classmethod
    def _chat_as_text(cls, value: Any) -> Any:
        """Telegram chat ids are negative numbers; YAML reads them as ints."""
        return str(value) if isinstance(value, int) else value


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: ServiceMatch = Field(default_factory=ServiceMatch)
    hosts: list[str] = Field(default_factory=list)
    url: str | None = None
    chat: ServiceChat = Field(default_factory=ServiceChat)


class GrafanaConfig(BaseModel):
    """Grafana webhook signing (checked only when ``INCIDENT_BOT_GRAFANA_HMAC_SECRET`` is set).

    Grafana's contact point "HMAC Signature" option signs the body with HMAC-SHA256 and sends the hex
    digest in a header, ``X-Grafana-Alerting-Signature`` unless configured otherwise; with a timestamp
    header configured it signs ``timestamp + ":" + body`` instead. Source: Grafana docs, "Configure
    webhook notifications", section "HMAC signature"
    (https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/).
    """

    model_config = ConfigDict(extra="forbid")

    hmac_header: str = Field(default="X-Grafana-Alerting-Signature", min_length=1)
    #: Grafana's optional "Timestamp Header"; when set here the signature covers ``timestamp:body``.
    timestamp_header: str | None = None
    #: How old a signed timestamp may be, in seconds (replay protection; only with ``timestamp_header``).
    max_age: float = Field(default=300.0, gt=0)


class AllowList(BaseModel):
    """Who may do something from chat: listed users, members of listed Slack user groups, or anyone
    writing in a listed channel (a Slack channel id, a Telegram chat id)."""

    model_config = ConfigDict(extra="forbid")

    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    channels: list[str] = Field(default_factory=list)

    @field_validator("users", "groups", "channels", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        """Telegram ids written as YAML numbers are ids all the same."""
        return [str(v) for v in value] if isinstance(value, list) else value

    @property
    def empty(self) -> bool:
        return not (self.users or self.groups or self.channels)


class ChatPermissions(BaseModel):
    """``respond``: acknowledge, resolve, escalate, re-run a diagnosis; unset, anyone in a channel
    the bot posts incidents to may. ``operate``: run ``diagnose`` and ``runbook`` from chat; unset,
    nobody may."""

    model_config = ConfigDict(extra="forbid")

    respond: AllowList | None = None
    operate: AllowList = Field(default_factory=AllowList)


class SlackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The channel of incidents whose service names none (``SLACK_CHANNEL`` wins).
    channel: str | None = None
    #: The Web API base URL (``SLACK_API_URL`` wins): GovSlack, a proxy, a test fake.
    api_url: str = "https://slack.com/api/"
    allow: ChatPermissions = Field(default_factory=ChatPermissions)


class TelegramConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The chat of incidents whose service names none (``TELEGRAM_CHAT_ID`` wins).
    chat: str | None = None
    #: The Bot API base URL (``TELEGRAM_API_URL`` wins): a local Bot API server, a test fake.
    api_url: str = "https://api.telegram.org/bot"
    #: The public HTTPS URL of ``/telegram/webhook``; unset, the bot long-polls instead.
    webhook_url: str | None = None
    #: Chats the bot answers in besides the incident chats; messages from any other chat are ignored.
    chats: list[str] = Field(default_factory=list)
    allow: ChatPermissions = Field(default_factory=ChatPermissions)

    @field_validator("chat", mode="before")
    @classmethod
    def _chat_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value

    @field_validator("chats", mode="before")
    @classmethod
    def _chats_as_text(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value


class Secrets(BaseModel):
    """Secrets come from the environment only, never from the file."""

    webhook_token: SecretStr | None = None
    api_token: SecretStr | None = None
    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    telegram_bot_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    pagerduty_routing_key: SecretStr | None = None
    grafana_hmac_secret: SecretStr | None = None


class JobSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Seconds a diagnosis job may take beyond ``ssh.deadline`` (the probe, saving) before its lease runs
    #: out and another worker (or this one after a crash) takes it again.
    lease_margin: float = Field(default=60.0, gt=0, le=3600)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    database_url: str = "sqlite+aiosqlite:///incident-bot.db"
    listen: str = "127.0.0.1:8080"
    jobs: JobSettings = Field(default_factory=JobSettings)
    ssh: SshDefaults = Field(default_factory=SshDefaults)
    hosts: dict[str, HostConfig] = Field(default_factory=dict)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    grafana: GrafanaConfig = Field(default_factory=GrafanaConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    secrets: Secrets = Field(default_factory=Secrets, exclude=True)
    source: str | None = Field(default=None, exclude=True)

    @field_validator("services")
    @classmethod
    def _hosts_exist(cls, services: dict[str, ServiceConfig], info: Any) -> dict[str, ServiceConfig]:
        known = set((info.data or {}).get("hosts", {}))
        for name, service in services.items():
            for host in service.hosts:
                if host not in known:
                    raise ValueError(f"service {name!r} names host {host!r}, which is not under hosts:")
        return services


_SECRET_ENV = {
    "webhook_token": "INCIDENT_BOT_WEBHOOK_TOKEN",
    "api_token": "INCIDENT_BOT_API_TOKEN",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
    "telegram_bot_token": "TELEGRAM_BOT_TOKEN",
    "telegram_webhook_secret": "TELEGRAM_WEBHOOK_SECRET",
    "pagerduty_routing_key": "PAGERDUTY_ROUTING_KEY",
    "grafana_hmac_secret": "INCIDENT_BOT_GRAFANA_HMAC_SECRET",
}


#: Settings the environment may give (and that win over the file): (section, key, variable).
_PLAIN_ENV = (
    ("slack", "channel", "SLACK_CHANNEL"),
    ("slack", "api_url", "SLACK_API_URL"),
    ("telegram", "chat", "TELEGRAM_CHAT_ID"),
    ("telegram", "api_url", "TELEGRAM_API_URL"),
)


def config_path(explicit: str | None, env: dict[str, str]) -> Path | None:
    if explicit:
        return Path(explicit)
    if env.get("INCIDENT_BOT_CONFIG"):
        return Path(env["INCIDENT_BOT_CONFIG"])
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def load_settings(explicit: str | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read the YAML file (if any) and the environment; raise ConfigError naming the bad field."""
    environ = dict(os.environ if env is None else env)
    path = config_path(explicit, environ)
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise ConfigError(str(path), "no such file") from None
        except OSError as exc:
            raise ConfigError(str(path), exc.strerror or "cannot be read") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(str(path), f"not valid YAML{where}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(str(path), "the top level must be a mapping")
        raw = loaded or {}
    if environ.get("DATABASE_URL"):
        raw["database_url"] = environ["DATABASE_URL"]
    for section, key, var in _PLAIN_ENV:
        current = raw.get(section)
        if environ.get(var) and (current is None or isinstance(current, dict)):  # else validation says why
            raw[section] = {**(current or {}), key: environ[var]}
    secrets = {name: environ[var] for name, var in _SECRET_ENV.items() if environ.get(var)}
    try:
        settings = Settings.model_validate({**raw, "secrets": secrets})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "config"
        raise ConfigError(field, first["msg"]) from None
    return settings.model_copy(update={"source": str(path) if path else None})
