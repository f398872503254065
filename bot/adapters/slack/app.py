"""The inbound half of the Slack adapter: ``/incident`` commands, the card's buttons and mentions, taken in
over HTTP (``POST /slack/events``, signature-verified) or Socket Mode, and handed to the chat operations.

:class:`SlackApp` wraps a slack-bolt ``AsyncApp`` (``process_before_response=False``: bolt answers Slack
as soon as a listener acknowledges, and the work goes on after):

- ``/incident TEXT`` is parsed at once (:func:`bot.core.chat_commands.parse`). A usage error is the
  acknowledgement itself: an ephemeral message with the error line and the help. A fast command is
  acknowledged empty and answered through ``response_url`` (ephemeral for a private reply, in the
  channel otherwise). A slow one (diagnose, runbook, explain) is acknowledged with "Working on it…" and
  run in the background; ``diagnose`` and ``runbook`` are answered in a thread (a root message in the
  channel naming the command and who asked, the result as its reply), ``explain`` with one message in
  the channel. When the bot cannot post there (not a member, a DM, a rate limit) the answer goes through
  ``response_url`` instead; a private reply (a refusal, a usage problem) always does.
- A click on a card button (``block_actions``, ``action_id`` one of
  :data:`~bot.core.cards.ACTIONS`, ``value`` the incident id) is acknowledged at once and acted on in
  the background; the reply is shown to the clicker alone (``chat.postEphemeral``, else
  ``response_url``). The card itself is edited by the outbox, not here.
- ``app_mention`` gets a short pointer to ``/incident help`` in a thread; other events are
  acknowledged and ignored.
- Replays and Events API redeliveries are answered 200 and ignored (:mod:`bot.adapters.slack.replay`).

Nothing that fails reaches Slack as a stack trace: an unexpected exception becomes a short reply with a
reference id that is also in the log. The Actor of a request is built by
:class:`~bot.adapters.slack.directory.Directory` (name, configured user groups). Background work is
tracked: :meth:`SlackApp.drain` waits for it and :meth:`SlackApp.stop` closes Socket Mode and waits.

slack-bolt reads ``SLACK_CLIENT_ID``/``SLACK_CLIENT_SECRET`` from the environment by itself and would
switch to multi-workspace OAuth; incident-bot is a single-workspace app, so that is refused.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import Callable, Collection, Coroutine
from typing import Any

from fastapi import FastAPI
from slack_bolt.adapter.fastapi.async_handler import AsyncSlackRequestHandler
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier
from slack_sdk.web.async_client import AsyncWebClient
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.adapters.slack.blocks import render
from bot.adapters.slack.directory import Directory
from bot.adapters.slack.errors import translate
from bot.adapters.slack.replay import ReplayGuard, ReplayMiddleware
from bot.adapters.slack.replies import Replier
from bot.core.blocks import Block, Code, Context, Section
from bot.core.cards import ACTIONS
from bot.core.chat_commands import USAGE, ChatReply, Operations, ParsedCommand, parse
from bot.errors import ConfigError, TransientChatError, UsageError

log = logging.getLogger(__name__)

COMMAND = "/incident"
WORKING = "Working on it…"
#: Slack errors that mean a token is wrong rather than Slack being unwell.
TOKEN_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type"}
)
_BUTTONS = re.compile("^(" + "|".join(re.escape(a) for a in ACTIONS) + ")$")

Json = dict[str, Any]


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _error_code(exc: SlackApiError) -> str:
    data = getattr(exc.response, "data", None)
    return str(data.get("error") or "") if isinstance(data, dict) else ""


def failure_text(ref: str) -> str:
    return f"Sorry, that failed unexpectedly (reference {ref}, in the bot's log)."


class SlackApp:
    """The Slack front door (see the module docstring). ``client`` is the bot's Web API client
    (:func:`~bot.adapters.slack.sender.slack_client`), ``ops`` the chat operations, ``signing_secret``
    ``SLACK_SIGNING_SECRET`` (needed for HTTP mode), ``app_token`` ``SLACK_APP_TOKEN`` (Socket Mode),
    ``groups`` the user groups named in the Slack allow lists, ``clock`` seconds since the epoch."""

    def __init__(
        self,
        client: AsyncWebClient,
        ops: Operations,
        *,
        signing_secret: str | None,
        app_token: str | None = None,
        groups: Collection[str] = (),
        clock: Callable[[], float] = time.time,
        timeout: float = 10.0,
        connect_timeout: float = 30.0,
    ) -> None:
        if not client.token:
            raise ConfigError("SLACK_BOT_TOKEN", "not set: the Slack app needs the bot token (xoxb-…)")
        self.client = client
        self.ops = ops
        self.signing_secret = signing_secret or None
        self.app_token = app_token or None
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.directory = Directory(client, groups, clock=clock, timeout=timeout)
        self.replies = Replier(client, timeout=timeout)
        self.replays = ReplayGuard(clock)
        self.identity: Json | None = None
        self.bolt = AsyncApp(
            client=client,
            signing_secret=self.signing_secret or "",  # never None: bolt would read the environment
            process_before_response=False,
            request_verification_enabled=True,  # skipped by bolt in Socket Mode, where there is no signature
            name="incident-bot",
            logger=logging.getLogger("bot.adapters.slack.bolt"),
        )
        if self.bolt.oauth_flow is not None:
            raise ConfigError(
                "SLACK_CLIENT_ID", "incident-bot is a single-workspace app: unset SLACK_CLIENT_ID/SLACK_CLIENT_SECRET"
            )
        self.bolt.use(ReplayMiddleware(self.replays))
        self.bolt.command(COMMAND)(self._on_command)
        self.bolt.action(_BUTTONS)(self._on_button)
        self.bolt.event("app_mention")(self._on_mention)
        self.bolt.event(re.compile(".*"))(self._on_other_event)
        self.bolt.error(self._on_error)
        self._tasks: set[asyncio.Task[None]] = set()
        self._socket: AsyncSocketModeHandler | None = None

    # ------------------------------------------------------------------------------------- lifecycle

    def mount(self, api: FastAPI, path: str = "/slack/events") -> None:
        """Serve events, slash commands and interactivity at ``POST path`` (HTTP mode)."""
        if not self.signing_secret:
            raise ConfigError(
                "SLACK_SIGNING_SECRET",
                "not set: HTTP mode needs it to verify requests from Slack (or use Socket Mode with SLACK_APP_TOKEN)",
            )
        handler = AsyncSlackRequestHandler(self.bolt)
        verifier = SignatureVerifier(self.signing_secret)

        async def slack_events(request: Request) -> Response:
            body = await request.body()  # Starlette keeps it: bolt's handler reads the same bytes
            try:
                signed = verifier.is_valid_request(body, dict(request.headers))
            except ValueError:  # a timestamp that is not a number
                signed = False
            if not signed:
                log.info("slack: a request with a bad or stale signature was refused")
                return JSONResponse({"error": "invalid request"}, status_code=401)
            try:
                return await handler.handle(request)
            except ValueError:  # a signed body bolt cannot read (not JSON, not a form)
                log.warning("slack: a signed request could not be read")
                return JSONResponse({"error": "unreadable request"}, status_code=400)

        api.add_route(path, slack_events, methods=["POST"], include_in_schema=False)

    async def start(self, *, socket_mode: bool = True) -> None:
        """Check the bot token (``auth.test``, once) and, when ``socket_mode`` and an app token are given,
        connect Socket Mode. A refused token is a :class:`ConfigError` naming it; Slack being unreachable
        is a :class:`~bot.errors.ChatError`."""
        try:
            async with asyncio.timeout(self.timeout):
                answer = await self.client.auth_test()
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in TOKEN_ERRORS:
                raise ConfigError("SLACK_BOT_TOKEN", f"Slack refused the bot token ({error})") from exc
            raise translate(exc, method="auth.test") from exc
        except Exception as exc:
            raise translate(exc, method="auth.test") from exc
        self.identity = dict(answer.data) if isinstance(answer.data, dict) else {}
        log.info("slack: signed in as %s in team %s", self.identity.get("user"), self.identity.get("team_id"))
        if socket_mode and self.app_token:
            await self._connect(self.app_token)

    async def _connect(self, app_token: str) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                opened = await self.client.apps_connections_open(app_token=app_token)
        except SlackApiError as exc:
            error = _error_code(exc)
            if error in TOKEN_ERRORS:
                raise ConfigError("SLACK_APP_TOKEN", f"Slack refused the app-level token ({error})") from exc
            raise translate(exc, method="apps.connections.open") from exc
        except Exception as exc:
            raise translate(exc, method="apps.connections.open") from exc
        handler = AsyncSocketModeHandler(self.bolt, app_token=app_token, web_client=self.client)
        handler.client.wss_uri = str(opened["url"])
        try:
            async with asyncio.timeout(self.connect_timeout):
                await handler.connect_async()  # type: ignore[no-untyped-call]
        except BaseException as exc:
            await handler.close_async()  # type: ignore[no-untyped-call]
            if isinstance(exc, TimeoutError):
                raise TransientChatError("Slack Socket Mode: could not connect in time", target="slack") from exc
            raise
        self._socket = handler
        log.info("slack: Socket Mode connected")

    @property
    def connected(self) -> bool:
        """Whether a Socket Mode connection is held."""
        return self._socket is not None

    async def stop(self, grace: float = 5.0) -> None:
        """Close Socket Mode (if connected), then wait up to ``grace`` seconds for work in progress and
        cancel what is left."""
        socket, self._socket = self._socket, None
        if socket is not None:
            await socket.close_async()  # type: ignore[no-untyped-call]
        await self.drain(grace)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until the work started by requests so far is done (or ``timeout`` seconds have passed)."""
        deadline = None if timeout is None else asyncio.get_running_loop().time() + timeout
        while self._tasks:
            left = None if deadline is None else deadline - asyncio.get_running_loop().time()
            if left is not None and left <= 0:
                return
            await asyncio.wait(list(self._tasks), timeout=left)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    def _failed(what: str) -> str:
        """Log the exception being handled under a new reference id, and return the id."""
        ref = uuid.uuid4().hex[:8]
        log.exception("slack: %s failed unexpectedly (reference %s)", what, ref)
        return ref

    # ------------------------------------------------------------------------------------- commands

    async def _on_command(self, ack: AsyncAck, body: Json, respond: AsyncRespond) -> None:
        try:
            command = parse(_text(body.get("text")))
        except UsageError as exc:
            usage = render([Section(exc.user_message()), Code(tuple(USAGE.splitlines()))])
            await ack(text=usage.text, blocks=usage.blocks, response_type="ephemeral")
            return
        except Exception:
            await ack(text=failure_text(self._failed(f"{COMMAND} {_text(body.get('text'))[:40]!r}")))
            return
        if command.slow:
            await ack(text=WORKING, response_type="ephemeral")
        else:
            await ack()
        self._spawn(self._command(body, command, respond))

    async def _command(self, body: Json, command: ParsedCommand, respond: AsyncRespond) -> None:
        try:
            user, channel = _text(body.get("user_id")), _text(body.get("channel_id"))
            actor = await self.directory.actor(user, _text(body.get("user_name")) or None, channel)
            reply = await self.ops.run(actor, command)
            if reply.private or not command.slow or not await self._in_channel(actor.name, channel, command, reply):
                await self.replies.respond(respond, reply)
        except Exception:
            ref = self._failed(f"{COMMAND} {command.name}")
            await self.replies.respond(respond, ChatReply([Section(failure_text(ref))], private=True))

    async def _in_channel(self, asker: str, channel: str, command: ParsedCommand, reply: ChatReply) -> bool:
        """Post a slow command's answer in the channel: explain's as one message, the others as a root
        naming the command and the asker with the answer in its thread. False when Slack would not take it."""
        if command.name == "explain":
            blocks = [*reply.blocks, Context(f"{COMMAND} explain, asked by {asker}")]
            return await self.replies.post(channel, blocks, reply.incident_id) is not None
        shown = " ".join((command.name, *command.args))
        root = await self.replies.post(channel, [Section(f"{asker} asked: `{COMMAND} {shown}`")], None)
        if root is None:
            return False
        return await self.replies.post(channel, reply.blocks, reply.incident_id, thread_ts=root) is not None

    # -------------------------------------------------------------------------------------- buttons

    async def _on_button(self, ack: AsyncAck, body: Json, action: Json, respond: AsyncRespond) -> None:
        await ack()
        self._spawn(self._button(body, dict(action), respond))

    async def _button(self, body: Json, action: Json, respond: AsyncRespond) -> None:
        try:
            user = body.get("user") or {}
            container = body.get("container") or {}
            channel = _text((body.get("channel") or {}).get("id")) or _text(container.get("channel_id"))
            username = _text(user.get("username")) or _text(user.get("name")) or None
            actor = await self.directory.actor(_text(user.get("id")), username, channel)
            reply = await self.ops.act(actor, _text(action.get("action_id")), _text(action.get("value")))
            message = body.get("message") or {}
            root = _text(message.get("thread_ts")) or _text(message.get("ts")) or _text(container.get("message_ts"))
            if reply.private:
                in_thread = root if root != _text(message.get("ts")) else None
                if await self.replies.ephemeral(channel, actor.user, reply, in_thread):
                    return
            elif await self.replies.post(channel, reply.blocks, reply.incident_id, thread_ts=root or None) is not None:
                return
            await self.replies.respond(respond, reply, replace_original=False)
        except Exception:
            ref = self._failed(f"button {_text(action.get('action_id'))[:40]!r}")
            await self.replies.respond(
                respond, ChatReply([Section(failure_text(ref))], private=True), replace_original=False
            )

    # --------------------------------------------------------------------------------------- events

    async def _on_mention(self, event: Json) -> None:
        channel, ts = _text(event.get("channel")), _text(event.get("thread_ts")) or _text(event.get("ts"))
        if channel and ts:
            self._spawn(self._mentioned(channel, ts))

    async def _mentioned(self, channel: str, ts: str) -> None:
        try:
            blocks: list[Block] = [
                Section(f"I answer `{COMMAND}` commands (and the buttons on incident cards):"),
                Code(tuple(USAGE.splitlines())),
            ]
            await self.replies.post(channel, blocks, None, thread_ts=ts)
        except Exception:
            self._failed("answering a mention")

    async def _on_other_event(self, event: Json) -> None:
        log.debug("slack: event %s ignored", _text(event.get("type")))

    async def _on_error(self, error: Exception, body: Json) -> None:
        ref = uuid.uuid4().hex[:8]
        log.error("slack: a %s request failed (reference %s)", _text(body.get("type")), ref, exc_info=error)
