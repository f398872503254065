"""A local fake of the Slack Web API that answers like Slack, for tests that run the real slack_sdk/slack-bolt.

:class:`FakeSlack` is a Starlette app (served by :class:`~bot.testing.http_fake.FakeHttpServer` on
``127.0.0.1:0``) with the Web API under ``/api/<method>``: point a client at :attr:`FakeSlack.api_url`
(``AsyncWebClient(token=..., base_url=slack.api_url)``). It takes JSON and form bodies and query strings,
wants ``Authorization: Bearer <bot token>`` (``not_authed`` without one, ``invalid_auth`` for another),
and answers HTTP 200 ``{"ok": true, ...}`` in Slack's shapes, or ``{"ok": false, "error": ...}`` with the
codes of platforms.md §1.11–1.12, Block Kit limits included (``invalid_blocks`` with ``errors`` and
json-pointers, ``invalid_blocks_format``, ``msg_blocks_too_long``, ``msg_too_long``, ``no_text``).
Lengths are counted in UTF-16 code units, the stricter count.

It keeps every channel's messages (threads, edits, metadata) for tests to read (:meth:`FakeSlack.history`,
:meth:`FakeSlack.thread`), records every call with the time on its clock (:attr:`FakeSlack.calls`), and can
be scripted: :meth:`FakeSlack.fail` (429 with ``Retry-After``, 5xx, or an ``ok:false`` error, for a number
of calls or a number of seconds), :meth:`FakeSlack.stall` (answer late), :meth:`FakeSlack.strict_rate`
(Slack's special tier for ``chat.postMessage``: about one message a second per channel after a short burst,
then 429). Methods: ``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.delete``, ``chat.postEphemeral``,
``conversations.history``, ``conversations.replies``, ``usergroups.users.list``, ``users.info``,
``apps.connections.open`` (app token; returns a ``ws://`` URL with a ticket on this server under
:data:`SOCKET_MODE_PATH`), and ``POST /response_url/<id>``, a sink for slash-command and button
``response_url`` replies (:meth:`FakeSlack.response_url`, :meth:`FakeSlack.responses`).

Socket Mode: the WebSocket at :data:`SOCKET_MODE_PATH` takes only tickets ``apps.connections.open`` issued
(else HTTP 403), greets with Slack's ``hello``, and carries envelopes both ways: :meth:`FakeSlack.send_envelope`
delivers one (``slash_commands``, ``interactive``, ``events_api``) to one open connection (a random one,
as Slack does when an app holds several) and :meth:`FakeSlack.envelope` tells whether and how fast the
client acknowledged it (Slack shows the user an error when that takes over 3 seconds) and with what
payload. :meth:`FakeSlack.disconnect_socket_mode` sends Slack's ``disconnect`` (the client must reconnect).
:meth:`FakeSlack.slash_command`, :meth:`FakeSlack.block_actions` and :meth:`FakeSlack.event_callback`
build the payloads Slack sends (over HTTP form-encoded, over Socket Mode as the envelope's payload).

The server runs in a thread of its own; every read and write of the state holds one lock.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from bot.testing.http_fake import FakeHttpServer
from bot.testing.secrets import register

#: Where ``apps.connections.open`` points Socket Mode clients (``ws://127.0.0.1:PORT/link/?ticket=...``).
SOCKET_MODE_PATH = "/link/"
#: Slack's limits as the fake enforces them.
MAX_BLOCKS = 50
MAX_BLOCKS_CHARS = 13_000
MAX_TEXT = 40_000
_OBJECT_LIMIT = 3000
_BLOCK_TYPES = {"section", "header", "divider", "context", "actions", "markdown", "image", "rich_text", "input"}

Json = dict[str, Any]


def units(text: str) -> int:
    """Length in UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


# ----------------------------------------------------------------------------------- Block Kit checks


def _text_object(obj: object, ptr: str, limit: int, kinds: Iterable[str], errors: list[str]) -> None:
    if not isinstance(obj, dict) or obj.get("type") not in set(kinds) or not isinstance(obj.get("text"), str):
        errors.append(f"failed to match all allowed schemas [json-pointer:{ptr}]")
        return
    length = units(obj["text"])
    if length == 0:
        errors.append(f"must be more than 0 characters [json-pointer:{ptr}/text]")
    elif length > limit:
        errors.append(f"must be less than {limit + 1} characters [json-pointer:{ptr}/text]")


def _button(element: Json, ptr: str, errors: list[str]) -> None:
    _text_object(element.get("text"), f"{ptr}/text", 75, ["plain_text"], errors)
    for key, limit in (("value", 2000), ("url", 3000), ("action_id", 255)):
        value = element.get(key)
        if value is not None and (not isinstance(value, str) or units(value) > limit or not value):
            errors.append(f"must be between 1 and {limit} characters [json-pointer:{ptr}/{key}]")
    if element.get("style") not in (None, "primary", "danger"):
        errors.append(f"must be one of primary, danger [json-pointer:{ptr}/style]")


