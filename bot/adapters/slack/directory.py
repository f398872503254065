"""Who a Slack user is, for the chat operations: an :class:`~bot.core.chat_commands.Actor`.

The name is ``@<username>`` from the request itself; only when the request carries none is it asked of
``users.info``. The groups are the configured user groups (``S…`` ids named in the allow lists) the user
is a member of, read with ``usergroups.users.list`` and kept for :data:`TTL` seconds. A look-up Slack
refuses or cannot answer is logged and counts as "not a member" (and is not kept), so an outage can only
take permissions away, never grant them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.errors import translate
from bot.core.chat_commands import Actor
from bot.errors import ChatError

log = logging.getLogger(__name__)

PLATFORM = "slack"
#: Seconds a user group's members and a user's name are kept.
TTL = 300.0


class Directory:
    """Builds Actors from Slack ids; ``groups`` are the user groups that matter (those in allow lists)."""

    def __init__(
        self,
        client: AsyncWebClient,
        groups: Collection[str] = (),
        *,
        clock: Callable[[], float] = time.time,
        ttl: float = TTL,
        timeout: float = 10.0,
    ) -> None:
        self.client = client
        self.groups = tuple(dict.fromkeys(g for g in groups if g))
        self.clock = clock
        self.ttl = ttl
        self.timeout = timeout
        self._members: dict[str, tuple[float, frozenset[str]]] = {}
        self._names: dict[str, tuple[float, str]] = {}

    async def actor(self, user: str, username: str | None, channel: str) -> Actor:
        """The Actor for ``user`` asking in ``channel`` (``username`` as the request gave it, if it did)."""
        name = f"@{username}" if username else await self.name_of(user)
        groups = await self.groups_of(user)
        return Actor(platform=PLATFORM, user=user, name=name, channel=channel, groups=groups)

    async def name_of(self, user: str) -> str:
        """``@<username>`` from ``users.info`` (kept for the TTL); ``@<user id>`` when Slack cannot say."""
        now = self.clock()
        kept = self._names.get(user)
        if kept is not None and now < kept[0] + self.ttl:
            return kept[1]
        answer = await self._ask("users.info", lambda: self.client.users_info(user=user))
        found = (answer or {}).get("user") or {}
        username = found.get("name") if isinstance(found, dict) else None
        if not isinstance(username, str) or not username:
            return f"@{user}"
        self._names[user] = (now, f"@{username}")
        return f"@{username}"

    async def groups_of(self, user: str) -> frozenset[str]:
        """The configured user groups ``user`` is a member of."""
        members = await asyncio.gather(*(self.members(group) for group in self.groups))
        return frozenset(group for group, found in zip(self.groups, members, strict=True) if user in found)

    async def members(self, group: str) -> frozenset[str]:
        """The members of ``group`` (kept for the TTL); empty, and not kept, when Slack does not answer."""
        now = self.clock()
        kept = self._members.get(group)
        if kept is not None and now < kept[0] + self.ttl:
            return kept[1]
        answer = await self._ask("usergroups.users.list", lambda: self.client.usergroups_users_list(usergroup=group))
        if answer is None:
            return frozenset()
        users = answer.get("users") or []
        found = frozenset(str(u) for u in users if isinstance(u, str))
        self._members[group] = (now, found)
        return found

    async def _ask(self, method: str, call: Callable[[], Any]) -> dict[str, Any] | None:
        try:
            async with asyncio.timeout(self.timeout):
                response = await call()
        except Exception as exc:
            error: ChatError = translate(exc, method=method)
            log.warning("slack: %s failed (%s); treated as unknown", method, error.user_message())
            return None
        data = response.data
        return dict(data) if isinstance(data, dict) else {}
