"""Who a thread post should notify: the ``mentions`` of a page (``services/paging``), read from the
outbox message's payload at the border, for each platform's own mention syntax."""

from __future__ import annotations

from typing import Any

from bot.core.incidents import OutboxMessage


def mentions(message: OutboxMessage) -> list[dict[str, Any]]:
    """The people a post names to notify (each ``{name, slack, telegram, telegram_username}``)."""
    found = message.payload.get("mentions")
    return [m for m in found if isinstance(m, dict)] if isinstance(found, list) else []


def slack_ids(message: OutboxMessage) -> list[str]:
    return [str(m["slack"]) for m in mentions(message) if m.get("slack")]


def telegram_people(message: OutboxMessage) -> list[tuple[str, str]]:
    """(user id, name) of the people with a Telegram id."""
    return [(str(m["telegram"]), str(m.get("name") or m["telegram"])) for m in mentions(message) if m.get("telegram")]