def _elements(block: Json, ptr: str, limit: int, errors: list[str]) -> list[Any]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        errors.append(f"must provide at least 1 item [json-pointer:{ptr}/elements]")
        return []
    if len(elements) > limit:
        errors.append(f"must provide no more than {limit} items [json-pointer:{ptr}/elements]")
    return elements


def _block(block: object, ptr: str, errors: list[str]) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        errors.append(f"failed to match all allowed schemas [json-pointer:{ptr}]")
        return
    kind = block["type"]
    if kind not in _BLOCK_TYPES:
        errors.append(f"unsupported type: {kind} [json-pointer:{ptr}/type]")
        return
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or not 0 < units(block_id) <= 255):
        errors.append(f"must be between 1 and 255 characters [json-pointer:{ptr}/block_id]")
    if kind == "section":
        if "text" not in block and "fields" not in block:
            errors.append(f"must contain text or fields [json-pointer:{ptr}]")
        if "text" in block:
            _text_object(block["text"], f"{ptr}/text", 3000, ["mrkdwn", "plain_text"], errors)
        if "fields" in block:
            fields = block["fields"]
            if not isinstance(fields, list) or not fields or len(fields) > 10:
                errors.append(f"must provide between 1 and 10 items [json-pointer:{ptr}/fields]")
            else:
                for n, obj in enumerate(fields):
                    _text_object(obj, f"{ptr}/fields/{n}", 2000, ["mrkdwn", "plain_text"], errors)
        if isinstance(block.get("accessory"), dict) and block["accessory"].get("type") == "button":
            _button(block["accessory"], f"{ptr}/accessory", errors)
    elif kind == "header":
        _text_object(block.get("text"), f"{ptr}/text", 150, ["plain_text"], errors)
    elif kind == "markdown":
        if not isinstance(block.get("text"), str) or not 0 < units(block["text"]) <= 12_000:
            errors.append(f"must be between 1 and 12000 characters [json-pointer:{ptr}/text]")
    elif kind == "context":
        for n, element in enumerate(_elements(block, ptr, 10, errors)):
            if not (isinstance(element, dict) and element.get("type") == "image"):
                _text_object(element, f"{ptr}/elements/{n}", _OBJECT_LIMIT, ["mrkdwn", "plain_text"], errors)
    elif kind == "actions":
        seen: set[str] = set()
        for n, element in enumerate(_elements(block, ptr, 25, errors)):
            if not isinstance(element, dict) or not isinstance(element.get("type"), str):
                errors.append(f"failed to match all allowed schemas [json-pointer:{ptr}/elements/{n}]")
                continue
            if element["type"] == "button":
                _button(element, f"{ptr}/elements/{n}", errors)
            action_id = element.get("action_id")
            if isinstance(action_id, str):
                if action_id in seen:
                    errors.append(f"action_id must be unique [json-pointer:{ptr}/elements/{n}/action_id]")
                seen.add(action_id)


def block_kit_errors(blocks: object, max_chars: int = MAX_BLOCKS_CHARS) -> tuple[str, list[str]] | None:
    """What Slack would say about ``blocks`` (already decoded from JSON): ``None`` when they are fine, else
    ``(error code, errors)``: ``invalid_blocks_format`` (not a list), ``invalid_blocks`` (with Slack's
    ``... [json-pointer:/blocks/N/...]`` messages) or ``msg_blocks_too_long`` (over ~13k serialized)."""
    if not isinstance(blocks, list):
        return "invalid_blocks_format", ["must be an array [json-pointer:/blocks]"]
    errors: list[str] = []
    if len(blocks) > MAX_BLOCKS:
        errors.append(f"must provide no more than {MAX_BLOCKS} items [json-pointer:/blocks]")
    ids: set[str] = set()
    for n, block in enumerate(blocks):
        _block(block, f"/blocks/{n}", errors)
        block_id = block.get("block_id") if isinstance(block, dict) else None
        if isinstance(block_id, str):
            if block_id in ids:
                errors.append(f"block_id must be unique in a message [json-pointer:/blocks/{n}/block_id]")
            ids.add(block_id)
    if errors:
        return "invalid_blocks", errors
    if units(json.dumps(blocks, ensure_ascii=False, separators=(",", ":"))) > max_chars:
        return "msg_blocks_too_long", []
    return None


# ---------------------------------------------------------------------------------------- records


@dataclass
class FakeMessage:
    """A message as the fake keeps it; ``edits`` holds the earlier versions (text, blocks) in order."""

    channel: str
    ts: str
    text: str
    blocks: list[Json]
    user: str
    bot_id: str | None
    thread_ts: str | None = None
    metadata: Json | None = None
    edits: list[tuple[str, list[Json]]] = field(default_factory=list)
    broadcast: bool = False

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def outbox_id(self) -> str | None:
        """``metadata.event_payload.outbox_id`` when the bot put one there."""
        payload = (self.metadata or {}).get("event_payload")
        value = payload.get("outbox_id") if isinstance(payload, dict) else None
        return value if isinstance(value, str) else None


@dataclass(frozen=True)
class Call:
    """One request to the fake: when (on its clock), which method, the arguments it got, the answer."""

    at: float
    method: str
    args: Json
    status: int
    response: Json

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    @property
    def error(self) -> str | None:
        error = self.response.get("error")
        return error if isinstance(error, str) else None


