"""How the Slack front door answers: through a request's ``response_url``, with a message in a channel or
thread, or with an ephemeral message only one person sees. Every way says whether Slack took it (a
failure is logged, never raised), so the caller can fall back to another; each call is bounded by
``timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import logging

from slack_bolt.async_app import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.blocks import SlackMessage, plain_message, render
from bot.adapters.slack.errors import TOO_BIG_ERRORS, SlackRejected, translate
from bot.core.blocks import Block
from bot.core.chat_commands import ChatReply
from bot.errors import ChatError

log = logging.getLogger(__name__)


class Replier:
    """Shows :class:`~bot.core.chat_commands.ChatReply` answers (and plain blocks) in Slack."""

    def __init__(self, client: AsyncWebClient, *, timeout: float = 10.0) -> None:
        self.client = client
        self.timeout = timeout

    async def respond(self, respond: AsyncRespond, reply: ChatReply, *, replace_original: bool | None = None) -> bool:
        """Answer through the request's ``response_url``: ephemeral when the reply is private."""
        message = render(reply.blocks, incident_id=reply.incident_id)
        try:
            async with asyncio.timeout(self.timeout):
                result = await respond(
                    text=message.text,
                    blocks=message.blocks,
                    response_type="ephemeral" if reply.private else "in_channel",
                    replace_original=replace_original,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except Exception as exc:
            log.warning("slack: could not answer through response_url (%s)", type(exc).__name__)
            return False
        if result.status_code != 200:
            log.warning("slack: response_url answered HTTP %s: %s", result.status_code, (result.body or "")[:200])
            return False
        return True

    async def post(
        self, channel: str, blocks: list[Block], incident_id: str | None, *, thread_ts: str | None = None
    ) -> str | None:
        """chat.postMessage (as plain text when Slack finds the blocks too big); the ``ts``, or None when
        Slack would not take it (logged)."""
        message = render(blocks, incident_id=incident_id)
        try:
            try:
                return await self._post_once(channel, message, thread_ts)
            except SlackRejected as exc:
                if exc.error not in TOO_BIG_ERRORS:
                    raise
                return await self._post_once(channel, plain_message(blocks, incident_id=incident_id), thread_ts)
        except ChatError as exc:
            log.warning("slack: could not post in %s (%s)", channel, exc.user_message())
            return None

    async def _post_once(self, channel: str, message: SlackMessage, thread_ts: str | None) -> str:
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.client.chat_postMessage(
                    channel=channel,
                    text=message.text,
                    blocks=message.blocks,
                    thread_ts=thread_ts,
                    unfurl_links=False,
                    unfurl_media=False,
                )
        except Exception as exc:
            raise translate(exc, method="chat.postMessage") from exc
        ts = answer.get("ts")
        return ts if isinstance(ts, str) else ""

    async def ephemeral(self, channel: str, user: str, reply: ChatReply, thread_ts: str | None) -> bool:
        """chat.postEphemeral to ``user``; False when Slack would not take it (logged)."""
        message = render(reply.blocks, incident_id=reply.incident_id)
        try:
            async with asyncio.timeout(self.timeout):
                await self.client.chat_postEphemeral(
                    channel=channel, user=user, text=message.text, blocks=message.blocks, thread_ts=thread_ts
                )
        except Exception as exc:
            log.warning(
                "slack: could not show %s a reply in %s (%s)",
                user,
                channel,
                translate(exc, method="chat.postEphemeral").user_message(),
            )
            return False
        return True
