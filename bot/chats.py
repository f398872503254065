"""The chats of ``serve``, built from the settings: where each incident is told, who tells it, how fast.

- Slack is a target when ``SLACK_BOT_TOKEN`` is set and the incident has a channel (its service's
  ``chat.slack_channel``, else ``SLACK_CHANNEL``); Telegram likewise with ``TELEGRAM_BOT_TOKEN`` and
  ``chat.telegram_chat`` / ``TELEGRAM_CHAT_ID``. An incident with neither goes to the console.
- Each target has its sender and its pace: Slack one message a second; Telegram one a second per chat
  and twenty a minute per group (its sender also keeps to thirty a second overall).
- Pages (``oncall:``) go to their own targets: direct messages on Slack and Telegram, and PagerDuty
  when ``PAGERDUTY_ROUTING_KEY`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncEngine
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from bot.adapters.audit import StoreAuditor
from bot.adapters.console_chat import ConsoleChat, PipeSafeConsole
from bot.adapters.db.leader import Leadership
from bot.adapters.pagerduty import PagerDutySender
from bot.adapters.slack.app import SlackApp
from bot.adapters.slack.direct import SlackDirectSender
from bot.adapters.slack.sender import SlackSender, channel_by_service, slack_client
from bot.adapters.telegram.direct import TelegramDirectSender
from bot.adapters.telegram.sender import GROUP_BURST, GROUP_WINDOW, PER_CHAT_INTERVAL, FloodGate, TelegramSender
from bot.adapters.telegram.sender import telegram_bot as build_telegram_bot
from bot.adapters.telegram.updates import TelegramApp
from bot.app import DiagnoseRequest, run_diagnose
from bot.config import Settings
from bot.core.approvals import Approval
from bot.core.chat import ChatSender
from bot.core.incidents import Incident
from bot.core.models import Diagnosis
from bot.core.store import Store
from bot.errors import ChatError, ConfigError
from bot.runbook.registry import load as load_runbooks
from bot.services.announce import Announcer
from bot.services.approvals import Approvals
from bot.services.chatops import ChatOps, Policy, grants_of, served_channels
from bot.services.explain import explain_text
from bot.services.incidents import IncidentService
from bot.services.outbox import SLACK_PACE, Pace
from bot.services.paging import PAGERDUTY, SLACK_DM, TELEGRAM_DM, Pager, ThreadLinks, paging_options, rota_from_settings

log = logging.getLogger(__name__)

CONSOLE, SLACK, TELEGRAM = "console", "slack", "telegram"


def reveal(secret: SecretStr | None) -> str | None:
    """A secret's value where a client needs it (never logged)."""
    return secret.get_secret_value() if secret is not None else None


def slack_channel_of(settings: Settings) -> Callable[[Incident], str | None]:
    return channel_by_service(
        {name: service.chat.slack_channel for name, service in settings.services.items()}, settings.slack.channel
    )


def telegram_chat_of(settings: Settings) -> Callable[[Incident], str | None]:
    chats = {name: service.chat.telegram_chat for name, service in settings.services.items()}

    def chat_of(incident: Incident) -> str | None:
        return (chats.get(incident.service) if incident.service else None) or settings.telegram.chat

    return chat_of


@dataclass
class Chats:
    """The senders by target name, their paces, and which targets an incident goes to."""

    senders: dict[str, ChatSender]
    pace: dict[str, Pace]
    slack_channel_of: Callable[[Incident], str | None] | None = None
    telegram_chat_of: Callable[[Incident], str | None] | None = None
    telegram_gate: FloodGate | None = None
    telegram_bot: Bot | None = None
    resources: AsyncExitStack = field(default_factory=AsyncExitStack)

    def targets(self, incident: Incident) -> Sequence[str]:
        found = []
        if self.slack_channel_of is not None and self.slack_channel_of(incident):
            found.append(SLACK)
        if self.telegram_chat_of is not None and self.telegram_chat_of(incident):
            found.append(TELEGRAM)
        return found or [CONSOLE]

    async def aclose(self) -> None:
        await self.resources.aclose()


async def _open_bot(bot: Bot, timeout: float = 10.0) -> None:
    """``getMe`` once; if Telegram cannot be reached now, serve starts anyway and the outbox retries."""
    try:
        await asyncio.wait_for(bot.initialize(), timeout)
    except InvalidToken:
        raise ConfigError("TELEGRAM_BOT_TOKEN", "was rejected by the Telegram Bot API") from None
    except (TelegramError, TimeoutError) as exc:
        log.warning("telegram: getMe failed (%s); messages wait in the outbox until it answers", type(exc).__name__)


