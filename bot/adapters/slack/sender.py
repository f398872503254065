"""The Slack chat sender: one thread per incident, its status card at the root, edited in place.

:class:`SlackSender` implements the chat port for the outbox worker:

- ``opened`` posts the status card to the incident's channel (``channel_of``: the service's
  ``chat.slack_channel``, else ``SLACK_CHANNEL``) and records the thread (the channel id and ``ts`` Slack
  answered) with :meth:`Store.save_thread`;
- ``updated``/``resolved`` edit the card (``chat.update`` of the root);
- ``post`` replies in the thread (``thread_ts`` = the root); an incident with no thread yet gets its
  card first, and so does a card edit. A card Slack no longer has (deleted) is posted again.

Every message posted carries Slack message metadata ``{"event_type": "incident_bot_message",
"event_payload": {"outbox_id", "incident_id"}}``. When the outbox offers a message again
(``attempts > 1``: the bot may have died between Slack's answer and marking it delivered), the sender
first looks for that outbox id (``conversations.replies`` in the thread, ``conversations.history`` for
a root card it never recorded) and does not post it twice. A failed look-up that Slack refuses is
logged and the message posted (a duplicate is better than a lost message); a rate limit or an outage
during the look-up is raised like any other.

Failures are translated once (:func:`bot.adapters.slack.errors.translate`); a message Slack refuses as
too big or malformed (``invalid_blocks``, ``msg_blocks_too_long``, ``msg_too_long``) is sent once more as
plain text instead of being lost. Each call is bounded by ``timeout`` seconds. The client must not retry
by itself (:func:`slack_client` builds one that does not): the outbox owns retries and pacing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from bot.adapters.mentions import slack_ids
from bot.adapters.slack.blocks import SlackMessage, plain_message, render
from bot.adapters.slack.errors import TOO_BIG_ERRORS, SlackRejected, translate
from bot.core.blocks import Block
from bot.core.cards import read_diagnosis, status_card
from bot.core.incidents import ChatThread, Incident, OutboxMessage
from bot.core.store import ClaimedMessage, Store
from bot.errors import ChatRejected

log = logging.getLogger(__name__)

TARGET = "slack"
DEFAULT_API_URL = "https://slack.com/api/"
EVENT_TYPE = "incident_bot_message"
#: How many messages back a re-offered message is looked for, and how many are asked for at once.
LOOKBACK = 1000
PAGE = 200


def slack_client(token: str, api_url: str | None = None, *, timeout: float = 10.0) -> AsyncWebClient:
    """An AsyncWebClient for ``api_url`` (``SLACK_API_URL``, default Slack's) that never retries or sleeps
    by itself: no retry handlers, so a 429 or a 5xx comes straight back to the caller."""
    return AsyncWebClient(
        token=token, base_url=api_url or DEFAULT_API_URL, timeout=max(1, math.ceil(timeout)), retry_handlers=[]
    )


def channel_by_service(channels: Mapping[str, str | None], default: str | None) -> Callable[[Incident], str | None]:
    """``channel_of`` from a service → channel map (``chat.slack_channel``) and a default (``SLACK_CHANNEL``)."""

    def channel_of(incident: Incident) -> str | None:
        return (channels.get(incident.service) if incident.service else None) or default

    return channel_of


def metadata(message: OutboxMessage, incident: Incident) -> dict[str, Any]:
    """The Slack message metadata that ties a posted message to its outbox message."""
    return {"event_type": EVENT_TYPE, "event_payload": {"outbox_id": message.id, "incident_id": incident.id}}


def outbox_id(slack_message: Mapping[str, Any]) -> str | None:
    """The outbox id in a Slack message's metadata (as history/replies return it), if the bot put one."""
    meta = slack_message.get("metadata")
    if not isinstance(meta, Mapping) or meta.get("event_type") != EVENT_TYPE:
        return None
    payload = meta.get("event_payload")
    value = payload.get("outbox_id") if isinstance(payload, Mapping) else None
    return value if isinstance(value, str) else None


class SlackSender:
    """A ChatSender posting each incident's messages as one Slack thread (see the module docstring)."""

    def __init__(
        self,
        client: AsyncWebClient,
        store: Store,
        channel_of: Callable[[Incident], str | None],
        clock: Callable[[], datetime],
        *,
        timeout: float = 10.0,
        lookback: int = LOOKBACK,
    ) -> None:
        self.client = client
        self.store = store
        self.channel_of = channel_of
        self.clock = clock
        self.timeout = timeout
        self.lookback = lookback

    def lane(self, incident: Incident) -> str | None:
        """Slack's pace is per channel (:class:`~bot.core.chat.PerChat`)."""
        return self.channel_of(incident)

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        thread = await self.store.get_thread(incident.id, TARGET)
        again = isinstance(message, ClaimedMessage) and message.attempts > 1
        if thread is None:
            channel = self.channel_of(incident)
            if not channel:
                raise ChatRejected(
                    f"no Slack channel for incident {incident.id} (set chat.slack_channel or SLACK_CHANNEL)",
                    target=TARGET,
                )
            if again:
                thread = await self._find_root(channel, message, incident)
            if thread is None:
                card = blocks if message.kind != "post" else await self._card(incident)
                thread = await self._open(channel, card, message, incident)
                if message.kind != "post":
                    return
        if message.kind != "post":
            await self._edit(thread, blocks, message, incident)
            return
        if again and await self._replied(thread, message):
            log.info("slack: message %s is already in incident %s's thread; not posted again", message.id, incident.id)
            return
        await self._post(thread.channel, blocks, message, incident, thread_ts=thread.root)

    # ------------------------------------------------------------------------------------------ steps

    async def _card(self, incident: Incident) -> list[Block]:
        return status_card(incident, read_diagnosis(await self.store.get_diagnosis(incident.id)))

    async def _open(self, channel: str, card: list[Block], message: OutboxMessage, incident: Incident) -> ChatThread:
        """Post the status card as the root of the incident's thread and remember where it is."""
        answer = await self._post(channel, card, message, incident, thread_ts=None)
        thread = ChatThread(
            incident_id=incident.id,
            target=TARGET,
            channel=str(answer["channel"]),
            root=str(answer["ts"]),
            created_at=self.clock(),
        )
        await self.store.save_thread(thread)
        return thread

    async def _edit(self, thread: ChatThread, card: list[Block], message: OutboxMessage, incident: Incident) -> None:
        """Edit the card in place; post it again (a new root) when Slack no longer has it."""
        rendered = render(card, incident_id=incident.id)
        try:
            await self._update(thread, rendered)
        except SlackRejected as exc:
            if exc.error in TOO_BIG_ERRORS:
                await self._update(thread, plain_message(card, incident_id=incident.id))
            elif exc.error == "message_not_found":
                log.warning("slack: incident %s's card is gone from %s; posting it again", incident.id, thread.channel)
                await self._open(thread.channel, card, message, incident)
            else:
                raise

    async def _update(self, thread: ChatThread, rendered: SlackMessage) -> None:
        await self._call(
            "chat.update",
            lambda: self.client.chat_update(
                channel=thread.channel, ts=thread.root, text=rendered.text, blocks=rendered.blocks
            ),
        )

    async def _post(
        self, channel: str, blocks: list[Block], message: OutboxMessage, incident: Incident, *, thread_ts: str | None
    ) -> dict[str, Any]:
        """chat.postMessage with the outbox metadata; sent again as plain text when Slack finds it too big."""

        notify = " ".join(f"<@{user}>" for user in slack_ids(message))  # a page pings the people it names

        def post(shown: SlackMessage) -> Awaitable[AsyncSlackResponse]:
            text, shown_blocks = shown.text, shown.blocks
            if notify:
                text = f"{notify} {text}"
                shown_blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": notify}}, *shown_blocks][:50]
            return self.client.chat_postMessage(
                channel=channel,
                text=text,
                blocks=shown_blocks,
                thread_ts=thread_ts,
                metadata=metadata(message, incident),
                unfurl_links=False,
                unfurl_media=False,
            )

        try:
            return await self._call("chat.postMessage", lambda: post(render(blocks, incident_id=incident.id)))
        except SlackRejected as exc:
            if exc.error not in TOO_BIG_ERRORS:
                raise
            log.warning("slack: message %s refused (%s); sending it as plain text", message.id, exc.error)
            return await self._call("chat.postMessage", lambda: post(plain_message(blocks, incident_id=incident.id)))

    # ------------------------------------------------------------------------------- finding again

    async def _find_root(self, channel: str, message: OutboxMessage, incident: Incident) -> ChatThread | None:
        """The card an earlier attempt of ``message`` posted but never recorded, recorded now."""
        found = await self._look("conversations.history", channel=channel)
        for item in found or []:
            if outbox_id(item) == message.id and item.get("thread_ts") in (None, item.get("ts")):
                log.info("slack: message %s already posted incident %s's card; reusing it", message.id, incident.id)
                thread = ChatThread(
                    incident_id=incident.id,
                    target=TARGET,
                    channel=channel,
                    root=str(item["ts"]),
                    created_at=self.clock(),
                )
                await self.store.save_thread(thread)
                return thread
        return None

    async def _replied(self, thread: ChatThread, message: OutboxMessage) -> bool:
        """Whether the thread already holds a reply carrying ``message``'s outbox id."""
        found = await self._look("conversations.replies", channel=thread.channel, ts=thread.root)
        return any(outbox_id(item) == message.id and item.get("ts") != thread.root for item in found or [])

    async def _look(self, method: str, **args: Any) -> list[dict[str, Any]] | None:
        """Up to ``lookback`` messages (with metadata) from conversations.history (newest first) or
        conversations.replies (oldest first), or None when Slack refuses the look-up."""
        call = (
            self.client.conversations_history
            if method == "conversations.history"
            else self.client.conversations_replies
        )
        messages: list[dict[str, Any]] = []
        cursor: str | None = None
        try:
            while len(messages) < self.lookback:
                ask = functools.partial(call, include_all_metadata=True, limit=PAGE, cursor=cursor, **args)
                page = await self._call(method, ask)
                messages.extend(m for m in page.get("messages") or [] if isinstance(m, dict))
                cursor = (page.get("response_metadata") or {}).get("next_cursor") or None
                if not cursor:
                    break
        except SlackRejected as exc:
            log.warning("slack: could not look for earlier attempts (%s %s); posting anyway", method, exc.error)
            return None
        return messages

    # -------------------------------------------------------------------------------------- border

    async def _call(self, method: str, call: Callable[[], Awaitable[AsyncSlackResponse]]) -> dict[str, Any]:
        """Run one Slack call within ``timeout``; every failure leaves here as a ChatError."""
        try:
            async with asyncio.timeout(self.timeout):
                response = await call()
        except Exception as exc:
            raise translate(exc, method=method) from exc
        data = response.data
        return dict(data) if isinstance(data, dict) else {}
