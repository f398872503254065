"""The Telegram sender: one thread per incident in the incident's chat, the status card edited in place.

The chat is ``chat_of(incident)`` (the service's ``chat.telegram_chat``, else ``TELEGRAM_CHAT_ID``: the
composition root decides). Whether it is a forum is asked once per chat with ``getChat`` and cached,
so nothing has to be configured twice; a forum whose topics the bot may not manage falls back to the
plain layout. What each outbox message does:

- ``opened``: in a forum supergroup, a topic named ``"<service> <status> #<id>"`` (at most 128
  characters) and the status card with its inline keyboard posted in it; elsewhere the status card is
  posted as the root message. The thread is saved as ``ChatThread(target="telegram", channel=<chat
  id>, root=<card message_id>, topic=<message_thread_id or None>)``. The topic is saved as soon as it
  exists, so a retry after a failure posts the card in it instead of opening a second topic.
- ``updated``: ``editMessageText`` of the card with the keyboard (``message is not modified`` is
  success; a card someone deleted is posted again and becomes the new root).
- ``resolved``: the card edited (the keyboard goes, a resolved incident has no buttons) and the topic
  renamed ``"✅ <service> <status> #<id>"`` and closed. (The services post the "Resolved …" line
  themselves; the bot, an admin that manages topics, may still post in a closed topic.) A card update
  of an incident that fires again reopens the topic under its plain name.
- ``post``: the blocks as one or more messages, replies to the card (``reply_parameters``) or, in a
  forum, messages in the topic; the parts of a long post follow in order.

A card kind arriving before the thread exists starts it; a post arriving first starts it with the card
as it is now. What one outbox message already did is not done twice when the outbox retries it after
a 429 or a network failure: the topic and the card are in the store as soon as Telegram has them, and
the parts of a post and the topic's rename and close are remembered (in memory) until it is delivered.
When Telegram refuses the HTML (``can't parse entities``), the same content is sent as plain text
rather than lost.

Pace: the outbox paces the ``telegram`` target (:data:`PER_CHAT_INTERVAL`, :data:`GROUP_BURST` per
:data:`GROUP_WINDOW`); every request that writes to a chat also passes a :class:`FloodGate`, shared by
everything that writes with the same bot (the outbox, replies to commands), which keeps Telegram's
limits across chats and callers: 1 message/s per chat, 20/min per group, 30/s overall.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from html import escape
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ChatType, ParseMode
from telegram.request import HTTPXRequest

from bot.adapters.mentions import telegram_people
from bot.adapters.telegram.errors import MarkupRefused, MessageGone, NotModified, call
from bot.adapters.telegram.html import MAX_TEXT_UNITS, Part, Rendered, render, render_card, utf16_units
from bot.core.blocks import Block
from bot.core.cards import status_card
from bot.core.incidents import ChatThread, Incident, OutboxMessage
from bot.core.store import Store
from bot.errors import ChatRejected, ConfigError, RateLimited, TransientChatError

log = logging.getLogger(__name__)

#: The outbox target name of this sender.
TARGET = "telegram"
#: Where the Bot API lives unless ``TELEGRAM_API_URL`` says otherwise (a local Bot API server works too).
DEFAULT_API_URL = "https://api.telegram.org/bot"
#: Telegram's limits (``telegram.constants.FloodLimit``): one message a second per chat, twenty a minute
#: per group, thirty a second overall. The outbox's pace for this target is
#: ``Pace(interval=PER_CHAT_INTERVAL, burst=GROUP_BURST, window=GROUP_WINDOW)``.
PER_CHAT_INTERVAL = 1.0
GROUP_BURST = 20
GROUP_WINDOW = 60.0
OVERALL_PER_SECOND = 30
NO_PREVIEW = LinkPreviewOptions(is_disabled=True)
#: Telegram's limit on a forum topic's name.
MAX_TOPIC_NAME = 128

T = TypeVar("T")
Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]
#: ``chat_of(incident)``: the chat (id or ``@username``) the incident's thread belongs in, if any.
ChatOf = Callable[[Incident], str | None]


def api_base_url(api_url: str) -> str:
    """PTB's ``base_url`` for a Bot API URL: ``…/bot`` (PTB appends the token), ``{token}`` templates as
    given; a server URL without the ``/bot`` path gets it."""
    if "{token}" in api_url:
        return api_url
    api_url = api_url.rstrip("/")
    return api_url if api_url.endswith("/bot") else api_url + "/bot"


def telegram_bot(token: str, api_url: str = DEFAULT_API_URL, *, timeout: float = 10.0) -> Bot:
    """A ``telegram.Bot`` for ``token`` on ``api_url`` (``TELEGRAM_API_URL``), with bounded HTTP timeouts:
    5 s to connect or to get a pooled connection, ``timeout`` s to write or read (long polls add their
    own wait on top). Use it as ``async with bot:`` (that calls ``getMe``)."""
    if not token.strip():
        raise ConfigError("TELEGRAM_BOT_TOKEN", "is empty")
    base = api_base_url(api_url)
    files = base[: -len("/bot")] + "/file/bot" if base.endswith("/bot") else base
    request = HTTPXRequest(
        connection_pool_size=16, connect_timeout=5.0, read_timeout=timeout, write_timeout=timeout, pool_timeout=5.0
    )
    updates = HTTPXRequest(
        connection_pool_size=1, connect_timeout=5.0, read_timeout=timeout, write_timeout=timeout, pool_timeout=5.0
    )
    return Bot(token, base_url=base, base_file_url=files, request=request, get_updates_request=updates)


class FloodGate:
    """Keeps every write of one bot within Telegram's limits, across chats and callers.

    ``await gate.wait(chat, group=...)`` returns when a message may go to ``chat`` now: at most
    ``per_chat_burst`` to that chat in any ``per_chat_burst × per_chat_interval`` s (1: at least
    ``per_chat_interval`` s after the last one; Telegram tolerates short bursts, so ``serve`` lets a
    topic's creation and its first message go together) and after any :meth:`hold`, at most
    ``group_burst`` per ``group_window`` s to a group, at most ``overall_rate`` per second in all. Sends
    are recorded when they are let through, so concurrent callers never overshoot. Time is injected.
    """

    def __init__(
        self,
        *,
        per_chat_interval: float = PER_CHAT_INTERVAL,
        per_chat_burst: int = 1,
        group_burst: int = GROUP_BURST,
        group_window: float = GROUP_WINDOW,
        overall_rate: int = OVERALL_PER_SECOND,
        now: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if per_chat_interval < 0 or per_chat_burst < 1 or group_burst < 1 or group_window <= 0 or overall_rate < 1:
            raise ValueError("invalid flood gate settings")
        self.per_chat_interval = per_chat_interval
        self.per_chat_burst = per_chat_burst
        self.group_burst = group_burst
        self.group_window = group_window
        self.overall_rate = overall_rate
        self.now = now
        self.sleep = sleep
        self._recent: dict[str, deque[float]] = {}  # chat → its last ``per_chat_burst`` sends
        self._held: dict[str, float] = {}
        self._groups: dict[str, deque[float]] = {}
        self._all: deque[float] = deque(maxlen=overall_rate)

    def ready_at(self, chat: str | int, *, group: bool, now: float | None = None) -> float:
        """The earliest time (on ``now``'s clock; ``now``: read it once, so it never runs ahead of the
        caller's reading) a message may go to ``chat``."""
        key = str(chat)
        at = self.now() if now is None else now
        recent = self._recent.get(key)
        if recent is not None and len(recent) >= self.per_chat_burst:
            at = max(at, recent[0] + self.per_chat_interval * self.per_chat_burst)
        at = max(at, self._held.get(key, at))
        sent = self._groups.get(key)
        if group and sent is not None and len(sent) >= self.group_burst:
            at = max(at, sent[0] + self.group_window)
        if len(self._all) >= self.overall_rate:
            at = max(at, self._all[0] + 1.0)
        return at

    async def wait(self, chat: str | int, *, group: bool) -> float:
        """Wait until a message may go to ``chat``, record it, and return the seconds waited."""
        started = self.now()
        while True:
            now = self.now()
            at = self.ready_at(chat, group=group, now=now)
            if at <= now:
                key = str(chat)
                self._recent.setdefault(key, deque(maxlen=self.per_chat_burst)).append(now)
                self._groups.setdefault(key, deque(maxlen=self.group_burst)).append(now)
                self._all.append(now)
                return now - started
            await self.sleep(at - now)

    def hold(self, chat: str | int, seconds: float) -> None:
        """Nothing more to ``chat`` for ``seconds`` (Telegram answered 429 with ``retry_after``)."""
        self._held[str(chat)] = max(self._held.get(str(chat), 0.0), self.now() + seconds)


@dataclass(frozen=True)
class _Chat:
    """A chat as getChat described it: the numeric id, whether it is a forum and whether a group."""

    id: int
    forum: bool
    group: bool


def topic_name(incident: Incident, prefix: str = "") -> str:
    """``"<service> <status> #<id>"`` (``prefix`` first), the service cut so the whole is ≤ 128."""
    status = str(incident.status) if incident.status is not None else "5xx"
    tail = f" {status} #{incident.id}"
    room = MAX_TOPIC_NAME - utf16_units(prefix + tail)
    service = incident.service or "unrouted"
    while utf16_units(service) > room:
        service = service[:-1]
    return (prefix + service + tail)[:MAX_TOPIC_NAME]


def _with_mentions(post: Rendered, people: list[tuple[str, str]]) -> Rendered:
    """The post with its first message starting by mentioning ``people`` (a page pings them); the
    mentions go in a message of their own when the first one has no room left."""
    if not people:
        return post
    html_names = " ".join(f'<a href="tg://user?id={uid}">{escape(name)}</a>' for uid, name in people)
    text_names = " ".join(name for _, name in people)
    first, rest = post.parts[0], post.parts[1:]
    if utf16_units(text_names) + 1 + first.units <= MAX_TEXT_UNITS:
        first = Part(f"{html_names}\n{first.html}", f"{text_names}\n{first.text}")
        return Rendered((first, *rest), post.keyboard)
    return Rendered((Part(html_names, text_names), *post.parts), post.keyboard)


class TelegramSender:
    """The ChatSender of the ``telegram`` target (see the module docstring)."""

    def __init__(
        self,
        bot: Bot,
        store: Store,
        chat_of: ChatOf,
        clock: Clock,
        *,
        gate: FloodGate | None = None,
        target: str = TARGET,
        timeout: float = 120.0,
    ) -> None:
        self.bot = bot
        self.store = store
        self.chat_of = chat_of
        self.clock = clock
        self.gate = gate or FloodGate()
        self.target = target
        self.timeout = timeout
        self._chats: dict[str, _Chat] = {}
        self._done: dict[str, set[str]] = {}  # outbox message id → steps Telegram already has
        self._topic_closed: dict[tuple[int, int], bool] = {}  # (chat, topic) → closed, as we last left it

    def lane(self, incident: Incident) -> str | None:
        """Telegram's limits are per chat (:class:`~bot.core.chat.PerChat`); the flood gate keeps the
        overall one."""
        chat = self.chat_of(incident)
        return str(chat) if chat else None

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                await self._send(message, blocks, incident)
        except TimeoutError as exc:
            raise TransientChatError(f"not done within {self.timeout:g}s", target=self.target) from exc
        except ChatRejected:
            self._done.pop(message.id, None)
            raise
        self._done.pop(message.id, None)

    async def _send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        thread = await self.store.get_thread(incident.id, self.target)
        if thread is not None:
            chat = await self._chat(thread.channel)
        else:
            wanted = self.chat_of(incident)
            if not wanted:
                raise ChatRejected(
                    f"no Telegram chat for incident #{incident.id} (service {incident.service or 'unrouted'}):"
                    " set chat.telegram_chat or TELEGRAM_CHAT_ID",
                    target=self.target,
                )
            chat = await self._chat(wanted)
        if message.kind == "post":
            if thread is None or not thread.root:
                card = render_card(status_card(incident, None), incident.id)
                thread = await self._open(chat, incident, card, thread)
            await self._post(message, chat, thread, render(blocks, incident.id))
            return
        card = render_card(blocks, incident.id)
        if not card.parts:  # nothing to show: the card as the incident stands
            card = render_card(status_card(incident, None), incident.id)
        if thread is None or not thread.root:
            thread = await self._open(chat, incident, card, thread)
        else:
            thread = await self._edit_card(chat, thread, card)
        await self._topic_state(message, chat, thread, incident)

    # ------------------------------------------------------------------------------- the thread

    async def _chat(self, ref: str) -> _Chat:
        """What getChat says about ``ref`` (asked once per chat)."""
        known = self._chats.get(ref)
        if known is None:
            info = await call(self.bot.get_chat(ref), target=self.target)
            group = info.type in (ChatType.GROUP, ChatType.SUPERGROUP, ChatType.CHANNEL)
            known = _Chat(info.id, bool(info.is_forum), group)
            self._chats[ref] = self._chats[str(info.id)] = known
        return known

    def _thread(self, incident: Incident, sent: Message, topic: int | None) -> ChatThread:
        return ChatThread(
            incident_id=incident.id,
            target=self.target,
            channel=str(sent.chat.id),
            root=str(sent.message_id),
            topic=str(topic) if topic is not None else None,
            created_at=self.clock(),
        )

    async def _open(self, chat: _Chat, incident: Incident, card: Rendered, thread: ChatThread | None) -> ChatThread:
        """Start the incident's thread: a topic in a forum (unless one was made already), then the card."""
        topic = int(thread.topic) if thread is not None and thread.topic else None
        if chat.forum and topic is None:
            topic = await self._create_topic(chat, incident)
            if topic is not None:
                self._topic_closed[(chat.id, topic)] = False
                await self.store.save_thread(
                    ChatThread(
                        incident_id=incident.id,
                        target=self.target,
                        channel=str(chat.id),
                        root="",
                        topic=str(topic),
                        created_at=self.clock(),
                    )
                )
        sent = await self._send_part(chat, card.parts[0], keyboard=card.keyboard, topic=topic)
        opened = self._thread(incident, sent, topic)
        await self.store.save_thread(opened)
        log.info("telegram: incident #%s thread in chat %s (topic %s, card %s)", incident.id, chat.id, topic, sent.id)
        return opened

    async def _create_topic(self, chat: _Chat, incident: Incident) -> int | None:
        try:
            created = await self._write(chat, lambda: self.bot.create_forum_topic(chat.id, topic_name(incident)))
        except ChatRejected as exc:
            log.warning(
                "telegram: cannot open a topic in forum %s (%s); posting the incident as a message instead",
                chat.id,
                exc.detail,
            )
            self._chats = {k: (_Chat(c.id, False, c.group) if c.id == chat.id else c) for k, c in self._chats.items()}
            return None
        return created.message_thread_id

    async def _edit_card(self, chat: _Chat, thread: ChatThread, card: Rendered) -> ChatThread:
        part = card.parts[0]
        try:
            await self._edit(chat, int(thread.root), part, card.keyboard)
        except MessageGone:
            log.warning(
                "telegram: the card of incident #%s is gone from chat %s; posting it again", thread.incident_id, chat.id
            )
            topic = int(thread.topic) if thread.topic else None
            sent = await self._send_part(chat, part, keyboard=card.keyboard, topic=topic)
            thread = thread.model_copy(update={"root": str(sent.message_id)})
            await self.store.save_thread(thread)
        return thread

    async def _post(self, message: OutboxMessage, chat: _Chat, thread: ChatThread, post: Rendered) -> None:
        topic = int(thread.topic) if thread.topic else None
        reply_to = None if topic is not None else int(thread.root)
        post = _with_mentions(post, telegram_people(message))
        last = len(post.parts) - 1
        for n, part in enumerate(post.parts):
            keyboard = post.keyboard if n == last else None
            await self._step(
                message,
                f"part{n}",
                partial(self._send_part, chat, part, keyboard=keyboard, topic=topic, reply_to=reply_to),
            )

    async def _topic_state(self, message: OutboxMessage, chat: _Chat, thread: ChatThread, incident: Incident) -> None:
        """Keep a forum topic in step with the incident: named ``✅ …`` and closed once it is resolved,
        named plainly and open again when it reopens. What the topic last was is remembered, so an
        open incident's updates cost no extra request (one, to be sure, per topic after a restart)."""
        if not thread.topic:
            return
        topic = int(thread.topic)
        closed = not incident.open
        if self._topic_closed.get((chat.id, topic)) == closed:
            return
        name = topic_name(incident, "✅ " if closed else "")
        change = self.bot.close_forum_topic if closed else self.bot.reopen_forum_topic
        await self._step(
            message,
            "topic-name",
            lambda: self._unless_unchanged(chat, lambda: self.bot.edit_forum_topic(chat.id, topic, name)),
        )
        await self._step(message, "topic-state", lambda: self._unless_unchanged(chat, lambda: change(chat.id, topic)))
        self._topic_closed[(chat.id, topic)] = closed

    # ------------------------------------------------------------------------------ the requests

    async def _step(self, message: OutboxMessage, step: str, action: Callable[[], Awaitable[object]]) -> None:
        """Run ``action`` unless this outbox message already did ``step`` (in an earlier, failed attempt)."""
        done = self._done.setdefault(message.id, set())
        if step not in done:
            await action()
            done.add(step)

    async def _write(self, chat: _Chat, request: Callable[[], Awaitable[T]]) -> T:
        """One request that writes to ``chat``: through the flood gate, PTB's errors translated; a 429
        also holds the gate for that chat."""
        await self.gate.wait(chat.id, group=chat.group)
        try:
            return await call(request(), target=self.target)
        except RateLimited as exc:
            self.gate.hold(chat.id, exc.retry_after)
            raise

    async def _unless_unchanged(self, chat: _Chat, request: Callable[[], Awaitable[object]]) -> None:
        with contextlib.suppress(NotModified):
            await self._write(chat, request)

    async def _send_part(
        self,
        chat: _Chat,
        part: Part,
        *,
        keyboard: InlineKeyboardMarkup | None = None,
        topic: int | None = None,
        reply_to: int | None = None,
    ) -> Message:
        """One message (HTML; the same text plain if Telegram refuses the markup)."""
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to is not None else None

        def request(text: str, mode: str | None) -> Callable[[], Awaitable[Message]]:
            return lambda: self.bot.send_message(
                chat.id,
                text,
                parse_mode=mode,
                reply_markup=keyboard,
                message_thread_id=topic,
                reply_parameters=reply,
                link_preview_options=NO_PREVIEW,
            )

        try:
            return await self._write(chat, request(part.html, ParseMode.HTML))
        except MarkupRefused as exc:
            log.warning("telegram: chat %s refused our HTML (%s); sending it as plain text", chat.id, exc.detail)
            return await self._write(chat, request(part.text, None))

    async def _edit(self, chat: _Chat, message_id: int, part: Part, keyboard: InlineKeyboardMarkup | None) -> None:
        """Edit a message's text and keyboard ("not modified" is success; plain text if HTML is refused)."""

        def request(text: str, mode: str | None) -> Callable[[], Awaitable[object]]:
            return lambda: self.bot.edit_message_text(
                text,
                chat_id=chat.id,
                message_id=message_id,
                parse_mode=mode,
                reply_markup=keyboard,
                link_preview_options=NO_PREVIEW,
            )

        try:
            await self._unless_unchanged(chat, request(part.html, ParseMode.HTML))
        except MarkupRefused as exc:
            log.warning("telegram: chat %s refused our HTML (%s); editing it as plain text", chat.id, exc.detail)
            await self._unless_unchanged(chat, request(part.text, None))