@dataclass
class Envelope:
    """A Socket Mode envelope the fake sent; ``ack`` is the payload of the client's acknowledgement
    (``{}`` when it carried none), ``ack_seconds`` how long it took (real time)."""

    envelope_id: str
    type: str
    payload: Json
    sent_at: float
    retry_attempt: int | None = None
    acked_at: float | None = None
    ack: Json | None = None

    @property
    def acked(self) -> bool:
        return self.acked_at is not None

    @property
    def ack_seconds(self) -> float | None:
        return None if self.acked_at is None else self.acked_at - self.sent_at


@dataclass(eq=False)
class _Link:
    """One open Socket Mode connection: what to send it goes through ``queue`` on the server's ``loop``;
    once told to ``disconnect`` it is ``retiring`` and gets no new envelopes."""

    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Json]
    retiring: bool = False


@dataclass
class _Rule:
    status: int
    error: str | None
    retry_after: float | None
    times: int | None
    seconds: float | None
    methods: frozenset[str] | None
    delay: float
    after_applying: bool
    started: float | None = None

    def spent(self, now: float) -> bool:
        if self.times is not None and self.times <= 0:
            return True
        return self.seconds is not None and self.started is not None and now >= self.started + self.seconds


class _Refusal(Exception):
    def __init__(self, error: str, **extra: Any) -> None:
        super().__init__(error)
        self.body: Json = {"ok": False, "error": error, **extra}


# ------------------------------------------------------------------------------------------ the fake