async def build_chats(settings: Settings, store: Store, clock: Callable[[], datetime]) -> Chats:
    """Every sender the settings call for (the console one always), opened; close with :meth:`Chats.aclose`."""
    chats = Chats(senders={CONSOLE: ConsoleChat(PipeSafeConsole(stderr=True))}, pace={CONSOLE: Pace(0.0)})
    secrets = settings.secrets
    if secrets.slack_bot_token is not None:
        client = slack_client(secrets.slack_bot_token.get_secret_value(), settings.slack.api_url)
        chats.slack_channel_of = slack_channel_of(settings)
        chats.senders[SLACK] = SlackSender(client, store, chats.slack_channel_of, clock)
        chats.pace[SLACK] = SLACK_PACE
        chats.senders[SLACK_DM] = SlackDirectSender(client)
        chats.pace[SLACK_DM] = SLACK_PACE
    if secrets.telegram_bot_token is not None:
        # PTB 22 warns (and, with warnings as errors, fails) when it builds a RetryAfter unless this is set;
        # it also makes retry_after a timedelta, which the sender reads either way.
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        bot = build_telegram_bot(secrets.telegram_bot_token.get_secret_value(), settings.telegram.api_url)
        await _open_bot(bot)
        chats.resources.push_async_callback(bot.shutdown)
        chats.telegram_chat_of = telegram_chat_of(settings)
        chats.telegram_gate = FloodGate(per_chat_burst=2)  # a new topic and its card go out together
        chats.telegram_bot = bot
        chats.senders[TELEGRAM] = TelegramSender(bot, store, chats.telegram_chat_of, clock, gate=chats.telegram_gate)
        chats.pace[TELEGRAM] = Pace(interval=PER_CHAT_INTERVAL, burst=GROUP_BURST, window=GROUP_WINDOW)
        chats.senders[TELEGRAM_DM] = TelegramDirectSender(bot, chats.telegram_gate)
        chats.pace[TELEGRAM_DM] = Pace(interval=0.1)  # the flood gate paces each person's chat
    if secrets.pagerduty_routing_key is not None:
        pagerduty = PagerDutySender(
            secrets.pagerduty_routing_key.get_secret_value(),
            events_url=settings.pagerduty.events_url,
            retry_after=settings.pagerduty.retry_after,
            timeout=settings.pagerduty.timeout,
            thread_link=ThreadLinks(store, settings.oncall.slack_url if settings.oncall else None),
        )
        chats.resources.push_async_callback(pagerduty.aclose)
        chats.senders[PAGERDUTY] = pagerduty
        chats.pace[PAGERDUTY] = Pace(0.5)  # PagerDuty allows about 120 events a minute per routing key
    return chats


def pager(
    settings: Settings, store: Store, chats: Chats, announce: Announcer, clock: Callable[[], datetime]
) -> Pager | None:
    """Paging and escalation, when the configuration has an ``oncall:`` section."""
    rota = rota_from_settings(settings)
    if rota is None:
        return None
    options = paging_options(settings, slack_dm=SLACK_DM in chats.senders, telegram_dm=TELEGRAM_DM in chats.senders)
    links = ThreadLinks(store, settings.oncall.slack_url if settings.oncall else None)
    return Pager(store, rota, clock, options=options, announce=announce, thread_link=links)


def chat_operations(
    settings: Settings,
    store: Store,
    incidents: IncidentService,
    announce: Announcer,
    clock: Callable[[], datetime],
    *,
    paging: Pager | None = None,
) -> ChatOps:
    """What chat commands and buttons do, with each platform's permissions; a ``diagnose`` from chat
    reaches only hosts of the configuration and is audited to the store."""
    services = settings.services.values()
    policies = {
        SLACK: Policy(
            settings.slack.allow,
            served_channels([settings.slack.channel], [s.chat.slack_channel for s in services]),
        ),
        TELEGRAM: Policy(
            settings.telegram.allow,
            served_channels([settings.telegram.chat], [s.chat.telegram_chat for s in services]),
        ),
    }

    async def diagnose(target: str, status: int | None, runbooks: tuple[str, ...], trigger: str) -> Diagnosis:
        request = DiagnoseRequest(target=target, status=status, runbooks=runbooks, trigger=trigger, adhoc=False)
        auditor = StoreAuditor(store)
        try:
            return await run_diagnose(request, settings, auditor=auditor)
        finally:
            await auditor.flush()

    async def run_approved(approval: Approval) -> Diagnosis:
        request = DiagnoseRequest(
            target=approval.host,
            runbooks=(approval.runbook,),
            params={approval.runbook: approval.params},
            trigger=f"approval:{approval.id}",
            adhoc=False,
            approval=approval.id,
        )
        auditor = StoreAuditor(store)
        try:
            return await run_diagnose(request, settings, auditor=auditor)
        finally:
            await auditor.flush()

    approvals = Approvals(
        store,
        runbooks=load_runbooks().runbooks,
        hosts={name: service.hosts for name, service in settings.services.items()},
        run=run_approved,
        clock=clock,
        expire_after=settings.approvals.expire_after,
        run_limit=timedelta(seconds=settings.ssh.deadline + settings.jobs.lease_margin),
        announce=announce,
    )
    return ChatOps(
        store,
        incidents,
        policies=policies,
        explain=lambda text: explain_text(text, None),
        diagnose=diagnose,
        clock=clock,
        announce=announce,
        oncall=paging.oncall if paging is not None else None,
        escalate=paging.escalate if paging is not None else None,
        approvals=approvals,
    )


