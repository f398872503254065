"""The chats of ``serve``, built from the settings: where each incident is told, who tells it, how fast.

- Slack is a target when ``SLACK_BOT_TOKEN`` is set and the incident has a channel (its service's
  ``chat.slack_channel``, else ``SLACK_CHANNEL``); Telegram likewise with ``TELEGRAM_BOT_TOKEN`` and
  ``chat.telegram_chat`` / ``TELEGRAM_CHAT_ID``. An incident with neither goes to the console.
- Each target has its sender and its pace: Slack one message a second; Telegram one a second per chat
  and twenty a minute per group (its sender also keeps to thirty a second overall).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime

from rich.console import Console
from telegram import Bot
from telegram.error import InvalidToken, TelegramError

from bot.adapters.console_chat import ConsoleChat
from bot.adapters.slack.sender import SlackSender, channel_by_service, slack_client
from bot.adapters.telegram.sender import GROUP_BURST, GROUP_WINDOW, PER_CHAT_INTERVAL, FloodGate, TelegramSender
from bot.adapters.telegram.sender import telegram_bot as build_telegram_bot
from bot.config import Settings
from bot.core.chat import ChatSender
from bot.core.incidents import Incident
from bot.core.store import Store
from bot.errors import ConfigError
from bot.services.outbox import SLACK_PACE, Pace

log = logging.getLogger(__name__)

CONSOLE, SLACK, TELEGRAM = "console", "slack", "telegram"


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
    chats = Chats(senders={CONSOLE: ConsoleChat(Console(stderr=True))}, pace={CONSOLE: Pace(0.0)})
    secrets = settings.secrets
    if secrets.slack_bot_token is not None:
        client = slack_client(secrets.slack_bot_token.get_secret_value(), settings.slack.api_url)
        chats.slack_channel_of = slack_channel_of(settings)
        chats.senders[SLACK] = SlackSender(client, store, chats.slack_channel_of, clock)
        chats.pace[SLACK] = SLACK_PACE
    if secrets.telegram_bot_token is not None:
        # PTB 22 warns (and, with warnings as errors, fails) when it builds a RetryAfter unless this is set;
        # it also makes retry_after a timedelta, which the sender reads either way.
        os.environ.setdefault("PTB_TIMEDELTA", "true")
        bot = build_telegram_bot(secrets.telegram_bot_token.get_secret_value(), settings.telegram.api_url)
        await _open_bot(bot)
        chats.resources.push_async_callback(bot.shutdown)
        chats.telegram_chat_of = telegram_chat_of(settings)
        chats.telegram_gate = FloodGate()
        chats.senders[TELEGRAM] = TelegramSender(bot, store, chats.telegram_chat_of, clock, gate=chats.telegram_gate)
        chats.pace[TELEGRAM] = Pace(interval=PER_CHAT_INTERVAL, burst=GROUP_BURST, window=GROUP_WINDOW)
    return chats
