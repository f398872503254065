"""Telegram in: updates by webhook or long polling, commands and card buttons handed to the chat
operations, the answers sent back (:class:`TelegramApp`).

**Updates.** A python-telegram-bot ``Application`` runs inside ``serve``'s lifespan (never
``run_polling()``, which owns the event loop). With a public URL (``telegram.webhook_url``) Telegram
POSTs each update to ``/telegram/webhook`` (:meth:`TelegramApp.mount`): the
``X-Telegram-Bot-Api-Secret-Token`` header must equal ``TELEGRAM_WEBHOOK_SECRET`` (compared in constant
time), else the answer is 403 and nothing is processed; a body that is not an Update's JSON gets 400
(Telegram itself never sends one; it retries any non-2xx answer "a reasonable amount of attempts"
and holds the updates after it meanwhile, so nothing else is answered with an error); a valid update
is queued and answered 200 at once, before it is handled. :meth:`TelegramApp.start` registers the
webhook with the secret and ``allowed_updates=[message, callback_query]``; every replica may serve
it. Without a URL the one elected replica long-polls ``getUpdates`` (PTB's updater; polling deletes
any webhook first). Telegram lets one poller per token through and answers the others 409
``Conflict``: that is logged, counted (:attr:`TelegramApp.conflicts`) and retried with PTB's backoff,
never a crash.

**Who is answered.** Only chats in ``chats`` (ids, or ``@username`` of public chats: the incident
chats and ``telegram.chats``) and private chats with the ``users`` given (the people the allow-lists
name): a stranger writing to the bot privately gets nothing, since reading incidents is open to anyone
the bot answers. Updates from any other chat are dropped before any handler, counted
(:attr:`TelegramApp.ignored`) and logged once per chat; a button pressed there is answered silently.
Who may acknowledge or run diagnoses is the operations' :class:`~bot.services.chatops.Policy`'s call.

**Commands** (:mod:`~bot.adapters.telegram.commands`; ``/cmd@botname`` works in groups, a command
for another bot is not ours): each becomes the chat grammar's command with an
:class:`~bot.core.chat_commands.Actor` (``telegram``, the user id, ``@username`` or first name, the
chat id). ``/explain`` reads the text after it, or else the message it replies to. Bad arguments get
the error, the command's usage line and the command list, as a reply to the asker. Slow commands
(diagnose, runbook, explain) get "Working on it…" at once and their result later, as replies to the
command. Other answers: ``private`` ones reply to the asker's message, the rest are posted in the
chat; in a forum topic everything stays in that topic. Every handler runs as its own task
(``block=False``), so a slow ``/diagnose`` never stalls other updates.

**Buttons** (callback data ``"<action>:<incident id>"``): the action starts at once and the query is
answered within ``answer_within`` seconds, long before Telegram's deadline: with the outcome as the
answer's text when the action is done by then and its reply is private and fits 200 characters,
else with "Working on it…" (or nothing), the outcome following as a reply to the card.

Answers go through :class:`~bot.adapters.telegram.replies.Replier`, which shares the outbox's
:class:`~bot.adapters.telegram.sender.FloodGate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import re
from collections.abc import Collection, Iterator
from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from telegram import Bot, CallbackQuery, Chat, Message, Update, User
from telegram.constants import ChatType
from telegram.error import Conflict, TelegramError
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.adapters.telegram.commands import (
    BY_NAME,
    COMMANDS,
    HELP_ALIASES,
    bot_commands,
    command_text,
    help_reply,
    replied_text,
    usage_reply,
)
from bot.adapters.telegram.errors import call
from bot.adapters.telegram.html import parse_callback_data
from bot.adapters.telegram.replies import Place, Replier, short_text
from bot.adapters.telegram.sender import TARGET, FloodGate
from bot.core.blocks import Section
from bot.core.chat_commands import Actor, ChatReply, Operations
from bot.errors import ChatError, ConfigError, UsageError

log = logging.getLogger(__name__)

#: The update types the bot asks for.
ALLOWED_UPDATES = ("message", "callback_query")
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
WEBHOOK_PATH = "/telegram/webhook"
WORKING = "Working on it…"
#: Telegram's rule for ``secret_token`` (``WebhookLimit``): 1–256 of ``A-Z a-z 0-9 _ -``.
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
#: A button's ``callback_data``: ``action:INCIDENT`` (a card's buttons) or ``action:REQUEST`` (a request's
#: Approve/Deny, its 10 hex digit id).
_CALLBACK = r"^[a-z_]{1,32}:(?:#?\d{1,12}|[0-9a-f]{10})$"

Context = ContextTypes.DEFAULT_TYPE


def actor(user: User, chat_id: int) -> Actor:
    """Who pressed or typed: ``telegram``, the user id, ``@username`` (else the first name), the chat."""
    name = f"@{user.username}" if user.username else user.first_name
    return Actor(platform="telegram", user=str(user.id), name=name, channel=str(chat_id))


class TelegramApp:
    """The inbound half of the Telegram adapter (see the module docstring).

    ``bot`` is the caller's (``telegram_bot(token, api_url)``, shared with the outbox's sender); the
    caller opens and closes it (``async with bot:``), :meth:`start` and :meth:`stop` leave its HTTP
    clients alone. ``webhook_url`` set means webhook mode (``webhook_secret`` then required), unset
    long polling. ``gate`` should be the sender's flood gate. ``grace``: seconds :meth:`stop` lets
    running commands finish before cancelling them.
    """

    def __init__(
        self,
        bot: Bot,
        ops: Operations,
        *,
        webhook_secret: str | None,
        webhook_url: str | None,
        chats: Collection[str],
        users: Collection[str] = (),
        gate: FloodGate | None = None,
        answer_within: float = 1.0,
        grace: float = 10.0,
        poll_timeout: float = 10.0,
    ) -> None:
        if webhook_secret is not None and not _SECRET.fullmatch(webhook_secret):
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        if webhook_url is not None and webhook_secret is None:
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "is not set: a webhook (telegram.webhook_url) needs one")
        self.bot = bot
        self.ops = ops
        self.webhook_secret = webhook_secret
        self.webhook_url = webhook_url
        self.chats = frozenset(str(c).strip() for c in chats)
        self._chat_names = frozenset(c.lower() for c in self.chats if c.startswith("@"))
        self.users = frozenset(str(u) for u in users)
        self.replier = Replier(bot, gate or FloodGate())
        self.answer_within = answer_within
        self.grace = grace
        self.poll_timeout = poll_timeout
        #: Updates from chats the bot does not serve, dropped.
        self.ignored = 0
        #: 409 Conflicts while polling (another instance polls with the same token).
        self.conflicts = 0
        #: Webhook requests refused for a missing or wrong secret.
        self.refused = 0
        self._ignored_chats: set[int] = set()
        self._inflight: set[asyncio.Task[Any]] = set()
        self._stopping = False
        builder = Application.builder().bot(bot).job_queue(None)
        if webhook_url is not None:
            builder = builder.updater(None)
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._add_handlers()

    def _add_handlers(self) -> None:
        app = self.app
        app.add_handler(TypeHandler(Update, self._screen), group=-1)
        only_new = filters.UpdateType.MESSAGE
        for name in [command.name for command in COMMANDS] + list(HELP_ALIASES):
            app.add_handler(CommandHandler(name, self._on_command, filters=only_new, block=False))
        app.add_handler(MessageHandler(filters.COMMAND & only_new, self._on_unknown, block=False))
        app.add_handler(CallbackQueryHandler(self._on_button, pattern=_CALLBACK, block=False))
        app.add_handler(CallbackQueryHandler(self._on_stale_button, block=False))
        app.add_error_handler(self._on_error)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self, poll: bool) -> None:
        """Start handling updates: ``getMe``, the command menu (``setMyCommands``), then the webhook
        (``setWebhook`` with the secret) or, when ``poll``, long polling. Telegram's refusals are raised
        as :class:`~bot.errors.ChatError` (a bad token: ``ChatRejected`` naming TELEGRAM_BOT_TOKEN)."""
        if poll and self.app.updater is None:
            raise ValueError("polling asked for, but telegram.webhook_url is set: this app serves the webhook")
        if not poll and self.webhook_url is None:
            raise ConfigError("telegram.webhook_url", "is not set: without a public URL the bot must poll")
        self._stopping = False
        try:
            await call(self.app.initialize(), target=TARGET)
            await self.app.start()
            await self._register_commands()
            if poll:
                assert self.app.updater is not None
                await call(
                    self.app.updater.start_polling(
                        timeout=timedelta(seconds=self.poll_timeout),
                        allowed_updates=list(ALLOWED_UPDATES),
                        error_callback=self._poll_error,
                    ),
                    target=TARGET,
                )
                log.info("telegram: polling for updates as @%s", self.bot.username)
            else:
                await call(
                    self.bot.set_webhook(
                        url=str(self.webhook_url),
                        secret_token=self.webhook_secret,
                        allowed_updates=list(ALLOWED_UPDATES),
                    ),
                    target=TARGET,
                )
                log.info("telegram: webhook set for @%s", self.bot.username)
        except BaseException:
            await self.stop()
            raise

    async def _register_commands(self) -> None:
        try:
            await call(self.bot.set_my_commands(bot_commands()), target=TARGET)
        except ChatError as exc:  # the commands work all the same; only the menu is missing
            log.warning("telegram: setMyCommands failed (%s); the command menu may be out of date", exc.detail)

    async def stop(self) -> None:
        """Stop polling, let running commands finish (up to ``grace`` seconds, then cancel them), stop
        the Application. The webhook stays registered: other replicas may still serve it."""
        self._stopping = True
        updater = self.app.updater
        if updater is not None and updater.running:
            await updater.stop()
        if not self.app.running:
            return
        stopping = asyncio.ensure_future(self.app.stop())
        done, _ = await asyncio.wait({stopping}, timeout=self.grace)
        if not done:
            log.warning("telegram: cancelling %d commands still running after %gs", len(self._inflight), self.grace)
            for task in list(self._inflight):
                task.cancel()
        await stopping

    @property
    def running(self) -> bool:
        return self.app.running and not self._stopping

    # -------------------------------------------------------------------------------- webhook

    def mount(self, api: FastAPI, path: str = WEBHOOK_PATH) -> None:
        """Serve Telegram's webhook at ``path`` on ``api`` (see the module docstring for the answers)."""
        if not self.webhook_secret:
            raise ConfigError("TELEGRAM_WEBHOOK_SECRET", "is not set: the webhook would take updates from anyone")
        expected = self.webhook_secret.encode()

        async def telegram_webhook(request: Request) -> Response:
            given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "replace")
            if not hmac.compare_digest(given, expected):
                self.refused += 1
                log.warning("telegram: webhook request without the right secret refused (%s)", _client(request))
                return JSONResponse({"error": "forbidden"}, status_code=403)
            try:
                data = json.loads(await request.body())
                update = Update.de_json(data, self.bot) if isinstance(data, dict) else None
            except Exception:  # any unreadable body is the sender's fault
                update = None
            if update is None:
                return JSONResponse({"error": "the body is not a Telegram Update (JSON)"}, status_code=400)
            if not self.running:  # Telegram retries: another replica, or this one once started
                return JSONResponse({"error": "not ready"}, status_code=503)
            await self.app.update_queue.put(update)
            return Response(status_code=200)

        api.add_api_route(path, telegram_webhook, methods=["POST"], include_in_schema=False)

    # ------------------------------------------------------------------------------- handlers

    def _serves(self, chat: Chat, user: User | None) -> bool:
        if str(chat.id) in self.chats:
            return True
        if chat.username and f"@{chat.username.lower()}" in self._chat_names:
            return True
        return chat.type == ChatType.PRIVATE and user is not None and str(user.id) in self.users

    async def _screen(self, update: Update, context: Context) -> None:
        """Drop (and count) every update from a chat the bot does not serve, before any handler."""
        chat = update.effective_chat
        if chat is not None and self._serves(chat, update.effective_user):
            return
        self.ignored += 1
        key = chat.id if chat is not None else 0
        if key not in self._ignored_chats:
            self._ignored_chats.add(key)
            log.warning("telegram: ignoring updates from chat %s (not in the served chats)", key)
        query = update.callback_query
        if query is not None:
            context.application.create_task(self._answer(query, None), update=update)
        raise ApplicationHandlerStop

    async def _on_command(self, update: Update, context: Context) -> None:
        message, user = update.message, update.effective_user
        if message is None or user is None:
            return
        with self._tracked():
            name, rest = command_text(message)
            asker = Place.of(message, reply=True)
            command = BY_NAME.get(name)
            if command is None or command.name == "help":
                await self.replier.send(asker, help_reply())
                return
            if command.name == "explain" and not rest.strip():
                rest = replied_text(message)
            try:
                parsed = command.parse(rest)
            except UsageError as exc:
                await self.replier.send(asker, usage_reply(command, exc))
                return
            if parsed.slow:
                await self.replier.send(asker, ChatReply([Section(WORKING)], private=True))
            reply = await self.ops.run(actor(user, message.chat.id), parsed)
            await self.replier.send(Place.of(message, reply=reply.private or parsed.slow), reply)

    async def _on_unknown(self, update: Update, context: Context) -> None:
        """A command that is none of ours: answered in a private chat or when addressed to this bot
        (``/x@botname``); in a group it may be another bot's, so nothing is said."""
        message = update.message
        if message is None:
            return
        name, rest = command_text(message)
        text = message.text or ""
        word = text[: len(text) - len(rest)].lower()
        addressed = self.bot.username is not None and word.endswith(f"@{self.bot.username.lower()}")
        if message.chat.type != ChatType.PRIVATE and not addressed:
            return
        with self._tracked():
            said = ChatReply([Section(f"Unknown command /{name[:32]}."), *help_reply().blocks], private=True)
            await self.replier.send(Place.of(message, reply=True), said)

    async def _on_button(self, update: Update, context: Context) -> None:
        query = update.callback_query
        if query is None:
            return
        card = query.message
        parsed = parse_callback_data(query.data or "")
        if card is None or parsed is None:
            await self._answer(query, "This button does not work any more.")
            return
        with self._tracked():
            action, incident = parsed
            task = asyncio.ensure_future(self.ops.act(actor(query.from_user, card.chat.id), action, incident))
            try:
                done, _ = await asyncio.wait({task}, timeout=self.answer_within)
                if not done:
                    await self._answer(query, WORKING)
                    reply = await task
                    text = None
                else:
                    reply = task.result()
                    text = short_text(reply) if reply.private else None
                    await self._answer(query, text)
            except asyncio.CancelledError:
                task.cancel()
                raise
            if text is None:
                if isinstance(card, Message):
                    where = Place.of(card, reply=True)
                else:  # a card too old for Telegram to show us: the chat is all we know
                    where = Place(card.chat.id, card.chat.type != ChatType.PRIVATE)
                await self.replier.send(where, reply)

    async def _on_stale_button(self, update: Update, context: Context) -> None:
        if update.callback_query is not None:
            await self._answer(update.callback_query, "This button does not work any more.")

    async def _answer(self, query: CallbackQuery, text: str | None) -> None:
        try:
            await call(query.answer(text=text), target=TARGET)
        except ChatError as exc:  # too late (the query expired) or Telegram is down: nothing to retry
            log.warning("telegram: could not answer a button press: %s", exc.detail)

    async def _on_error(self, update: object, context: Context) -> None:
        log.error("telegram: handling an update failed", exc_info=context.error)

    def _poll_error(self, exc: TelegramError) -> None:
        if isinstance(exc, Conflict):
            self.conflicts += 1
            log.warning(
                "telegram: another instance is polling with this bot token (%s); only one replica may poll. Retrying.",
                exc.message,
            )
        else:
            log.warning("telegram: polling failed (%s); retrying", exc.message)

    @contextlib.contextmanager
    def _tracked(self) -> Iterator[None]:
        """Record the running handler so :meth:`stop` can cancel it after the grace period."""
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            yield
        finally:
            if task is not None:
                self._inflight.discard(task)


def _client(request: Request) -> str:
    return request.client.host if request.client is not None else "unknown client"