#: How long to wait before trying a chat connection again after it failed.
RECONNECT = 30.0


class Inbound:
    """The chats' inbound sides: Slack (``/slack/events``, or Socket Mode held by one replica) and
    Telegram (``/telegram/webhook`` on every replica, or long polling by one)."""

    def __init__(self, settings: Settings, engine: AsyncEngine, ops: ChatOps, chats: Chats) -> None:
        self.settings = settings
        self.engine = engine
        self.slack: SlackApp | None = None
        self.telegram: TelegramApp | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._leaders: list[Leadership] = []
        secrets = settings.secrets
        if secrets.slack_bot_token is not None:
            groups = sorted({group for grant in grants_of(settings.slack.allow) for group in grant.groups})
            self.slack = SlackApp(
                slack_client(secrets.slack_bot_token.get_secret_value(), settings.slack.api_url),
                ops,
                signing_secret=reveal(secrets.slack_signing_secret),
                app_token=reveal(secrets.slack_app_token),
                groups=groups,
            )
        if chats.telegram_bot is not None:
            telegram = settings.telegram
            services = settings.services.values()
            grants = grants_of(telegram.allow)
            people = settings.oncall.people.values() if settings.oncall else []
            self.telegram = TelegramApp(
                chats.telegram_bot,
                ops,
                webhook_secret=reveal(secrets.telegram_webhook_secret),
                webhook_url=telegram.webhook_url,
                chats=served_channels(
                    [telegram.chat],
                    [s.chat.telegram_chat for s in services],
                    telegram.chats,
                    [chat for grant in grants for chat in grant.channels],
                ),
                users=[
                    *(user for grant in grants for user in grant.users),
                    *(str(p.telegram) for p in people if p.telegram),
                ],
                gate=chats.telegram_gate,
            )

    def mount(self, api: FastAPI) -> None:
        if self.slack is not None and self.settings.secrets.slack_signing_secret is not None:
            self.slack.mount(api)
        if self.telegram is not None and self.settings.telegram.webhook_url:
            self.telegram.mount(api)

    def start(self, stop: asyncio.Event) -> None:
        """Connect in the background (a chat being down never stops ``serve``); what only one replica
        may hold (Slack's Socket Mode, Telegram's long polling) waits for this replica to lead."""
        if self.slack is not None:
            slack = self.slack
            socket_mode = self.settings.secrets.slack_app_token is not None
            self._start(
                "slack-socket-mode" if socket_mode else None, lambda: slack.start(socket_mode=socket_mode), stop
            )
        if self.telegram is not None:
            telegram = self.telegram
            poll = not self.settings.telegram.webhook_url
            self._start("telegram-polling" if poll else None, lambda: telegram.start(poll=poll), stop)

    def _start(self, leading: str | None, connect: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        self._tasks.append(asyncio.create_task(self._connect(leading, connect, stop), name=f"inbound-{leading}"))

    async def _connect(self, leading: str | None, connect: Callable[[], Awaitable[None]], stop: asyncio.Event) -> None:
        if leading is not None:
            leader = Leadership(self.engine, leading)
            self._leaders.append(leader)
            if not await leader.wait(stop):
                return
        while not stop.is_set():
            try:
                await connect()
                return
            except ConfigError as exc:
                log.error("%s: %s; commands and buttons are off", leading or "chat", exc.user_message())
                return
            except ChatError as exc:
                log.warning("%s: cannot connect (%s); trying again in %.0fs", leading or "chat", exc.code, RECONNECT)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), RECONNECT)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.slack is not None:
            await self.slack.stop()
        if self.telegram is not None:
            await self.telegram.stop()
        for leader in self._leaders:
            await leader.release()