class FakeSlack:
    """The fake Web API; see the module docstring. ``channels`` maps channel ids to names (the bot is a
    member of each except those in ``not_member``), ``users`` user ids to names, ``usergroups`` group ids
    to member ids. ``clock`` (seconds since the epoch) times calls, ``ts`` values and scripted windows."""

    def __init__(
        self,
        *,
        token: str = "xoxb-fake-bot-token",
        app_token: str = "xapp-fake-app-token",
        channels: Mapping[str, str] | None = None,
        not_member: Iterable[str] = (),
        archived: Iterable[str] = (),
        users: Mapping[str, str] | None = None,
        usergroups: Mapping[str, Sequence[str]] | None = None,
        team_id: str = "T0FAKETEAM",
        bot_user_id: str = "U0INCIDENTBOT",
        bot_id: str = "B0INCIDENTBOT",
        app_id: str = "A0INCIDENTBOT",
        clock: Callable[[], float] = time.time,
        max_blocks_chars: int = MAX_BLOCKS_CHARS,
        extra_routes: Sequence[BaseRoute] = (),
    ) -> None:
        self.token, self.app_token = register(token, "FakeSlack bot token"), register(app_token, "FakeSlack app token")
        self.channels = dict(channels or {"C0INCIDENTS": "incidents"})
        self.not_member, self.archived = set(not_member), set(archived)
        self.users = {bot_user_id: "incident-bot", **dict(users or {})}
        self.usergroups = {k: list(v) for k, v in (usergroups or {}).items()}
        self.team_id, self.bot_user_id, self.bot_id, self.app_id = team_id, bot_user_id, bot_id, app_id
        self.clock = clock
        self.max_blocks_chars = max_blocks_chars
        self._defaults = (clock, max_blocks_chars, copy.deepcopy((self.channels, self.users, self.usergroups)))
        self._lock = threading.Lock()
        self._messages: dict[str, list[FakeMessage]] = {}
        self._calls: list[Call] = []
        self._rules: list[_Rule] = []
        self._rate: tuple[float, int] | None = None
        self._buckets: dict[str, tuple[float, float]] = {}
        self._last_us = 0
        self._responses: dict[str, list[Json]] = {}
        self.ephemerals: list[Json] = []
        self.server: FakeHttpServer | None = None
        self._tickets: set[str] = set()
        self._links: list[_Link] = []
        self._envelopes: dict[str, Envelope] = {}
        self._random = random.Random()
        self._methods: dict[str, Callable[[Json], Json]] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._post_message,
            "chat.update": self._update,
            "chat.delete": self._delete,
            "chat.postEphemeral": self._post_ephemeral,
            "conversations.history": self._history,
            "conversations.replies": self._replies,
            "usergroups.users.list": self._usergroup_users,
            "users.info": self._user_info,
        }
        routes: list[BaseRoute] = [
            Route("/api/apps.connections.open", self._connections_open, methods=["GET", "POST"]),
            Route("/api/{method}", self._api, methods=["GET", "POST"]),
            Route("/response_url/{key}", self._response_url, methods=["POST"]),
            WebSocketRoute(SOCKET_MODE_PATH, self._socket_mode),
            *extra_routes,
        ]
        self.app = Starlette(routes=routes)

    # ------------------------------------------------------------------------------------ lifecycle

    def start(self) -> FakeSlack:
        self.server = FakeHttpServer(self.app, name="fake-slack").start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` of the running server."""
        if self.server is None:
            raise RuntimeError("the fake Slack is not started")
        return self.server.url

    @property
    def api_url(self) -> str:
        """The ``base_url`` for slack_sdk clients: ``http://127.0.0.1:PORT/api/``."""
        return self.url + "/api/"

    def reset(self) -> None:
        """Forget messages, calls, scripted failures, the strict rate, ``response_url`` posts and Socket Mode
        envelopes (open connections stay open); put
        ``clock``, ``max_blocks_chars``, ``channels``, ``users`` and ``usergroups`` back as constructed
        (tests may change them)."""
        with self._lock:
            self.clock, self.max_blocks_chars, known = self._defaults
            self.channels, self.users, self.usergroups = copy.deepcopy(known)
            self._messages.clear()
            self._last_us = 0
            self._calls.clear()
            self._rules.clear()
            self._rate = None
            self._buckets.clear()
            self._responses.clear()
            self.ephemerals.clear()
            self._envelopes.clear()

    # ------------------------------------------------------------------------------------ scripting

    def fail(
        self,
        status: int = 503,
        *,
        error: str | None = None,
        retry_after: float | None = None,
        times: int | None = None,
        for_seconds: float | None = None,
        methods: Iterable[str] | None = None,
        after_applying: bool = False,
    ) -> FakeSlack:
        """Answer the next calls with a failure: HTTP ``status`` (429 carries ``Retry-After: retry_after``
        and ``error: ratelimited``; 5xx an HTML error page) or, with ``status=200``, ``ok:false`` ``error``.
        It lasts ``times`` calls, or ``for_seconds`` from the first call it answers (one call when neither
        is given). Rules queue up: the first one not yet spent that matches the method answers.
        ``after_applying`` does the call first (the message is posted) and then fails the answer: Slack
        took it but the bot never heard back."""
        if times is None and for_seconds is None:
            times = 1
        rule = _Rule(
            status,
            error,
            retry_after,
            times,
            for_seconds,
            frozenset(methods) if methods is not None else None,
            0.0,
            after_applying,
        )
        with self._lock:
            self._rules.append(rule)
        return self

    def stall(self, seconds: float, *, times: int = 1, methods: Iterable[str] | None = None) -> FakeSlack:
        """Answer the next ``times`` calls (normally) only after ``seconds`` of real time."""
        rule = _Rule(200, None, None, times, None, frozenset(methods) if methods else None, seconds, True)
        with self._lock:
            self._rules.append(rule)
        return self

    def strict_rate(self, per_second: float | None = 1.0, burst: int = 3) -> FakeSlack:
        """Enforce Slack's special tier on ``chat.postMessage``: ``burst`` messages at once per channel,
        then ``per_second``; over it, HTTP 429 with the seconds to wait. ``None`` switches it off."""
        with self._lock:
            self._rate = (per_second, burst) if per_second else None
            self._buckets.clear()
        return self

    # -------------------------------------------------------------------------------------- reading

    @property
    def calls(self) -> list[Call]:
        """Every request so far, in order (failed ones included)."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str, *, ok: bool | None = None) -> list[Call]:
        """The calls to ``method`` (only the successful ones with ``ok=True``, the failed with ``False``)."""
        return [c for c in self.calls if c.method == method and (ok is None or c.ok == ok)]

    def history(self, channel: str) -> list[FakeMessage]:
        """The channel's top-level messages, oldest first (copies)."""
        with self._lock:
            return [copy.deepcopy(m) for m in self._messages.get(channel, []) if not m.is_reply or m.broadcast]

    def thread(self, channel: str, ts: str) -> list[FakeMessage]:
        """The message ``ts`` and its replies, oldest first (copies); empty when there is no such message."""
        with self._lock:
            found = self._messages.get(channel, [])
            return [copy.deepcopy(m) for m in found if ts in (m.ts, m.thread_ts)]

    def message(self, channel: str, ts: str) -> FakeMessage | None:
        with self._lock:
            found = next((m for m in self._messages.get(channel, []) if m.ts == ts), None)
            return copy.deepcopy(found)

    def response_url(self, key: str | None = None) -> str:
        """A ``response_url`` on this fake (what Slack puts in a slash command or a button click)."""
        return f"{self.url}/response_url/{key or uuid.uuid4().hex}"

    def responses(self, key_or_url: str) -> list[Json]:
        """The JSON bodies posted to a ``response_url`` (by its key or the whole URL), in order."""
        key = key_or_url.rstrip("/").rsplit("/", 1)[-1]
        with self._lock:
            return copy.deepcopy(self._responses.get(key, []))

    # ------------------------------------------------------------------------------- Socket Mode

    @property
    def socket_connections(self) -> int:
        """How many Socket Mode connections are open (not counting those told to disconnect)."""
        with self._lock:
            return sum(1 for link in self._links if not link.retiring)

    def send_envelope(
        self, kind: str, payload: Json, *, retry_attempt: int | None = None, retry_reason: str | None = None
    ) -> str:
        """Deliver an envelope of ``kind`` (``slash_commands``, ``interactive``, ``events_api``) to one open
        connection, as Slack does; its ``envelope_id``. ``events_api`` envelopes carry ``retry_attempt``
        (0 unless given) and ``retry_reason``. Raises RuntimeError when no client is connected."""
        envelope_id = str(uuid.uuid4())
        message: Json = {
            "envelope_id": envelope_id,
            "payload": copy.deepcopy(payload),
            "type": kind,
            "accepts_response_payload": kind == "slash_commands",
        }
        if kind == "events_api" or retry_attempt is not None:
            message["retry_attempt"] = retry_attempt or 0
            message["retry_reason"] = retry_reason or ""
        with self._lock:
            live = [link for link in self._links if not link.retiring]
            if not live:
                raise RuntimeError("no Socket Mode client is connected to the fake Slack")
            link = self._random.choice(live)
            self._envelopes[envelope_id] = Envelope(
                envelope_id, kind, copy.deepcopy(payload), time.monotonic(), message.get("retry_attempt")
            )
        link.loop.call_soon_threadsafe(link.queue.put_nowait, message)
        return envelope_id

    def envelope(self, envelope_id: str) -> Envelope | None:
        """What became of an envelope sent (a copy): whether, when and how it was acknowledged."""
        with self._lock:
            found = self._envelopes.get(envelope_id)
            return copy.deepcopy(found)

    def disconnect_socket_mode(self, reason: str = "refresh_requested") -> int:
        """Send Slack's ``disconnect`` message on every open connection (clients should reconnect with a
        new URL; no new envelope goes to a connection told so); how many were told."""
        with self._lock:
            links = [link for link in self._links if not link.retiring]
            for link in links:
                link.retiring = True
        message: Json = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
        for link in links:
            link.loop.call_soon_threadsafe(link.queue.put_nowait, message)
        return len(links)

    async def _socket_mode(self, websocket: WebSocket) -> None:
        ticket = websocket.query_params.get("ticket", "")
        with self._lock:
            known = ticket in self._tickets
        if not known:
            await websocket.close(code=1008)  # before accept: the client gets HTTP 403
            return
        await websocket.accept()
        link = _Link(asyncio.get_running_loop(), asyncio.Queue())
        with self._lock:
            self._links.append(link)
            count = len(self._links)
        await websocket.send_json(
            {
                "type": "hello",
                "num_connections": count,
                "debug_info": {"host": "applink-fake", "build_number": 1, "approximate_connection_time": 18060},
                "connection_info": {"app_id": self.app_id},
            }
        )
        pump = asyncio.create_task(self._pump(websocket, link))
        try:
            while True:
                self._acknowledged(await websocket.receive_text())
        except WebSocketDisconnect:
            pass
        finally:
            pump.cancel()
            with self._lock:
                self._links.remove(link)

    @staticmethod
    async def _pump(websocket: WebSocket, link: _Link) -> None:
        while True:
            message = await link.queue.get()
            await websocket.send_text(json.dumps(message))

    def _acknowledged(self, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            return
        if not isinstance(message, dict):
            return
        with self._lock:
            found = self._envelopes.get(str(message.get("envelope_id")))
            if found is not None and found.acked_at is None:
                found.acked_at = time.monotonic()
                payload = message.get("payload")
                found.ack = copy.deepcopy(payload) if isinstance(payload, dict) else {}

    # ---------------------------------------------------------------------------------- payloads

    def slash_command(
        self, text: str, *, user: str, channel: str = "C0INCIDENTS", command: str = "/incident"
    ) -> dict[str, str]:
        """The fields Slack sends for ``command text`` typed by ``user`` in ``channel`` (form-encoded over
        HTTP, the envelope payload over Socket Mode), with a fresh ``response_url`` on this fake."""
        return {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "team_domain": "fake-workspace",
            "channel_id": channel,
            "channel_name": self.channels.get(channel, "directmessage"),
            "user_id": user,
            "user_name": self.users.get(user, user.lower()),
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": self.response_url(),
            "trigger_id": f"{uuid.uuid4().int % 10**13}.{uuid.uuid4().hex[:24]}",
        }

    def block_actions(self, action_id: str, value: str, *, user: str, channel: str, message_ts: str) -> Json:
        """The ``block_actions`` payload of a click on button ``action_id`` (with ``value``) of the bot's
        message ``message_ts`` in ``channel``, by ``user``."""
        with self._lock:
            found = next((m for m in self._messages.get(channel, []) if m.ts == message_ts), None)
            shaped = self._shape(found) if found is not None else {"type": "message", "ts": message_ts, "text": ""}
        return {
            "type": "block_actions",
            "user": {"id": user, "username": self.users.get(user, user.lower()), "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "fake-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": f"{uuid.uuid4().int % 10**13}.{uuid.uuid4().hex[:24]}",
            "team": {"id": self.team_id, "domain": "fake-workspace"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": self.channels.get(channel, "directmessage")},
            "message": shaped,
            "response_url": self.response_url(),
            "actions": [
                {
                    "action_id": action_id,
                    "block_id": f"incident-bot-{uuid.uuid4().hex}",
                    "text": {"type": "plain_text", "text": action_id, "emoji": True},
                    "value": value,
                    "type": "button",
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }

    def event_callback(self, event: Json) -> Json:
        """The Events API ``event_callback`` wrapping ``event`` (a fresh ``event_id``)."""
        return {
            "token": "fake-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": copy.deepcopy(event),
            "type": "event_callback",
            "event_id": f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True, "is_enterprise_install": False}
            ],
            "is_ext_shared_channel": False,
        }

    # ------------------------------------------------------------------------------------------ HTTP

    async def _args(self, request: Request) -> Json:
        args: Json = dict(request.query_params)
        body = await request.body()
        if not body:
            return args
        if request.headers.get("content-type", "").startswith("application/json"):
            try:
                decoded = json.loads(body)
            except ValueError:
                raise _Refusal("invalid_json") from None
            if not isinstance(decoded, dict):
                raise _Refusal("invalid_json")
            args.update(decoded)
        else:
            args.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return args

    def _token(self, request: Request, args: Json) -> str | None:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            return header[7:].strip()
        token = args.pop("token", None)
        return token if isinstance(token, str) and token else None

    def _record(self, method: str, args: Json, status: int, body: Json) -> None:
        with self._lock:
            self._calls.append(Call(self.clock(), method, copy.deepcopy(args), status, copy.deepcopy(body)))

    def _scripted(self, method: str) -> _Rule | None:
        now = self.clock()
        with self._lock:
            self._rules = [r for r in self._rules if not r.spent(now)]
            rule = next((r for r in self._rules if r.methods is None or method in r.methods), None)
            if rule is None:
                return None
            if rule.started is None:
                rule.started = now
            if rule.times is not None:
                rule.times -= 1
            return rule

    def _failure(self, rule: _Rule, method: str, args: Json) -> Response:
        if rule.status == 429:
            body: Json = {"ok": False, "error": rule.error or "ratelimited"}
            self._record(method, args, 429, body)
            wait = rule.retry_after if rule.retry_after is not None else 1
            return JSONResponse(body, status_code=429, headers={"Retry-After": f"{wait:g}"})
        if rule.status >= 500:
            self._record(method, args, rule.status, {"ok": False, "error": f"http_{rule.status}"})
            page = f"<html><body><h1>{rule.status}</h1>Slack is having trouble.</body></html>"
            return HTMLResponse(page, status_code=rule.status)
        body = {"ok": False, "error": rule.error or "fatal_error"}
        self._record(method, args, rule.status, body)
        return JSONResponse(body, status_code=rule.status)

    def _rate_limited(self, channel: str) -> float | None:
        """Seconds to wait when a post to ``channel`` now would pass the strict rate, else None (taken)."""
        with self._lock:
            if self._rate is None:
                return None
            rate, burst = self._rate
            now = self.clock()
            tokens, last = self._buckets.get(channel, (float(burst), now))
            tokens = min(float(burst), tokens + (now - last) * rate)
            if tokens < 1 - 1e-6:
                self._buckets[channel] = (tokens, now)
                return max(1.0, math.ceil((1 - tokens) / rate))
            self._buckets[channel] = (tokens - 1, now)
            return None

    async def _api(self, request: Request) -> Response:
        method = request.path_params["method"]
        try:
            args = await self._args(request)
        except _Refusal as refusal:
            self._record(method, {}, 200, refusal.body)
            return JSONResponse(refusal.body)
        token = self._token(request, args)
        handler = self._methods.get(method)
        body: Json
        if token is None:
            body = {"ok": False, "error": "not_authed"}
        elif token == self.app_token:
            body = {"ok": False, "error": "not_allowed_token_type"}
        elif token != self.token:
            body = {"ok": False, "error": "invalid_auth"}
        elif handler is None:
            body = {"ok": False, "error": "unknown_method", "req_method": method}
        else:
            rule = self._scripted(method)
            if rule is not None and rule.delay:
                await asyncio.sleep(rule.delay)
            if rule is not None and not rule.after_applying:
                return self._failure(rule, method, args)
            if method == "chat.postMessage":
                wait = self._rate_limited(self._channel_key(args.get("channel")))
                if wait is not None:
                    body = {"ok": False, "error": "ratelimited"}
                    self._record(method, args, 429, body)
                    return JSONResponse(body, status_code=429, headers={"Retry-After": f"{wait:g}"})
            try:
                body = handler(args)
            except _Refusal as refusal:
                body = refusal.body
            if rule is not None and rule.status != 200:
                return self._failure(rule, method, args)
        self._record(method, args, 200, body)
        headers = {"x-oauth-scopes": "chat:write,commands,users:read,usergroups:read,channels:history"}
        return JSONResponse(body, headers=headers)

    async def _connections_open(self, request: Request) -> Response:
        args = await self._args(request)
        token = self._token(request, args)
        if token is None:
            body: Json = {"ok": False, "error": "not_authed"}
        elif token == self.token:
            body = {"ok": False, "error": "not_allowed_token_type"}
        elif token != self.app_token:
            body = {"ok": False, "error": "invalid_auth"}
        else:
            ticket = uuid.uuid4().hex
            with self._lock:
                self._tickets.add(ticket)
            query = f"ticket={ticket}&app_id={self.app_id}"
            body = {"ok": True, "url": f"ws://{request.url.netloc}{SOCKET_MODE_PATH}?{query}"}
        self._record("apps.connections.open", args, 200, body)
        return JSONResponse(body)

    async def _response_url(self, request: Request) -> Response:
        key = request.path_params["key"]
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"ok": False, "error": "invalid_payload"}, status_code=400)
        with self._lock:
            posted = self._responses.setdefault(key, [])
            if len(posted) >= 5:  # Slack: up to five replies per response_url
                return JSONResponse({"ok": False, "error": "used_url"}, status_code=404)
            posted.append(body if isinstance(body, dict) else {"body": body})
        return JSONResponse({"ok": True})

    # -------------------------------------------------------------------------------------- methods

    def _channel_key(self, value: object) -> str:
        if not isinstance(value, str):
            return ""
        name = value.lstrip("#")
        return next((cid for cid, cname in self.channels.items() if cname == name), value)

    def _channel(self, args: Json, *, by_name: bool = False) -> str:
        """The channel id of ``args["channel"]``; only chat.postMessage takes a name (``#incidents``) too."""
        value = args.get("channel")
        channel = self._channel_key(value) if by_name else value if isinstance(value, str) else ""
        if channel not in self.channels:
            raise _Refusal("channel_not_found")
        if channel in self.not_member:
            raise _Refusal("not_in_channel")
        if channel in self.archived:
            raise _Refusal("is_archived")
        return channel

    def _next_ts(self) -> str:
        micros = max(int(self.clock() * 1_000_000), self._last_us + 1)
        self._last_us = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    @staticmethod
    def _decoded(args: Json, key: str, error: str) -> Any:
        value = args.get(key)
        if isinstance(value, str):
            try:
                return json.loads(value)
            except ValueError:
                raise _Refusal(error) from None
        return value

    def _content(self, args: Json) -> tuple[str | None, list[Json] | None]:
        """The ``text`` and ``blocks`` of a post or an update, checked like Slack does."""
        text = args.get("text")
        if text is not None and not isinstance(text, str):
            text = str(text)
        blocks = self._decoded(args, "blocks", "invalid_blocks_format")
        if blocks is not None:
            problem = block_kit_errors(blocks, self.max_blocks_chars)
            if problem is not None:
                code, errors = problem
                extra: Json = {"errors": errors, "response_metadata": {"messages": [f"[ERROR] {e}" for e in errors]}}
                raise _Refusal(code, **(extra if errors else {}))
        if text is not None and units(text) > MAX_TEXT:
            raise _Refusal("msg_too_long")
        return text, blocks

    def _metadata(self, args: Json) -> Json | None:
        metadata = self._decoded(args, "metadata", "invalid_metadata_format")
        if metadata is None:
            return None
        if (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            raise _Refusal("invalid_metadata_format")
        return metadata

    def _shape(self, message: FakeMessage, *, metadata: bool = True) -> Json:
        out: Json = {
            "type": "message",
            "user": message.user,
            "text": message.text,
            "ts": message.ts,
            "team": self.team_id,
        }
        if message.bot_id:
            out.update(bot_id=message.bot_id, app_id=self.app_id)
        if message.blocks:
            out["blocks"] = copy.deepcopy(message.blocks)
        if message.thread_ts:
            out["thread_ts"] = message.thread_ts
        if message.is_reply:
            out["parent_user_id"] = self.bot_user_id
            if message.broadcast:
                out["subtype"] = "thread_broadcast"
        else:
            replies = [m for m in self._messages.get(message.channel, []) if m.thread_ts == message.ts and m.is_reply]
            if replies:
                out.update(
                    thread_ts=message.ts,
                    reply_count=len(replies),
                    reply_users=sorted({m.user for m in replies}),
                    reply_users_count=len({m.user for m in replies}),
                    latest_reply=replies[-1].ts,
                )
        if message.edits:
            out["edited"] = {"user": message.user, "ts": message.ts}
        if metadata and message.metadata is not None:
            out["metadata"] = copy.deepcopy(message.metadata)
        return out

    def _auth_test(self, args: Json) -> Json:
        return {
            "ok": True,
            "url": "https://fake-workspace.slack.com/",
            "team": "Fake Workspace",
            "user": self.users[self.bot_user_id],
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _post_message(self, args: Json) -> Json:
        channel = self._channel(args, by_name=True)
        text, blocks = self._content(args)
        if not text and not blocks:
            raise _Refusal("no_text")
        metadata = self._metadata(args)
        with self._lock:
            thread_ts = args.get("thread_ts") or None
            if thread_ts is not None:
                parent = next((m for m in self._messages.get(channel, []) if m.ts == str(thread_ts)), None)
                if parent is None:
                    raise _Refusal("thread_not_found")
                thread_ts = parent.thread_ts if parent.is_reply else parent.ts  # a reply's ts means its parent
            broadcast = str(args.get("reply_broadcast", "")).lower() in ("1", "true") and thread_ts is not None
            message = FakeMessage(
                channel, self._next_ts(), text or "", blocks or [], self.bot_user_id, self.bot_id,
                thread_ts, metadata, broadcast=broadcast,
            )  # fmt: skip
            self._messages.setdefault(channel, []).append(message)
            return {"ok": True, "channel": channel, "ts": message.ts, "message": self._shape(message)}

    def _update(self, args: Json) -> Json:
        channel = self._channel(args)
        text, blocks = self._content(args)
        metadata = self._metadata(args)
        if text is None and blocks is None and metadata is None:
            raise _Refusal("no_text")
        with self._lock:
            message = next((m for m in self._messages.get(channel, []) if m.ts == str(args.get("ts"))), None)
            if message is None:
                raise _Refusal("message_not_found")
            if message.user != self.bot_user_id:
                raise _Refusal("cant_update_message")
            message.edits.append((message.text, copy.deepcopy(message.blocks)))
            if blocks is not None:
                message.blocks = blocks
            elif text is not None:
                message.blocks = []  # text without blocks removes the blocks (chat.update docs)
            if text is not None:
                message.text = text
            if metadata is not None:
                message.metadata = metadata or None
            return {
                "ok": True,
                "channel": channel,
                "ts": message.ts,
                "text": message.text,
                "message": self._shape(message),
            }

    def _delete(self, args: Json) -> Json:
        channel = self._channel(args)
        with self._lock:
            found = self._messages.get(channel, [])
            message = next((m for m in found if m.ts == str(args.get("ts"))), None)
            if message is None:
                raise _Refusal("message_not_found")
            if message.user != self.bot_user_id:
                raise _Refusal("cant_delete_message")
            found.remove(message)
            return {"ok": True, "channel": channel, "ts": message.ts}

    def _post_ephemeral(self, args: Json) -> Json:
        channel = self._channel(args)
        text, blocks = self._content(args)
        if not text and not blocks:
            raise _Refusal("no_text")
        user = args.get("user")
        if user not in self.users:
            raise _Refusal("user_not_in_channel")
        with self._lock:
            ts = self._next_ts()
            self.ephemerals.append(
                {"channel": channel, "user": user, "text": text or "", "blocks": blocks or [],
                 "thread_ts": args.get("thread_ts"), "message_ts": ts}
            )  # fmt: skip
        return {"ok": True, "message_ts": ts}

    @staticmethod
    def _page(items: list[Json], args: Json, default: int) -> tuple[list[Json], Json]:
        try:
            limit = max(1, min(999, int(args.get("limit") or default)))
            start = int(base64.b64decode(str(args.get("cursor") or "")).decode().removeprefix("next_ts:") or 0)
        except ValueError:
            raise _Refusal("invalid_cursor") from None
        page = items[start : start + limit]
        more = start + limit < len(items)
        cursor = base64.b64encode(f"next_ts:{start + limit}".encode()).decode() if more else ""
        return page, {"has_more": more, "response_metadata": {"next_cursor": cursor}}

    @staticmethod
    def _window(messages: list[FakeMessage], args: Json) -> list[FakeMessage]:
        inclusive = str(args.get("inclusive", "")).lower() in ("1", "true")
        oldest, latest = float(args.get("oldest") or 0), float(args.get("latest") or math.inf)

        def inside(ts: float) -> bool:
            return (oldest <= ts <= latest) if inclusive else (oldest < ts < latest)

        return [m for m in messages if inside(float(m.ts))]

    def _history(self, args: Json) -> Json:
        channel = self._channel(args)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        with self._lock:
            top = [m for m in self._messages.get(channel, []) if not m.is_reply or m.broadcast]
            shaped = [self._shape(m, metadata=with_metadata) for m in reversed(self._window(top, args))]
        page, extra = self._page(shaped, args, 100)
        return {"ok": True, "messages": page, "pin_count": 0, **extra}

    def _replies(self, args: Json) -> Json:
        channel = self._channel(args)
        with_metadata = str(args.get("include_all_metadata", "")).lower() in ("1", "true")
        with self._lock:
            found = self._messages.get(channel, [])
            parent = next((m for m in found if m.ts == str(args.get("ts"))), None)
            if parent is None:
                raise _Refusal("thread_not_found")
            root = parent.thread_ts if parent.is_reply else parent.ts
            thread = [m for m in found if m.ts == root or (m.thread_ts == root and m.is_reply)]
            shaped = [self._shape(m, metadata=with_metadata) for m in self._window(thread, args)]
        page, extra = self._page(shaped, args, 1000)
        return {"ok": True, "messages": page, **extra}

    def _usergroup_users(self, args: Json) -> Json:
        group = args.get("usergroup")
        if group not in self.usergroups:
            raise _Refusal("no_such_subteam")
        return {"ok": True, "users": list(self.usergroups[str(group)])}

    def _user_info(self, args: Json) -> Json:
        user = args.get("user")
        if user not in self.users:
            raise _Refusal("user_not_found")
        name = self.users[str(user)]
        is_bot = user == self.bot_user_id
        return {
            "ok": True,
            "user": {
                "id": user,
                "team_id": self.team_id,
                "name": name,
                "deleted": False,
                "real_name": name,
                "tz": "UTC",
                "is_bot": is_bot,
                "profile": {"real_name": name, "display_name": name, "team": self.team_id},
            },
        }
