"""Direct messages on Slack: a page to one person (target ``slack_dm``; payload ``{"dm": {"user": U…}}``).

``chat.postMessage`` with ``channel`` set to the user id opens (or reuses) the bot's conversation with
them. Failures are translated like the thread sender's; a refusal (unknown user, bot not allowed)
is permanent and the pager records it on the incident's timeline.
"""

from __future__ import annotations

import asyncio

from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.blocks import render
from bot.adapters.slack.errors import translate
from bot.core.blocks import Block
from bot.core.incidents import Incident, OutboxMessage
from bot.errors import ChatRejected

TARGET = "slack_dm"


class SlackDirectSender:
    def __init__(self, client: AsyncWebClient, *, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        dm = message.payload.get("dm")
        user = dm.get("user") if isinstance(dm, dict) else None
        if not isinstance(user, str) or not user:
            raise ChatRejected(f"message {message.id} names no Slack user to write to", target=TARGET)
        shown = render(blocks, incident_id=incident.id)
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.chat_postMessage(
                    channel=user, text=shown.text, blocks=shown.blocks, unfurl_links=False, unfurl_media=False
                )
        except Exception as exc:
            raise translate(exc, method="chat.postMessage", target=TARGET) from exc
