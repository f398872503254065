"""python-telegram-bot's exceptions as the chat port's errors, decided in this one place.

PTB picks its exception class from the HTTP status (``error.py``, ``_baserequest.py``); ``BadRequest`` and
``TimedOut`` both subclass ``NetworkError``, so the order below matters:

- ``RetryAfter`` (429) → :class:`~bot.errors.RateLimited` with its ``retry_after`` in seconds;
- ``BadRequest`` (400) → :class:`~bot.errors.ChatRejected`, or one of the narrower rejections a caller
  acts on: :class:`MarkupRefused` (``can't parse entities``: resend as plain text), :class:`NotModified`
  (``message is not modified``, ``TOPIC_NOT_MODIFIED``: the chat already shows it, a success),
  :class:`MessageGone` (``message to edit not found``: post the card again);
- ``TimedOut`` and any other ``NetworkError`` (5xx, connection failures) → :class:`~bot.errors.TransientChatError`;
- ``Forbidden`` (403: not a member, blocked), ``InvalidToken`` (401/404), ``ChatMigrated`` (the group
  became a supergroup), ``Conflict`` and anything else → :class:`~bot.errors.ChatRejected`.

PTB removes ``Bad Request: `` from Telegram's description and capitalises the rest (``Message is not
modified: ...``), so descriptions are matched case-insensitively.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.warnings import PTBDeprecationWarning

from bot.errors import ChatError, ChatRejected, RateLimited, TransientChatError

T = TypeVar("T")


class MarkupRefused(ChatRejected):
    """Telegram could not parse the message's HTML (``can't parse entities``)."""

    code = "chat_markup_refused"


class NotModified(ChatRejected):
    """The edit changes nothing Telegram shows (``message is not modified``, ``TOPIC_NOT_MODIFIED``)."""

    code = "chat_not_modified"


class MessageGone(ChatRejected):
    """The message to edit does not exist any more (deleted by someone)."""

    code = "chat_message_gone"


def retry_after_seconds(exc: RetryAfter) -> float:
    """The seconds a ``RetryAfter`` asks to wait, without PTB's deprecation warning.

    Since PTB 22.2 the public ``retry_after`` warns unless ``PTB_TIMEDELTA`` is set (and is then a
    ``timedelta``); the value itself is kept as a ``timedelta`` in ``_retry_after``. Either way works here.
    """
    stored = getattr(exc, "_retry_after", None)
    if isinstance(stored, timedelta):
        return stored.total_seconds()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _bad_request(exc: BadRequest, target: str) -> ChatRejected:
    text = exc.message.lower()
    if "can't parse entities" in text:
        return MarkupRefused(exc.message, target=target)
    if "message is not modified" in text or "topic_not_modified" in text:
        return NotModified(exc.message, target=target)
    if "message to edit not found" in text:
        return MessageGone(exc.message, target=target)
    return ChatRejected(exc.message, target=target)


def translate(exc: TelegramError, *, target: str) -> ChatError:
    """The chat port's error for a PTB exception (see the module docstring for the mapping)."""
    if isinstance(exc, RetryAfter):
        return RateLimited(retry_after_seconds(exc), target=target, detail="Telegram flood control")
    if isinstance(exc, BadRequest):
        return _bad_request(exc, target)
    if isinstance(exc, TimedOut | NetworkError):
        return TransientChatError(exc.message, target=target)
    if isinstance(exc, Forbidden):
        return ChatRejected(f"forbidden: {exc.message}", target=target)
    if isinstance(exc, InvalidToken):
        return ChatRejected("Telegram refused the bot token (TELEGRAM_BOT_TOKEN)", target=target)
    if isinstance(exc, ChatMigrated):
        return ChatRejected(
            f"the group became supergroup {exc.new_chat_id}: set its chat id to {exc.new_chat_id}", target=target
        )
    return ChatRejected(exc.message, target=target)


async def call(request: Awaitable[T], *, target: str) -> T:
    """Await one Bot API request, raising the chat port's error instead of PTB's."""
    try:
        return await request
    except TelegramError as exc:
        raise translate(exc, target=target) from exc
