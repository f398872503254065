"""The chat port: how the outbox hands a rendered message to the sender of one chat target.

A sender (Slack, Telegram, the console) gets the outbox message (its kind says what to do: ``opened``
starts the incident's thread with the status card, ``updated`` edits the card, ``resolved`` edits it and
says so in the thread, ``post`` replies in the thread), the chat-neutral blocks to show and the incident
as it is now. It translates its library's failures at the border:

- :class:`~bot.errors.RateLimited` (HTTP 429; ``retry_after`` seconds, from ``Retry-After``),
- :class:`~bot.errors.TransientChatError` (5xx, network errors, timeouts: retried with backoff),
- :class:`~bot.errors.ChatRejected` or another :class:`~bot.errors.ChatError` (permanent: not retried).

A sender bounds each call with a timeout of its own: the outbox waits for it.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from bot.core.blocks import Block
from bot.core.incidents import Incident, OutboxMessage


class ChatSender(Protocol):
    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        """Deliver ``message`` (rendered as ``blocks``) to this sender's chat; raise a ChatError if not."""
        ...


@runtime_checkable
class PerChat(Protocol):
    """A sender whose platform limits each chat on its own (a Slack channel, a Telegram chat): the outbox
    paces each chat as its own lane, so one busy chat never slows down another."""

    def lane(self, incident: Incident) -> str | None:
        """The chat ``incident``'s messages go to (None: not known; the target's shared lane)."""
        ...
