"""Settings: one YAML file plus the environment (DESIGN §4.5). Secrets are SecretStr.

The file is ``--config``, else ``$INCIDENT_BOT_CONFIG``, else ``./incident-bot.yaml`` if present, else
the built-in defaults. Environment variables win over the file for the values they name. Nothing here
runs at import time: the composition root calls :func:`load_settings` once.
"""

from __future__ import annotations

import os
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.core.oncall import WEEKDAYS, parse_clock, parse_duration, zone
from bot.errors import ConfigError

DEFAULT_FILE = "incident-bot.yaml"


class SshDefaults(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: The remote user (else each host's ``user``, else the OpenSSH config's, else the local user).
    user: str | None = None
    #: The private key file of the bot.
    identity: str | None = None
    #: Where host keys are checked (never disabled).
    known_hosts: str = "~/.ssh/known_hosts"
    #: ``strict`` verifies every host key; ``accept-new`` trusts a first key and records it.
    host_key_policy: Literal["strict", "accept-new"] = "strict"
    #: An OpenSSH client config to read (aliases, ``ProxyJump``…); none unless given.
    config: str | None = None
    #: Use the SSH agent (off unless asked for).
    use_agent: bool = False
    #: Seconds to connect and finish the SSH handshake.
    connect_timeout: float = Field(default=5.0, gt=0, le=120)
    #: Seconds one remote command may run (enforced on the host with ``timeout -k``).
    command_timeout: float = Field(default=15.0, gt=0, le=600)
    #: Seconds a whole diagnosis may take over every host.
    deadline: float = Field(default=60.0, gt=0, le=3600)
    #: Hosts diagnosed at once.
    max_parallel_hosts: int = Field(default=64, ge=1, le=4096)


class HostConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: Host name or IP address (or an alias of ``ssh.config``).
    address: str
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    identity: str | None = None
    known_hosts: str | None = None
    #: ``[user@]host[:port]`` to reach this host through.
    proxy_jump: str | None = None
    #: Let runbook commands that need root run with ``sudo -n`` (see ``deploy/sudoers``).
    allow_sudo: bool = False
    #: What the host is (``proxy``, ``app``, ``db``…): picks the runbooks; none, they are discovered.
    roles: list[str] = Field(default_factory=list)
    #: Known facts (``nginx_error_log``, ``app_unit``…); none, they are discovered on the host.
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

    #: An alert with all these labels is this service's.
    labels: dict[str, str] = Field(default_factory=dict)
    #: An alert whose URL has this host is this service's.
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


# ----------------------------------------------------------------------------------- on call (issue #7)


def _duration(value: Any) -> Any:
    """``10m``, ``2h``, ``1h30m``; a bare number is seconds."""
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError("a duration must be positive")
        return timedelta(seconds=value)
    return value


#: A positive duration written ``90s``, ``10m``, ``2h``, ``1h30m``, ``1d`` (or a number of seconds).
Duration = Annotated[timedelta, BeforeValidator(_duration)]


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class PersonConfig(BaseModel):
    """Someone who can be paged (``oncall.people.<name>``) and how: ``slack`` is their Slack user id
    (``U…``), ``telegram`` their Telegram user id (they must have started a chat with the bot for direct
    messages), ``telegram_username`` lets Telegram commands name them as ``@username``, ``pagerduty``
    says the bot also triggers PagerDuty when it pages them."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    slack: str | None = None
    telegram: str | None = None
    telegram_username: str | None = None
    pagerduty: bool = False

    @field_validator("telegram", mode="before")
    @classmethod
    def _telegram_as_text(cls, value: Any) -> Any:
        """Telegram user ids are numbers in YAML; ids all the same."""
        return _as_text(value)


def _rotation_days(value: str) -> int:
    word = value.strip().lower()
    if word == "daily":
        return 1
    if word == "weekly":
        return 7
    length = parse_duration(word)
    if length.total_seconds() % 86400:
        raise ValueError(f"rotation {value!r} must be daily, weekly or a number of days like 3d or 2w")
    return int(length.total_seconds() // 86400)


class RotationConfig(BaseModel):
    """One rotation: ``members`` take turns for ``rotation`` (daily, weekly, ``3d``, ``2w``), handing over
    at ``handoff`` (wall-clock time in ``time_zone``); the first member's first turn starts on ``start``
    (a weekly rotation hands over on that weekday). ``days``/``hours`` restrict it to part of each day
    (``hours: "08:00-20:00"``, over midnight when the end is earlier), for follow-the-sun layers."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    members: list[str] = Field(default_factory=list)
    rotation: str = "weekly"
    handoff: str = "09:00"
    time_zone: str | None = None
    start: date = date(2024, 1, 1)
    days: list[str] | None = None
    hours: str | None = None

    @field_validator("rotation")
    @classmethod
    def _rotation(cls, value: str) -> str:
        _rotation_days(value)
        return value

    @field_validator("handoff", mode="before")
    @classmethod
    def _handoff(cls, value: Any) -> Any:
        if isinstance(value, int):  # YAML 1.1 reads an unquoted 10:30 as the base-60 number 630
            raise ValueError('write the hand-off time in quotes, like handoff: "10:30"')
        if isinstance(value, str):
            parse_clock(value)
        return value

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value

    @field_validator("days")
    @classmethod
    def _days(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        days = [d.strip().lower()[:3] for d in value]
        unknown = [d for d in days if d not in WEEKDAYS]
        if unknown or not days:
            raise ValueError(f"days must be weekdays ({', '.join(WEEKDAYS)}), not {value!r}")
        return days

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is not None:
            start, sep, end = value.partition("-")
            if not sep:
                raise ValueError(f"hours {value!r} must be like 08:00-20:00")
            parse_clock(start)
            parse_clock(end)
        return value

    @property
    def length_days(self) -> int:
        return _rotation_days(self.rotation)


class ScheduleConfig(RotationConfig):
    """An on-call schedule (``oncall.schedules.<name>``): one rotation written in place (``members``…),
    or ``layers`` of rotations where the first layer that covers a moment decides (follow-the-sun).
    ``time_zone`` is the schedule's, and its layers' unless they name their own."""

    time_zone: str | None = "UTC"
    layers: list[RotationConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_shape(self) -> ScheduleConfig:
        if bool(self.members) == bool(self.layers):
            raise ValueError("a schedule has either members (one rotation) or layers, and not both")
        for n, layer in enumerate(self.layers, 1):
            if not layer.members:
                raise ValueError(f"layer {n} has no members")
        return self

    def rotations(self) -> list[RotationConfig]:
        """The layers, in order (a schedule written in place is its own single layer)."""
        return list(self.layers) if self.layers else [self]


class EscalationLevelConfig(BaseModel):
    """A level of an escalation policy: who it pages (a ``schedule``'s on-call person and/or ``people``)
    and how long to wait for an acknowledgement (``after``) before the next level is paged."""

    model_config = ConfigDict(extra="forbid")

    schedule: str | None = None
    people: list[str] = Field(default_factory=list)
    after: Duration = timedelta(minutes=15)

    @model_validator(mode="after")
    def _someone(self) -> EscalationLevelConfig:
        if self.schedule is None and not self.people:
            raise ValueError("an escalation level needs a schedule or people")
        return self


class OnCallConfig(BaseModel):
    """``oncall:``: people, schedules, the default escalation policy (services may have their own) and
    how quiet paging is: one page per service within ``storm_window``; a confirmation probe that found
    the site answering (a blip) defers the page by ``blip_grace``; a routed incident whose probe has not
    reported within ``probe_wait`` is paged anyway."""

    model_config = ConfigDict(extra="forbid")

    people: dict[str, PersonConfig] = Field(default_factory=dict)
    schedules: dict[str, ScheduleConfig] = Field(default_factory=dict)
    escalation: list[EscalationLevelConfig] = Field(default_factory=list)
    storm_window: Duration = timedelta(minutes=10)
    blip_grace: Duration = timedelta(minutes=5)
    probe_wait: Duration = timedelta(minutes=2)
    #: Direct messages to the people paged (Slack and Telegram, where configured for them).
    direct_messages: bool = True
    #: The Slack workspace URL (``https://acme.slack.com``), for links to incident threads.
    slack_url: str | None = None

    @model_validator(mode="after")
    def _references(self) -> OnCallConfig:
        for name, schedule in self.schedules.items():
            for rotation in schedule.rotations():
                for member in rotation.members:
                    if member not in self.people:
                        raise ValueError(f"schedule {name!r} names {member!r}, who is not under oncall.people")
        check_levels("oncall.escalation", self.escalation, self)
        return self


def check_levels(where: str, levels: list[EscalationLevelConfig], oncall: OnCallConfig | None) -> None:
    """ValueError naming ``where`` when a level names a schedule or person ``oncall`` does not have."""
    if oncall is None:
        if levels:
            raise ValueError(f"{where} needs an oncall: section with its people and schedules")
        return
    for n, level in enumerate(levels):
        if level.schedule is not None and level.schedule not in oncall.schedules:
            raise ValueError(f"{where}[{n}] names schedule {level.schedule!r}, which is not under oncall.schedules")
        for person in level.people:
            if person not in oncall.people:
                raise ValueError(f"{where}[{n}] names {person!r}, who is not under oncall.people")


class PagerDutyConfig(BaseModel):
    """PagerDuty Events API v2 (used when ``PAGERDUTY_ROUTING_KEY`` is set): where events go
    (``PAGERDUTY_EVENTS_URL`` wins), the severity of a confirmed page, and how long to wait after a 429
    that names no ``Retry-After`` (PagerDuty suggests about 30 s)."""

    model_config = ConfigDict(extra="forbid")

    events_url: str = "https://events.pagerduty.com/v2/enqueue"
    severity: Literal["critical", "error", "warning", "info"] = "critical"
    retry_after: float = Field(default=30.0, gt=0, le=3600)
    timeout: float = Field(default=10.0, gt=0, le=120)


class ServiceConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: How an alert is recognised as this service's (any one rule).
    match: ServiceMatch = Field(default_factory=ServiceMatch)
    #: The hosts (names under ``hosts:``) its incidents are diagnosed on.
    hosts: list[str] = Field(default_factory=list)
    #: The URL the bot probes before paging.
    url: str | None = None
    #: Where its incidents are posted (else ``slack.channel`` / ``telegram.chat``).
    chat: ServiceChat = Field(default_factory=ServiceChat)
    #: The service's escalation policy (else ``oncall.escalation``).
    escalation: list[EscalationLevelConfig] | None = None


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


#: Chat roles, each able to do what the ones before it can: read, respond, operate.
Role = Literal["viewer", "responder", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "responder", "operator")


class RoleGrant(BaseModel):
    """Gives ``role`` to the listed ``users`` (Slack ``U…`` ids, Telegram user ids), the members of the
    listed Slack user ``groups`` (``S…`` ids), or ``everyone``, in the listed ``channels`` (Slack channel
    ids, Telegram chat ids) or, with none listed, everywhere.

    ``viewer`` reads (list, show, explain, oncall); ``responder`` also acknowledges, resolves,
    escalates and re-runs; ``operator`` also runs diagnoses and runbooks, asks for a mutating runbook
    and approves or denies someone else's request."""

    model_config = ConfigDict(extra="forbid")

    role: Role
    users: list[str] = Field(default_factory=list)
    groups: list[str] = Field(default_factory=list)
    everyone: bool = False
    channels: list[str] = Field(default_factory=list)

    @field_validator("users", "groups", "channels", mode="before")
    @classmethod
    def _ids_as_text(cls, value: Any) -> Any:
        return [str(v) for v in value] if isinstance(value, list) else value

    @model_validator(mode="after")
    def _someone(self) -> RoleGrant:
        if not (self.users or self.groups or self.everyone):
            raise ValueError("a role grant needs users, groups or everyone: true")
        return self


class ChatPermissions(BaseModel):
    """Who may do what from chat. ``roles`` grants viewer, responder or operator per channel (the
    fields of each grant are below). ``respond`` and ``operate`` are the short form: ``respond`` makes its list
    responders, ``operate`` operators, everywhere (a listed channel: anyone writing there).

    With no grant of a role: anyone may read; anyone in a channel the bot posts incidents to may
    respond; nobody operates."""

    model_config = ConfigDict(extra="forbid")

    respond: AllowList | None = None
    operate: AllowList = Field(default_factory=AllowList)
    roles: list[RoleGrant] = Field(default_factory=list)


class ApprovalSettings(BaseModel):
    """Requests to run a mutating runbook (``/incident request``): a second operator must approve."""

    model_config = ConfigDict(extra="forbid")

    #: How long a request waits for approval (``15m``; a number is seconds) before it expires.
    expire_after: Duration = timedelta(minutes=15)

    @field_validator("expire_after")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if not timedelta(seconds=1) <= value <= timedelta(days=1):
            raise ValueError("expire_after must be between 1s and 1d")
        return value


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
    #: Diagnoses one ``serve`` process runs at once (a slow host never holds every other incident back).
    concurrency: int = Field(default=4, ge=1, le=64)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: ``sqlite+aiosqlite:///FILE`` (one process) or ``postgresql+asyncpg://…`` (``DATABASE_URL`` wins).
    database_url: str = "sqlite+aiosqlite:///incident-bot.db"
    #: ``HOST:PORT`` of ``serve``; a non-loopback address needs every inbound secret set.
    listen: str = "127.0.0.1:8080"
    jobs: JobSettings = Field(default_factory=JobSettings)
    ssh: SshDefaults = Field(default_factory=SshDefaults)
    hosts: dict[str, HostConfig] = Field(default_factory=dict)
    services: dict[str, ServiceConfig] = Field(default_factory=dict)
    grafana: GrafanaConfig = Field(default_factory=GrafanaConfig)
    slack: SlackConfig = Field(default_factory=SlackConfig)
    telegram: TelegramConfig = Field(default_factory=TelegramConfig)
    oncall: OnCallConfig | None = None
    pagerduty: PagerDutyConfig = Field(default_factory=PagerDutyConfig)
    approvals: ApprovalSettings = Field(default_factory=ApprovalSettings)
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

    @model_validator(mode="after")
    def _escalations_exist(self) -> Settings:
        """Each service's escalation names people and schedules of ``oncall:``."""
        for name, service in self.services.items():
            if service.escalation is not None:
                check_levels(f"services.{name}.escalation", service.escalation, self.oncall)
        return self


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
    ("pagerduty", "events_url", "PAGERDUTY_EVENTS_URL"),
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
