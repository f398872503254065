"""Answers to people in Telegram: a :class:`~bot.core.chat_commands.ChatReply` rendered with the HTML
renderer (split within 4096 UTF-16 units, at most :data:`~bot.adapters.telegram.html.MAX_PARTS`
messages) and sent where the question was asked (:class:`Place`).

Every message passes the :class:`~bot.adapters.telegram.sender.FloodGate` the outbox's sender uses, so
answers and incident posts together keep Telegram's limits (1/s per chat, 20/min per group, 30/s
overall). A 429 holds the chat in the gate and the message is tried again (at most :data:`ATTEMPTS`
times, as is a network failure); markup Telegram refuses is sent again as plain text; any other refusal
is logged and the rest of the answer dropped. A reply never raises: the person asked, nobody waits on
the outcome but them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardMarkup, Message, ReplyParameters
from telegram.constants import ChatType, ParseMode

from bot.adapters.telegram.errors import MarkupRefused, call
from bot.adapters.telegram.html import Part, render, utf16_units
from bot.adapters.telegram.sender import NO_PREVIEW, TARGET, FloodGate
from bot.core.chat_commands import ChatReply
from bot.errors import ChatError, RateLimited, TransientChatError

log = logging.getLogger(__name__)

#: Tries of one message when Telegram answers 429 or the network fails.
ATTEMPTS = 3
#: Seconds before trying again after a network failure.
TRANSIENT_WAIT = 1.0
#: Telegram's limit on the text of a callback query's answer (``answerCallbackQuery``), in characters.
MAX_ANSWER_TEXT = 200


@dataclass(frozen=True)
class Place:
    """Where an answer goes: the chat, whether it is a group (for the flood gate), the forum topic it
    stays in, and the message it replies to (None: a plain message in the chat or topic)."""

    chat_id: int
    group: bool
    topic: int | None = None
    reply_to: int | None = None

    @classmethod
    def of(cls, message: Message, *, reply: bool) -> Place:
        """Beside ``message``: in its forum topic when it is in one (a reply chain in an ordinary group
        has a ``message_thread_id`` too, which cannot be sent to), replying to it when ``reply``."""
        chat = message.chat
        group = chat.type in (ChatType.GROUP, ChatType.SUPERGROUP, ChatType.CHANNEL)
        topic = message.message_thread_id if message.is_topic_message else None
        return cls(chat.id, group, topic, message.message_id if reply else None)


def short_text(reply: ChatReply) -> str | None:
    """The reply as plain text when it fits a callback query's answer (one short message), else None."""
    rendered = render(reply.blocks, reply.incident_id or "")
    if len(rendered.parts) != 1 or rendered.keyboard is not None:
        return None
    text = rendered.parts[0].text.strip()
    return text if 0 < utf16_units(text) <= MAX_ANSWER_TEXT else None


class Replier:
    """Sends answers through the shared flood gate (see the module docstring)."""

    def __init__(self, bot: Bot, gate: FloodGate) -> None:
        self.bot = bot
        self.gate = gate

    async def send(self, place: Place, reply: ChatReply) -> list[Message]:
        """``reply`` as one or more messages at ``place`` (the keyboard, if any, under the last one);
        the messages Telegram took, in order. Only the first part replies to the asker's message."""
        rendered = render(reply.blocks, reply.incident_id or "")
        sent: list[Message] = []
        last = len(rendered.parts) - 1
        for n, part in enumerate(rendered.parts):
            at = place if n == 0 else Place(place.chat_id, place.group, place.topic)
            message = await self._part(at, part, rendered.keyboard if n == last else None)
            if message is None:
                break
            sent.append(message)
        return sent

    async def _part(self, place: Place, part: Part, keyboard: InlineKeyboardMarkup | None) -> Message | None:
        html_first = True
        for attempt in range(1, ATTEMPTS + 1):
            await self.gate.wait(place.chat_id, group=place.group)
            try:
                return await call(self._request(place, part, keyboard, html=html_first), target=TARGET)
            except MarkupRefused as exc:
                if not html_first:
                    break
                log.warning(
                    "telegram: chat %s refused our HTML (%s); answering as plain text", place.chat_id, exc.detail
                )
                html_first = False
            except RateLimited as exc:
                self.gate.hold(place.chat_id, exc.retry_after)
                log.warning("telegram: 429 answering in chat %s (try %d of %d)", place.chat_id, attempt, ATTEMPTS)
            except TransientChatError as exc:
                log.warning("telegram: answering in chat %s failed: %s (try %d)", place.chat_id, exc.detail, attempt)
                await self.gate.sleep(TRANSIENT_WAIT)
            except ChatError as exc:
                log.warning("telegram: chat %s refused our answer: %s", place.chat_id, exc.detail)
                return None
        log.warning("telegram: gave up answering in chat %s", place.chat_id)
        return None

    def _request(
        self, place: Place, part: Part, keyboard: InlineKeyboardMarkup | None, *, html: bool
    ) -> Awaitable[Message]:
        reply = (
            ReplyParameters(place.reply_to, allow_sending_without_reply=True) if place.reply_to is not None else None
        )
        return self.bot.send_message(
            place.chat_id,
            part.html if html else part.text,
            parse_mode=ParseMode.HTML if html else None,
            reply_markup=keyboard,
            message_thread_id=place.topic,
            reply_parameters=reply,
            link_preview_options=NO_PREVIEW,
        )
