"""A local fake of the Telegram Bot API that behaves like the real one, limits and errors included.

``FakeTelegram`` is an ASGI app; serve it with :class:`bot.testing.http_fake.FakeHttpServer` and point
python-telegram-bot at it (``base_url=server.url + "/bot"``)::

    fake = FakeTelegram()
    with FakeHttpServer(fake, name="fake-telegram") as server:
        bot = telegram.Bot(fake.token, base_url=server.url + "/bot")

What it does like Telegram:

- **routes** ``/bot<TOKEN>/<method>`` (method names case-insensitive, GET or POST); a wrong token gets
  401 ``Unauthorized``, a path that is not a bot path or an unknown method 404 ``Not Found``;
- **decodes** parameters from the query string, ``application/x-www-form-urlencoded`` (what PTB sends),
  ``multipart/form-data`` and JSON bodies; in form fields numbers and booleans are text and nested
  objects (``reply_markup``, ``reply_parameters``, ``link_preview_options``, ``allowed_updates``,
  ``commands``, ``scope``) are JSON strings;
- **answers** ``{"ok": true, "result": ...}`` with real ``Message`` shapes (``message_id`` increasing per
  chat, ``date``, ``chat{id,type,title,is_forum}``, ``from``, ``message_thread_id`` and
  ``is_topic_message`` in topics, ``reply_to_message``, ``reply_markup``, ``edit_date``), and errors as
  ``{"ok": false, "error_code": N, "description": "..."}`` with Telegram's texts;
- **parses HTML** exactly as tdlib's ``parse_html`` does (the Bot API server's parser): only the allowed
  tags, balanced; ``&lt; &gt; &amp; &quot;`` and numeric entities decoded, any other ``&`` kept as it is;
  errors such as ``Bad Request: can't parse entities: Unsupported start tag "x" at byte offset 3``
  (offsets in UTF-8 bytes). The text after parsing is trimmed of surrounding whitespace and must be
  1..4096 UTF-16 code units (``message text is empty`` / ``message is too long``);
- **keeps** every chat's messages with their edits, forum topics (created, renamed, closed, with their
  service messages), inline keyboards (``callback_data`` 1..64 bytes, else ``BUTTON_DATA_INVALID``);
  editing to identical text and markup is ``message is not modified: ...``;
- **updates**: tests push them (:meth:`FakeTelegram.push_update`, :meth:`user_message`, :meth:`click`);
  ``getUpdates`` long-polls with ``offset``/``limit``/``timeout``; a second poller terminates the first
  with 409, and while a webhook is set ``getUpdates`` is refused with 409. With a webhook set (and
  ``insecure_webhooks=True`` for a plain-HTTP local URL), pushed updates are POSTed to it one at a
  time with ``X-Telegram-Bot-Api-Secret-Token``, retried until it answers 2xx;
- **scripted failures** (:meth:`FakeTelegram.fail`): 429 with ``parameters.retry_after``, 5xx, any
  status, for a number of calls or for a while; slow answers (:meth:`FakeTelegram.stall`); an optional
  **strict limiter** (:class:`Limits`:
  1 message/s per chat beyond a small burst, 20/min per group, 30/s overall) answers 429 like Telegram.

Driving and reading it from a test (state is guarded by one lock: the server runs in its own thread):

- chats: :func:`default_chats` (:data:`FORUM_CHAT_ID`, :data:`SUPERGROUP_CHAT_ID`, :data:`GROUP_CHAT_ID`,
  :data:`PRIVATE_CHAT_ID`), or ``FakeTelegram(chats=[FakeChat(...)])``, :meth:`~FakeTelegram.add_chat`;
  ``fake.chat(id).can_manage_topics = False`` takes the bot's topic rights away;
- updates in: :meth:`~FakeTelegram.user_message` (a person writes, ``/commands`` get their entity),
  :meth:`~FakeTelegram.click` (a button press; returns the callback query id),
  :meth:`~FakeTelegram.push_update` (any Update JSON); :attr:`~FakeTelegram.pending_updates`;
- what the bot did: :attr:`~FakeTelegram.calls` / :meth:`~FakeTelegram.calls_to` (method, decoded
  params, status, result or description, time on ``clock``), :meth:`~FakeTelegram.messages`,
  :meth:`~FakeTelegram.bot_messages`, :meth:`~FakeTelegram.message`, :meth:`~FakeTelegram.replies_to`
  (:class:`FakeMessage`: visible ``text``, ``entities``, ``edits``, ``buttons``, ``thread_id``,
  ``reply_to``, ``parse_mode``), :meth:`~FakeTelegram.topics` / :meth:`~FakeTelegram.topic`
  (:class:`FakeTopic`: ``name``, ``names``, ``closed``), :attr:`~FakeTelegram.answers` (callback
  answers), :meth:`~FakeTelegram.commands`, :attr:`~FakeTelegram.webhook` (:class:`WebhookState`, with
  the updates ``delivered``);
- trouble: :meth:`~FakeTelegram.fail`, :meth:`~FakeTelegram.stall`, :meth:`~FakeTelegram.enforce`,
  :meth:`~FakeTelegram.delete` (someone deletes a message); :meth:`~FakeTelegram.reset` forgets it all
  but the configured chats, so one server can serve a whole test module.

:func:`check_message_text` and :func:`parse_html` are the checks the server applies, usable directly.

Where tdlib and the Bot API documentation differ, this fake follows tdlib (the server's code): a
topic name longer than 128 characters is cut to 128 (``clean_name``), not refused, and a bare ``&`` or
``>`` in HTML text is kept, not refused. Texts marked *unverified* in the constants below were not
seen in a primary source.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, urlsplit

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

# ----------------------------------------------------------------------------------------- constants

TOKEN = "123456789:AAFakeTelegramTokenForIncidentBotTests"
BOT_USERNAME = "incident_test_bot"

FORUM_CHAT_ID = -1001000000001
SUPERGROUP_CHAT_ID = -1001000000002
GROUP_CHAT_ID = -4000000003
PRIVATE_CHAT_ID = 424242

#: The person behind pushed messages and clicks unless a test names another (private chat id = user id).
DEFAULT_USER: dict[str, Any] = {
    "id": PRIVATE_CHAT_ID,
    "is_bot": False,
    "first_name": "Alice",
    "username": "alice_oncall",
}

MAX_TEXT_UNITS = 4096
MAX_TOPIC_NAME = 128
MAX_CALLBACK_DATA = 64
DEFAULT_TOPIC_COLOR = 7322096

NOT_FOUND = "Not Found"
UNAUTHORIZED = "Unauthorized"
CHAT_NOT_FOUND = "Bad Request: chat not found"
TEXT_EMPTY = "Bad Request: message text is empty"
TOO_LONG = "Bad Request: message is too long"
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup are exactly the same"
    " as a current content and reply markup of the message"
)
EDIT_NOT_FOUND = "Bad Request: message to edit not found"
CANT_EDIT = "Bad Request: message can't be edited"
THREAD_NOT_FOUND = "Bad Request: message thread not found"
REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
TEXT_BUTTON = "Bad Request: can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
MARKUP_JSON = "Bad Request: can't parse reply keyboard markup JSON object"
NOT_A_FORUM = "Bad Request: the chat is not a forum"
TOPIC_RIGHTS = "Bad Request: not enough rights to create a topic"
TOPIC_NOT_MODIFIED = "Bad Request: TOPIC_NOT_MODIFIED"
TOPIC_CLOSED = "Bad Request: TOPIC_CLOSED"
TITLE_EMPTY = "Bad Request: title must be non-empty"  # tdlib "Title must be non-empty"; Bot API casing unverified
QUERY_INVALID = "Bad Request: query is too old and response timeout expired or query ID is invalid"
PARSE_MODE_INVALID = "Bad Request: unsupported parse_mode"
COMMAND_INVALID = "Bad Request: BOT_COMMAND_INVALID"
COMMAND_DESCRIPTION_INVALID = "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID"  # unverified
CONFLICT_POLLING = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
CONFLICT_WEBHOOK = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
)
WEBHOOK_HTTPS = "Bad Request: bad webhook: An HTTPS URL must be provided for webhook"
WEBHOOK_PORT = "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
WEBHOOK_SECRET = "Bad Request: secret token contains unallowed characters"  # unverified
PARSE_PREFIX = "Bad Request: can't parse entities: "

_PHRASES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

#: Parameters whose form value is a JSON-encoded object or array.
JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "reply_parameters",
        "link_preview_options",
        "entities",
        "allowed_updates",
        "commands",
        "scope",
    }
)
#: Methods that write to a chat: the ones the strict limiter counts.
WRITE_METHODS = frozenset(
    {
        "sendmessage",
        "editmessagetext",
        "editmessagereplymarkup",
        "createforumtopic",
        "editforumtopic",
        "closeforumtopic",
        "reopenforumtopic",
    }
)

_WHITESPACE = " \t\n\r\x0b\x0c"
_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{1,256}")
_BOT_PATH = re.compile(r"/bot([^/]*)/([A-Za-z]+)/?")


class BotApiError(Exception):
    """What the Bot API answers instead of a result: an HTTP status and Telegram's ``description``."""

    def __init__(self, status: int, description: str, parameters: Mapping[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = dict(parameters or {})

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ok": False, "error_code": self.status, "description": self.description}
        if self.parameters:
            out["parameters"] = self.parameters
        return out


def _bad(description: str) -> BotApiError:
    return BotApiError(400, description)


# ------------------------------------------------------------------------------------ text and HTML


def utf16_units(text: str) -> int:
    """The length of ``text`` as Telegram counts it: UTF-16 code units (an emoji outside the BMP is 2)."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


@dataclass(frozen=True)
class ParsedText:
    """A message text as Telegram stores it: the visible text and its entities (UTF-16 offsets)."""

    text: str
    entities: tuple[dict[str, Any], ...] = ()


class EntityParseError(ValueError):
    """tdlib's ``parse_html`` refused the markup; the message is tdlib's, word for word."""


_ALLOWED_TAGS = frozenset(
    {
        "a",
        "b",
        "strong",
        "i",
        "em",
        "s",
        "strike",
        "del",
        "u",
        "ins",
        "tg-spoiler",
        "tg-emoji",
        "span",
        "pre",
        "code",
        "blockquote",
    }
)
_SIMPLE_ENTITIES = {
    "i": "italic",
    "em": "italic",
    "b": "bold",
    "strong": "bold",
    "s": "strikethrough",
    "strike": "strikethrough",
    "del": "strikethrough",
    "u": "underline",
    "ins": "underline",
    "tg-spoiler": "spoiler",
}


def _is_space(c: int) -> bool:
    return c in (0x20, 0x09, 0x0D, 0x0A, 0x00, 0x0B, 0x0C)


def _is_alpha(c: int) -> bool:
    return 0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A


def _is_digit(c: int) -> bool:
    return 0x30 <= c <= 0x39


def _is_hex(c: int) -> bool:
    return _is_digit(c) or 0x41 <= c <= 0x46 or 0x61 <= c <= 0x66


class _Bytes:
    """A NUL-terminated view of UTF-8 bytes, as the C++ parser reads them (reading past the end gives 0)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.size = len(data)

    def __getitem__(self, i: int) -> int:
        return self.data[i] if i < self.size else 0

    def text(self, start: int, end: int) -> str:
        return self.data[start:end].decode("utf-8", "surrogatepass")


def _decode_entity(s: _Bytes, pos: int) -> tuple[int, int]:
    """tdlib's ``decode_html_entity``: (code point, position after it), or (0, pos) when ``&`` starts none."""
    end = pos + 1
    code = 0
    if s[pos + 1] == ord("#"):
        end += 1
        if s[pos + 2] == ord("x"):
            end += 1
            while _is_hex(s[end]):
                code = code * 16 + int(chr(s[end]), 16)
                end += 1
        else:
            while _is_digit(s[end]):
                code = code * 10 + s[end] - 0x30
                end += 1
        if code == 0 or code >= 0x10FFFF or end - pos >= 10:
            return 0, pos
    else:
        while _is_alpha(s[end]):
            end += 1
        name = s.data[pos + 1 : end]
        named = {b"lt": ord("<"), b"gt": ord(">"), b"amp": ord("&"), b"quot": ord('"')}
        if name not in named:
            return 0, pos
        code = named[name]
    return code, (end + 1 if s[end] == ord(";") else end)


@dataclass
class _Open:
    tag: str
    argument: str
    offset: int  # UTF-16 offset in the result
    begin: int  # byte position in the result


def parse_html(markup: str) -> ParsedText:
    """Parse Telegram HTML as the Bot API server does (tdlib ``parse_html``); raise EntityParseError."""
    s = _Bytes(markup.encode("utf-8", "surrogatepass"))
    out = bytearray()
    entities: list[dict[str, Any]] = []
    stack: list[_Open] = []
    utf16 = 0
    recheck = False
    i = 0
    while i < s.size:
        c = s[i]
        if c == ord("&"):
            code, after = _decode_entity(s, i)
            if code:
                utf16 += 2 if code > 0xFFFF else 1
                recheck = recheck or 0xD800 <= code <= 0xDFFF
                out += chr(code).encode("utf-8", "surrogatepass")
                i = after
                continue
        if c != ord("<"):
            if c & 0xC0 != 0x80:
                utf16 += 2 if c >= 0xF0 else 1
            out.append(c)
            i += 1
            continue
        begin = i
        i += 1
        if s[i] != ord("/"):
            i = _start_tag(s, begin, i, stack=stack, utf16=utf16, out_len=len(out))
        else:
            i = _end_tag(s, begin, i, stack=stack, entities=entities, utf16=utf16, out=out)
        i += 1
    if stack:
        raise EntityParseError(f'Can\'t find end tag corresponding to start tag "{stack[-1].tag}"')
    try:
        text = bytes(out).decode("utf-8")
    except UnicodeDecodeError:
        if recheck:
            raise EntityParseError(
                "Text contains invalid Unicode characters after decoding HTML entities, check for unmatched"
                " surrogate code units"
            ) from None
        raise EntityParseError("Strings must be encoded in UTF-8") from None
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    entities.sort(key=lambda e: (e["offset"], -e["length"]))
    return ParsedText(text, tuple(entities))


def _start_tag(s: _Bytes, begin: int, i: int, *, stack: list[_Open], utf16: int, out_len: int) -> int:
    while not _is_space(s[i]) and s[i] != ord(">"):
        i += 1
    if s[i] == 0:
        raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
    tag = s.text(begin + 1, i).lower()
    if tag not in _ALLOWED_TAGS:
        raise EntityParseError(f'Unsupported start tag "{tag}" at byte offset {begin}')
    argument = ""
    while s[i] != ord(">"):
        while s[i] != 0 and _is_space(s[i]):
            i += 1
        if s[i] == ord(">"):
            break
        name_begin = i
        while not _is_space(s[i]) and s[i] not in (ord("="), ord(">"), ord("/"), ord('"'), ord("'")):
            i += 1
        name = s.text(name_begin, i)
        if not name:
            raise EntityParseError(f'Empty attribute name in the tag "{tag}" at byte offset {begin}')
        while s[i] != 0 and _is_space(s[i]):
            i += 1
        if s[i] != ord("="):
            if s[i] == 0:
                raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
            if tag == "blockquote" and name == "expandable":
                argument = "1"
            continue
        i += 1
        while s[i] != 0 and _is_space(s[i]):
            i += 1
        if s[i] == 0:
            raise EntityParseError(f'Unclosed start tag "{tag}" at byte offset {begin}')
        if s[i] not in (ord("'"), ord('"')):
            token_begin = i
            while _is_alpha(s[i]) or _is_digit(s[i]) or s[i] in (ord("."), ord("-")):
                i += 1
            value = s.text(token_begin, i).lower()
            if not _is_space(s[i]) and s[i] != ord(">"):
                raise EntityParseError(f"Unexpected end of name token at byte offset {token_begin}")
        else:
            quote = s[i]
            i += 1
            raw = bytearray()
            while s[i] != quote and s[i] != 0:
                if s[i] == ord("&"):
                    code, after = _decode_entity(s, i)
                    if code:
                        raw += chr(code).encode("utf-8", "surrogatepass")
                        i = after
                        continue
                raw.append(s[i])
                i += 1
            if s[i] == quote:
                i += 1
            value = bytes(raw).decode("utf-8", "replace")
        if s[i] == 0:
            raise EntityParseError(f"Unclosed start tag at byte offset {begin}")
        if tag == "a" and name == "href":
            argument = value
        elif tag == "code" and name == "class" and value.startswith("language-"):
            argument = value[9:]
        elif tag == "span" and name == "class" and value.startswith("tg-"):
            argument = value[3:]
        elif tag == "tg-emoji" and name == "emoji-id":
            argument = value
        elif tag == "blockquote" and name == "expandable":
            argument = "1"
    if tag == "span" and argument != "spoiler":
        raise EntityParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {begin}')
    stack.append(_Open(tag, argument, utf16, out_len))
    return i


def _end_tag(
    s: _Bytes, begin: int, i: int, *, stack: list[_Open], entities: list[dict[str, Any]], utf16: int, out: bytearray
) -> int:
    if not stack:
        raise EntityParseError(f"Unexpected end tag at byte offset {begin}")
    while not _is_space(s[i]) and s[i] != ord(">"):
        i += 1
    end_tag = s.text(begin + 2, i).lower()
    while _is_space(s[i]) and s[i] != 0:
        i += 1
    if s[i] != ord(">"):
        raise EntityParseError(f"Unclosed end tag at byte offset {begin}")
    top = stack[-1]
    if end_tag and end_tag != top.tag:
        raise EntityParseError(
            f'Unmatched end tag at byte offset {begin}, expected "</{top.tag}>", found "</{end_tag}>"'
        )
    if utf16 > top.offset:
        entity = _entity(top, utf16 - top.offset, entities, bytes(out[top.begin :]))
        if entity is not None:
            entities.append(entity)
    stack.pop()
    return i


def _entity(top: _Open, length: int, entities: list[dict[str, Any]], inner: bytes) -> dict[str, Any] | None:
    span = {"offset": top.offset, "length": length}
    last = entities[-1] if entities else None
    same = last is not None and last["offset"] == top.offset and last["length"] == length
    if top.tag in _SIMPLE_ENTITIES or (top.tag == "span" and top.argument == "spoiler"):
        return {"type": _SIMPLE_ENTITIES.get(top.tag, "spoiler"), **span}
    if top.tag == "tg-emoji":
        if not top.argument.isdigit() or int(top.argument) == 0:
            raise EntityParseError("Invalid custom emoji identifier specified")
        return {"type": "custom_emoji", **span, "custom_emoji_id": top.argument}
    if top.tag == "a":
        url = top.argument or inner.decode("utf-8", "replace")
        return {"type": "text_link", **span, "url": url} if url else None
    if top.tag == "pre":
        if last is not None and same and last["type"] == "code" and last.get("language"):
            last["type"] = "pre"
            return None
        return {"type": "pre", **span}
    if top.tag == "code":
        if last is not None and same and last["type"] == "pre" and top.argument:
            last["language"] = top.argument
            return None
        return {"type": "code", **span, **({"language": top.argument} if top.argument else {})}
    kind = "expandable_blockquote" if top.argument else "blockquote"
    return {"type": kind, **span}


def _trim(parsed: ParsedText) -> ParsedText:
    """Telegram drops whitespace around a message; entities move with the text and are clipped to it."""
    text = parsed.text
    stripped = text.strip(_WHITESPACE)
    if stripped == text:
        return parsed
    lead = len(text) - len(text.lstrip(_WHITESPACE))
    size = utf16_units(stripped)
    entities: list[dict[str, Any]] = []
    for entity in parsed.entities:
        start = max(0, entity["offset"] - lead)
        end = min(size, entity["offset"] + entity["length"] - lead)
        if end > start:
            entities.append({**entity, "offset": start, "length": end - start})
    return ParsedText(stripped, tuple(entities))


def check_message_text(text: str | None, parse_mode: str | None = "HTML") -> ParsedText:
    """What Telegram makes of a message text, or the BotApiError it answers (parse errors, empty, too long)."""
    if not text:
        raise _bad(TEXT_EMPTY)
    if parse_mode is None or parse_mode == "":
        parsed = ParsedText(text)
    elif parse_mode.lower() == "html":
        try:
            parsed = parse_html(text)
        except EntityParseError as exc:
            raise _bad(PARSE_PREFIX + str(exc)) from None
    elif parse_mode.lower() in ("markdown", "markdownv2"):
        raise _bad(f"Bad Request: FakeTelegram does not implement parse_mode {parse_mode}")
    else:
        raise _bad(PARSE_MODE_INVALID)
    parsed = _trim(parsed)
    if not parsed.text:
        raise _bad(TEXT_EMPTY)
    if utf16_units(parsed.text) > MAX_TEXT_UNITS:
        raise _bad(TOO_LONG)
    return parsed


def check_reply_markup(markup: Any) -> dict[str, Any] | None:
    """An inline keyboard as Telegram checks it (buttons need an action; callback_data 1..64 bytes)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad(MARKUP_JSON)
    rows = markup.get("inline_keyboard")
    if rows is None:
        return dict(markup)  # a reply keyboard or a removal: kept as given
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad('Bad Request: field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad('Bad Request: can\'t parse inline keyboard button: Field "text" must be of type String')
            actions = set(button) - {"text", "style", "icon_custom_emoji_id"}
            if not actions:
                raise _bad(TEXT_BUTTON)
            if "callback_data" in button:
                data = button["callback_data"]
                size = len(data.encode("utf-8")) if isinstance(data, str) else 0
                if not 1 <= size <= MAX_CALLBACK_DATA:
                    raise _bad(BUTTON_DATA_INVALID)
    return {"inline_keyboard": [[dict(b) for b in row] for row in rows if row]}


# ------------------------------------------------------------------------------------------- records


ChatType = Literal["private", "group", "supergroup", "channel"]


@dataclass
class FakeChat:
    """A chat the fake knows. ``can_manage_topics``: the bot is an admin allowed to manage forum topics."""

    id: int
    type: ChatType
    title: str | None = None
    username: str | None = None
    first_name: str | None = None
    is_forum: bool = False
    can_manage_topics: bool = True

    @property
    def is_group(self) -> bool:
        return self.type in ("group", "supergroup")

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.type}
        if self.title is not None:
            out["title"] = self.title
        if self.username is not None:
            out["username"] = self.username
        if self.first_name is not None:
            out["first_name"] = self.first_name
        if self.is_forum:
            out["is_forum"] = True
        return out

    def full_info(self) -> dict[str, Any]:
        """``getChat``'s ChatFullInfo (with the fields PTB 22 requires)."""
        gifts = dict.fromkeys(
            ("unlimited_gifts", "limited_gifts", "unique_gifts", "premium_subscription", "gifts_from_channels"), False
        )
        return {**self.as_dict(), "accent_color_id": 0, "max_reaction_count": 11, "accepted_gift_types": gifts}


def default_chats() -> list[FakeChat]:
    """A forum supergroup, a supergroup, a basic group and a private chat with :data:`DEFAULT_USER`."""
    return [
        FakeChat(FORUM_CHAT_ID, "supergroup", title="Incidents", is_forum=True),
        FakeChat(SUPERGROUP_CHAT_ID, "supergroup", title="Ops", username="ops_room"),
        FakeChat(GROUP_CHAT_ID, "group", title="On-call"),
        FakeChat(PRIVATE_CHAT_ID, "private", first_name=DEFAULT_USER["first_name"], username=DEFAULT_USER["username"]),
    ]


@dataclass
class FakeMessage:
    """One message of a chat as the fake keeps it. ``text`` is what people see (markup parsed away);
    ``edits`` the earlier texts, oldest first; ``reply_to`` the message it explicitly replies to;
    ``thread_id`` its forum topic; ``service`` a service payload (``forum_topic_created``…)."""

    chat_id: int
    message_id: int
    date: int
    sender: dict[str, Any]
    text: str | None = None
    entities: tuple[dict[str, Any], ...] = ()
    thread_id: int | None = None
    is_topic_message: bool = False
    reply_to: int | None = None
    reply_markup: dict[str, Any] | None = None
    edits: list[str] = field(default_factory=list)
    edit_date: int | None = None
    service: dict[str, Any] | None = None
    sent_text: str | None = None
    parse_mode: str | None = None

    @property
    def from_bot(self) -> bool:
        return bool(self.sender.get("is_bot"))

    @property
    def buttons(self) -> list[tuple[str, str]]:
        """(label, callback_data) of the inline keyboard, row by row."""
        rows = (self.reply_markup or {}).get("inline_keyboard") or []
        return [(b.get("text", ""), b.get("callback_data", "")) for row in rows for b in row]

    def bold(self) -> list[str]:
        """The bold stretches of the text (handy to check that a header was rendered bold)."""
        return [_slice16(self.text or "", e["offset"], e["length"]) for e in self.entities if e["type"] == "bold"]

    def entity_types(self) -> set[str]:
        return {e["type"] for e in self.entities}


def _slice16(text: str, offset: int, length: int) -> str:
    data = text.encode("utf-16-le")
    return data[offset * 2 : (offset + length) * 2].decode("utf-16-le")


@dataclass
class FakeTopic:
    """A forum topic: its thread id (the id of its creation service message), name and state."""

    chat_id: int
    thread_id: int
    name: str
    icon_color: int = DEFAULT_TOPIC_COLOR
    icon_custom_emoji_id: str | None = None
    closed: bool = False
    names: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message_thread_id": self.thread_id, "name": self.name, "icon_color": self.icon_color}
        if self.icon_custom_emoji_id:
            out["icon_custom_emoji_id"] = self.icon_custom_emoji_id
        return out


@dataclass(frozen=True)
class Call:
    """One request the fake answered: method (as Telegram spells it), decoded parameters, the answer."""

    method: str
    params: dict[str, Any]
    status: int
    result: Any = None
    description: str | None = None
    at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(frozen=True)
class Limits:
    """The strict limiter: a chat may take ``per_chat_burst`` messages at once, then one per
    ``per_chat_interval`` seconds; a group ``group_per_minute`` per 60 s; the bot ``overall_per_second``."""

    per_chat_interval: float = 1.0
    per_chat_burst: int = 3
    group_per_minute: int = 20
    overall_per_second: int = 30


DEFAULT_LIMITS = Limits()


@dataclass
class _Script:
    status: int
    retry_after: int | None
    method: str | None
    chat_id: int | None
    remaining: int | None
    until: float | None
    description: str | None
    skip: int = 0


@dataclass
class _Poller:
    loop: asyncio.AbstractEventLoop
    event: asyncio.Event
    superseded: bool = False

    def wake(self) -> None:
        with contextlib.suppress(RuntimeError):  # its loop is gone: nothing waits any more
            self.loop.call_soon_threadsafe(self.event.set)


@dataclass
class WebhookState:
    """What ``setWebhook`` stored, plus the delivery outcome ``getWebhookInfo`` reports."""

    url: str = ""
    secret_token: str | None = None
    max_connections: int = 40
    allowed_updates: list[str] | None = None
    last_error_date: int | None = None
    last_error_message: str | None = None
    delivered: list[dict[str, Any]] = field(default_factory=list)


#: lower-case method name → (Telegram's spelling, name of the FakeTelegram coroutine answering it)
_METHODS: dict[str, tuple[str, str]] = {}


_F = TypeVar("_F", bound=Callable[..., Any])


def _method(name: str) -> Callable[[_F], _F]:
    """Register a coroutine of FakeTelegram as the answer to Bot API method ``name``."""

    def register(fn: _F) -> _F:
        _METHODS[name.lower()] = (name, fn.__name__)
        return fn

    return register


# ---------------------------------------------------------------------------------------------- app


class FakeTelegram:
    """The fake Bot API (an ASGI app). See the module docstring for what it checks.

    ``chats`` replaces :func:`default_chats`; ``clock`` (seconds, monotonic) times the strict limiter
    and ``fail(for_seconds=...)``; ``limits`` turns the strict limiter on (also :meth:`enforce`);
    ``insecure_webhooks`` lets ``setWebhook`` take a plain-HTTP URL on any port so updates can be
    delivered to a local server (Telegram itself wants HTTPS on 443, 80, 88 or 8443).
    """

    def __init__(
        self,
        token: str = TOKEN,
        *,
        username: str = BOT_USERNAME,
        chats: Iterable[FakeChat] | None = None,
        clock: Callable[[], float] = time.monotonic,
        limits: Limits | None = None,
        insecure_webhooks: bool = False,
        webhook_retry_delay: float = 0.2,
    ) -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1
        self.username = username
        self.clock = clock
        self.limits = limits
        self.insecure_webhooks = insecure_webhooks
        self.webhook_retry_delay = webhook_retry_delay
        self._lock = threading.RLock()
        self._configured = [replace(c) for c in (chats if chats is not None else default_chats())]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._delivery: asyncio.Task[None] | None = None
        self.reset()

    # ------------------------------------------------------------------ state and what tests read

    def reset(self) -> None:
        """Forget every message, topic, call, update, script and webhook; keep the configured chats."""
        with self._lock:
            self._generation = getattr(self, "_generation", 0) + 1
            self._chats: dict[int, FakeChat] = {c.id: replace(c) for c in self._configured}
            self._messages: dict[int, list[FakeMessage]] = {c.id: [] for c in self._configured}
            self._topics: dict[int, dict[int, FakeTopic]] = {c.id: {} for c in self._configured}
            self._next_message: dict[int, int] = dict.fromkeys(self._chats, 1)
            self._calls: list[Call] = []
            self._scripts: list[_Script] = []
            self._stalls: list[tuple[str | None, float]] = []
            self._updates: deque[dict[str, Any]] = deque()
            self._next_update = 1
            self._allowed_updates: list[str] | None = None
            self._pollers: list[_Poller] = []
            self._queries: dict[str, bool] = {}  # callback query id → answered
            self.answers: dict[str, dict[str, Any]] = {}
            self.webhook = WebhookState()
            self._commands: dict[tuple[str, str], list[dict[str, str]]] = {}
            self._chat_sends: dict[int, tuple[float, float]] = {}  # chat → (tokens, at)
            self._group_sends: dict[int, deque[float]] = {}
            self._all_sends: deque[float] = deque()
            self._query_ids = itertools.count(7_000_000_000_000_000_001)

    @property
    def bot_user(self) -> dict[str, Any]:
        return {"id": self.bot_id, "is_bot": True, "first_name": "Incident Bot", "username": self.username}

    def add_chat(self, chat: FakeChat) -> FakeChat:
        """Configure one more chat (kept across :meth:`reset`)."""
        with self._lock:
            self._configured.append(replace(chat))
            self._chats[chat.id] = replace(chat)
            self._messages[chat.id] = []
            self._topics[chat.id] = {}
            self._next_message[chat.id] = 1
            return self._chats[chat.id]

    def chat(self, chat_id: int) -> FakeChat:
        with self._lock:
            return self._chats[chat_id]

    @property
    def chat_ids(self) -> list[int]:
        """The ids of every chat the fake knows (configured or added)."""
        with self._lock:
            return list(self._chats)

    @property
    def calls(self) -> list[Call]:
        """Every request answered so far, in order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method.lower() == method.lower()]

    def messages(self, chat_id: int, *, thread_id: int | None = None, service: bool = False) -> list[FakeMessage]:
        """The chat's messages in order (service messages only when asked), optionally one topic's."""
        with self._lock:
            found = list(self._messages[chat_id])
        if thread_id is not None:
            found = [m for m in found if m.thread_id == thread_id]
        return [m for m in found if service or m.service is None]

    def bot_messages(self, chat_id: int, *, thread_id: int | None = None) -> list[FakeMessage]:
        return [m for m in self.messages(chat_id, thread_id=thread_id) if m.from_bot]

    def message(self, chat_id: int, message_id: int) -> FakeMessage:
        with self._lock:
            for m in self._messages[chat_id]:
                if m.message_id == message_id:
                    return m
        raise KeyError(f"no message {message_id} in chat {chat_id}")

    def replies_to(self, chat_id: int, message_id: int) -> list[FakeMessage]:
        """The messages that explicitly reply to ``message_id`` (reply_parameters), in order."""
        return [m for m in self.messages(chat_id) if m.reply_to == message_id]

    def topics(self, chat_id: int) -> list[FakeTopic]:
        with self._lock:
            return list(self._topics[chat_id].values())

    def topic(self, chat_id: int, thread_id: int) -> FakeTopic:
        with self._lock:
            return self._topics[chat_id][thread_id]

    def commands(self, scope: Mapping[str, Any] | None = None, language_code: str = "") -> list[dict[str, str]]:
        with self._lock:
            return list(self._commands.get((_scope_key(scope), language_code), []))

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._updates)

    # ------------------------------------------------------------------------------- scripting

    def fail(
        self,
        status: int = 429,
        *,
        retry_after: int | None = None,
        times: int | None = None,
        for_seconds: float | None = None,
        method: str | None = None,
        chat_id: int | None = None,
        description: str | None = None,
        after: int = 0,
    ) -> None:
        """Answer the next ``times`` matching calls (or every matching call for ``for_seconds``) with
        ``status``: 429 carries ``parameters.retry_after`` (default 1) and Telegram's description; other
        statuses the usual phrase (or ``description``). ``method``/``chat_id`` narrow what matches;
        ``after`` lets that many matching calls through first."""
        if (times is None) == (for_seconds is None):
            raise ValueError("fail() needs exactly one of times= or for_seconds=")
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._scripts.append(
                _Script(
                    status=status,
                    retry_after=retry_after,
                    method=method.lower() if method else None,
                    chat_id=chat_id,
                    remaining=times,
                    until=None if for_seconds is None else self.clock() + for_seconds,
                    description=description,
                    skip=after,
                )
            )

    def stall(self, seconds: float, *, times: int = 1, method: str | None = None) -> None:
        """Answer the next ``times`` matching calls only after ``seconds`` (real time): client timeouts."""
        with self._lock:
            self._stalls.extend([(method.lower() if method else None, seconds)] * times)

    def delete(self, chat_id: int, message_id: int) -> None:
        """Someone deletes a message from the chat (edits of it then find nothing)."""
        with self._lock:
            self._messages[chat_id] = [m for m in self._messages[chat_id] if m.message_id != message_id]

    def enforce(self, limits: Limits | None = DEFAULT_LIMITS) -> None:
        """Turn the strict limiter on (or off with None)."""
        with self._lock:
            self.limits = limits
            self._chat_sends.clear()
            self._group_sends.clear()
            self._all_sends.clear()

    # --------------------------------------------------------------------------------- updates

    def push_update(self, update: Mapping[str, Any]) -> dict[str, Any]:
        """Queue an update (``update_id`` assigned when missing) for getUpdates or the webhook."""
        with self._lock:
            item = dict(update)
            if "update_id" not in item:
                item["update_id"] = self._next_update
            self._next_update = max(self._next_update, int(item["update_id"])) + 1
            self._updates.append(item)
            pollers = list(self._pollers)
            loop = self._loop
            webhook = bool(self.webhook.url)
        for poller in pollers:
            poller.wake()
        if webhook and loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._ensure_delivery)
        return item

    def user_message(
        self,
        chat_id: int,
        text: str,
        *,
        user: Mapping[str, Any] | None = None,
        thread_id: int | None = None,
        reply_to: int | None = None,
    ) -> FakeMessage:
        """A person writes ``text`` in the chat (a ``/command`` gets its bot_command entity); the
        message is kept in the chat and pushed as a ``message`` update."""
        sender = dict(user or DEFAULT_USER)
        entities: tuple[dict[str, Any], ...] = ()
        if text.startswith("/"):
            word = text.split(maxsplit=1)[0]
            entities = ({"type": "bot_command", "offset": 0, "length": utf16_units(word)},)
        with self._lock:
            chat = self._chats[chat_id]
            if thread_id is None and reply_to is not None:
                thread_id = self.message(chat_id, reply_to).thread_id
            message = self._store(
                chat,
                FakeMessage(
                    chat_id=chat_id,
                    message_id=0,
                    date=int(time.time()),
                    sender=sender,
                    text=text,
                    entities=entities,
                    thread_id=thread_id,
                    is_topic_message=thread_id is not None and chat.is_forum,
                    reply_to=reply_to,
                ),
            )
            body = self._message_dict(message)
        self.push_update({"message": body})
        return message

    def click(self, chat_id: int, message_id: int, data: str, *, user: Mapping[str, Any] | None = None) -> str:
        """A person presses the inline button carrying ``data`` under a message; returns the query id
        (``answerCallbackQuery`` must answer it once; :attr:`answers` keeps what it said)."""
        with self._lock:
            message = self.message(chat_id, message_id)
            query_id = str(next(self._query_ids))
            self._queries[query_id] = False
            body = {
                "id": query_id,
                "from": dict(user or DEFAULT_USER),
                "message": self._message_dict(message),
                "chat_instance": str(-abs(chat_id) * 7 - 1),
                "data": data,
            }
        self.push_update({"callback_query": body})
        return query_id

    # ------------------------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        request = Request(scope, receive)
        response = await self._answer(request)
        await response(scope, receive, send)

    async def _answer(self, request: Request) -> JSONResponse:
        match = _BOT_PATH.fullmatch(request.url.path)
        if match is None:
            return JSONResponse(BotApiError(404, NOT_FOUND).body(), status_code=404)
        token, raw_method = match.groups()
        method = raw_method.lower()
        if token != self.token:
            status, text = (401, UNAUTHORIZED) if re.fullmatch(r"\d+:[\w-]+", token) else (404, NOT_FOUND)
            return JSONResponse(BotApiError(status, text).body(), status_code=status)
        if method not in _METHODS:
            return JSONResponse(BotApiError(404, NOT_FOUND).body(), status_code=404)
        name, handler = _METHODS[method]
        try:
            params = await _decode(request)
        except BotApiError as exc:
            self._record(name, {}, exc)
            return JSONResponse(exc.body(), status_code=exc.status)
        generation = self._generation
        await self._stalled(method)
        if generation != self._generation:  # a stalled request outliving its test: it changes nothing
            return JSONResponse(BotApiError(500, "Internal Server Error").body(), status_code=500)
        try:
            self._scripted(method, params)
            result = await getattr(self, handler)(params)
        except BotApiError as exc:
            self._record(name, params, exc)
            return JSONResponse(exc.body(), status_code=exc.status)
        self._record(name, params, result)
        body: dict[str, Any] = {"ok": True, "result": result}
        if method == "setwebhook":
            body["description"] = "Webhook was set" if result is True and params.get("url") else "Webhook was deleted"
        return JSONResponse(body)

    def _record(self, method: str, params: dict[str, Any], outcome: Any) -> None:
        with self._lock:
            if isinstance(outcome, BotApiError):
                call = Call(method, params, outcome.status, None, outcome.description, self.clock())
            else:
                call = Call(method, params, 200, outcome, None, self.clock())
            self._calls.append(call)

    async def _stalled(self, method: str) -> None:
        with self._lock:
            found = next((n for n, (m, _) in enumerate(self._stalls) if m in (None, method)), None)
            seconds = self._stalls.pop(found)[1] if found is not None else 0.0
        if seconds:
            await asyncio.sleep(seconds)

    def _scripted(self, method: str, params: Mapping[str, Any]) -> None:
        with self._lock:
            now = self.clock()
            self._scripts = [
                s
                for s in self._scripts
                if (s.remaining is None or s.remaining > 0) and (s.until is None or s.until > now)
            ]
            chat = _chat_key(params.get("chat_id"))
            for script in self._scripts:
                if script.method not in (None, method) or (script.chat_id is not None and script.chat_id != chat):
                    continue
                if script.skip:
                    script.skip -= 1
                    return
                if script.remaining is not None:
                    script.remaining -= 1
                if script.status == 429:
                    wait = script.retry_after or 1
                    if script.until is not None and script.retry_after is None:
                        wait = max(1, math.ceil(script.until - now))
                    raise BotApiError(
                        429, script.description or f"Too Many Requests: retry after {wait}", {"retry_after": wait}
                    )
                raise BotApiError(script.status, script.description or _PHRASES.get(script.status, "Error"))

    def _limit(self, chat: FakeChat) -> None:
        """The strict limiter (when on): 429 with ``retry_after`` for a send beyond the limits."""
        limits = self.limits
        if limits is None:
            return
        now = self.clock()
        waits: list[float] = []
        tokens, at = self._chat_sends.get(chat.id, (float(limits.per_chat_burst), now))
        tokens = min(float(limits.per_chat_burst), tokens + (now - at) / limits.per_chat_interval)
        if tokens < 1:
            waits.append((1 - tokens) * limits.per_chat_interval)
        group = self._group_sends.setdefault(chat.id, deque())
        while group and group[0] <= now - 60:
            group.popleft()
        if chat.is_group and len(group) >= limits.group_per_minute:
            waits.append(group[0] + 60 - now)
        while self._all_sends and self._all_sends[0] <= now - 1:
            self._all_sends.popleft()
        if len(self._all_sends) >= limits.overall_per_second:
            waits.append(self._all_sends[0] + 1 - now)
        if waits:
            self._chat_sends[chat.id] = (tokens, now)
            wait = max(1, math.ceil(max(waits) - 1e-9))
            raise BotApiError(429, f"Too Many Requests: retry after {wait}", {"retry_after": wait})
        self._chat_sends[chat.id] = (tokens - 1, now)
        group.append(now)
        self._all_sends.append(now)

    # --------------------------------------------------------------------------------- helpers

    def _chat_of(self, params: Mapping[str, Any]) -> FakeChat:
        raw = params.get("chat_id")
        with self._lock:
            if isinstance(raw, str) and raw.startswith("@"):
                for chat in self._chats.values():
                    if chat.username and chat.username.lower() == raw[1:].lower():
                        return chat
                raise _bad(CHAT_NOT_FOUND)
            key = _chat_key(raw)
            if key is None or key not in self._chats:
                raise _bad(CHAT_NOT_FOUND)
            return self._chats[key]

    def _store(self, chat: FakeChat, message: FakeMessage) -> FakeMessage:
        message.message_id = self._next_message[chat.id]
        self._next_message[chat.id] += 1
        self._messages[chat.id].append(message)
        return message

    def _find(self, chat_id: int, message_id: int | None) -> FakeMessage | None:
        if message_id is None:
            return None
        return next((m for m in self._messages[chat_id] if m.message_id == message_id), None)

    def _message_dict(self, m: FakeMessage, *, nested: bool = False) -> dict[str, Any]:
        chat = self._chats[m.chat_id]
        out: dict[str, Any] = {
            "message_id": m.message_id,
            "from": dict(m.sender),
            "chat": chat.as_dict(),
            "date": m.date,
        }
        if m.thread_id is not None:
            out["message_thread_id"] = m.thread_id
        if m.is_topic_message:
            out["is_topic_message"] = True
        if not nested:
            # a message in a topic that replies to nothing replies, on the wire, to the topic's first message
            target = m.reply_to
            if target is None and m.is_topic_message and m.thread_id != m.message_id:
                target = m.thread_id
            replied = self._find(m.chat_id, target)
            if replied is not None:
                out["reply_to_message"] = self._message_dict(replied, nested=True)
        if m.edit_date is not None:
            out["edit_date"] = m.edit_date
        if m.text is not None:
            out["text"] = m.text
            if m.entities:
                out["entities"] = [dict(e) for e in m.entities]
        if m.service:
            out.update(m.service)
        if m.reply_markup:
            out["reply_markup"] = m.reply_markup
        return out

    def _thread(self, chat: FakeChat, thread_id: int | None) -> FakeTopic | None:
        if thread_id is None:
            return None
        topic = self._topics[chat.id].get(thread_id)
        if not chat.is_forum or topic is None:
            raise _bad(THREAD_NOT_FOUND)
        if topic.closed and not chat.can_manage_topics:
            raise _bad(TOPIC_CLOSED)
        return topic

    def _forum_topic(self, params: Mapping[str, Any]) -> tuple[FakeChat, FakeTopic]:
        chat = self._chat_of(params)
        if not chat.is_forum:
            raise _bad(NOT_A_FORUM)
        if not chat.can_manage_topics:
            raise _bad("Bad Request: not enough rights to manage topics")
        topic = self._topics[chat.id].get(_int(params, "message_thread_id") or 0)
        if topic is None:
            raise _bad(THREAD_NOT_FOUND)
        return chat, topic

    def _service(self, chat: FakeChat, topic: FakeTopic, payload: dict[str, Any]) -> None:
        self._store(
            chat,
            FakeMessage(
                chat_id=chat.id,
                message_id=0,
                date=int(time.time()),
                sender=self.bot_user,
                thread_id=topic.thread_id,
                is_topic_message=True,
                service=payload,
            ),
        )

    # --------------------------------------------------------------------------------- methods

    @_method("getMe")
    async def get_me(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    @_method("getChat")
    async def get_chat(self, params: dict[str, Any]) -> dict[str, Any]:
        return self._chat_of(params).full_info()

    @_method("sendMessage")
    async def send_message(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            chat = self._chat_of(params)
            parsed = _text(params)
            thread_id = _int(params, "message_thread_id")
            self._thread(chat, thread_id)
            reply_to = self._reply_target(chat, params)
            if reply_to is not None and thread_id is None:
                thread_id = reply_to.thread_id
            markup = check_reply_markup(params.get("reply_markup"))
            self._limit(chat)
            message = self._store(
                chat,
                FakeMessage(
                    chat_id=chat.id,
                    message_id=0,
                    date=int(time.time()),
                    sender=self.bot_user,
                    text=parsed.text,
                    entities=parsed.entities,
                    thread_id=thread_id,
                    is_topic_message=thread_id is not None and chat.is_forum,
                    reply_to=reply_to.message_id if reply_to is not None else None,
                    reply_markup=markup if markup and "inline_keyboard" in markup else None,
                    sent_text=params.get("text"),
                    parse_mode=params.get("parse_mode") or None,
                ),
            )
            return self._message_dict(message)

    def _reply_target(self, chat: FakeChat, params: Mapping[str, Any]) -> FakeMessage | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            wanted = reply.get("message_id")
            allow = bool(reply.get("allow_sending_without_reply"))
        else:
            wanted = _int(params, "reply_to_message_id")
            allow = _bool(params, "allow_sending_without_reply")
        if wanted is None:
            return None
        target = self._find(chat.id, int(wanted))
        if target is None and not allow:
            raise _bad(REPLY_NOT_FOUND)
        return target

    def _editable(self, params: Mapping[str, Any]) -> tuple[FakeChat, FakeMessage]:
        if params.get("inline_message_id"):
            raise _bad("Bad Request: FakeTelegram has no inline messages")
        chat = self._chat_of(params)
        message = self._find(chat.id, _int(params, "message_id"))
        if message is None or message.service is not None:
            raise _bad(EDIT_NOT_FOUND)
        if not message.from_bot:
            raise _bad(CANT_EDIT)
        return chat, message

    @_method("editMessageText")
    async def edit_message_text(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            chat, message = self._editable(params)
            parsed = _text(params)
            markup = check_reply_markup(params.get("reply_markup"))
            keyboard = markup if markup and "inline_keyboard" in markup else None
            if (parsed.text, parsed.entities, keyboard) == (message.text, message.entities, message.reply_markup):
                raise _bad(NOT_MODIFIED)
            self._limit(chat)
            if message.text is not None:
                message.edits.append(message.text)
            message.text, message.entities, message.reply_markup = parsed.text, parsed.entities, keyboard
            message.sent_text, message.parse_mode = params.get("text"), params.get("parse_mode") or None
            message.edit_date = int(time.time())
            return self._message_dict(message)

    @_method("editMessageReplyMarkup")
    async def edit_message_reply_markup(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            chat, message = self._editable(params)
            markup = check_reply_markup(params.get("reply_markup"))
            keyboard = markup if markup and "inline_keyboard" in markup else None
            if keyboard == message.reply_markup:
                raise _bad(NOT_MODIFIED)
            self._limit(chat)
            message.reply_markup = keyboard
            message.edit_date = int(time.time())
            return self._message_dict(message)

    @_method("answerCallbackQuery")
    async def answer_callback_query(self, params: dict[str, Any]) -> bool:
        query_id = str(params.get("callback_query_id") or "")
        with self._lock:
            if self._queries.get(query_id, True):
                raise _bad(QUERY_INVALID)
            self._queries[query_id] = True
            self.answers[query_id] = dict(params)
        return True

    @_method("createForumTopic")
    async def create_forum_topic(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            chat = self._chat_of(params)
            if not chat.is_forum:
                raise _bad(NOT_A_FORUM)
            if not chat.can_manage_topics:
                raise _bad(TOPIC_RIGHTS)
            name = _clean_name(str(params.get("name") or ""))
            if not name:
                raise _bad(TITLE_EMPTY)
            self._limit(chat)
            color = _int(params, "icon_color") or DEFAULT_TOPIC_COLOR
            emoji = params.get("icon_custom_emoji_id") or None
            thread_id = self._next_message[chat.id]
            topic = FakeTopic(chat.id, thread_id, name, color, emoji, names=[name])
            self._topics[chat.id][thread_id] = topic
            self._service(chat, topic, {"forum_topic_created": {"name": name, "icon_color": color}})
            return topic.as_dict()

    @_method("editForumTopic")
    async def edit_forum_topic(self, params: dict[str, Any]) -> bool:
        with self._lock:
            chat, topic = self._forum_topic(params)
            name = _clean_name(str(params.get("name") or "")) or topic.name
            emoji = params.get("icon_custom_emoji_id", topic.icon_custom_emoji_id)
            if (name, emoji) == (topic.name, topic.icon_custom_emoji_id):
                raise _bad(TOPIC_NOT_MODIFIED)
            self._limit(chat)
            topic.name, topic.icon_custom_emoji_id = name, emoji
            topic.names.append(name)
            self._service(chat, topic, {"forum_topic_edited": {"name": name}})
            return True

    @_method("closeForumTopic")
    async def close_forum_topic(self, params: dict[str, Any]) -> bool:
        return self._open_close(params, closed=True)

    @_method("reopenForumTopic")
    async def reopen_forum_topic(self, params: dict[str, Any]) -> bool:
        return self._open_close(params, closed=False)

    def _open_close(self, params: Mapping[str, Any], *, closed: bool) -> bool:
        with self._lock:
            chat, topic = self._forum_topic(params)
            if topic.closed == closed:
                raise _bad(TOPIC_NOT_MODIFIED)
            self._limit(chat)
            topic.closed = closed
            self._service(chat, topic, {"forum_topic_closed" if closed else "forum_topic_reopened": {}})
            return True

    @_method("setMyCommands")
    async def set_my_commands(self, params: dict[str, Any]) -> bool:
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad(COMMAND_INVALID)
        cleaned: list[dict[str, str]] = []
        for item in commands:
            if not isinstance(item, dict) or not _COMMAND.fullmatch(str(item.get("command", ""))):
                raise _bad(COMMAND_INVALID)
            description = str(item.get("description", "")).strip()
            if not 1 <= len(description) <= 256:
                raise _bad(COMMAND_DESCRIPTION_INVALID)
            cleaned.append({"command": str(item["command"]), "description": description})
        with self._lock:
            self._commands[(_scope_key(params.get("scope")), str(params.get("language_code") or ""))] = cleaned
        return True

    @_method("getMyCommands")
    async def get_my_commands(self, params: dict[str, Any]) -> list[dict[str, str]]:
        return self.commands(params.get("scope"), str(params.get("language_code") or ""))

    @_method("deleteMyCommands")
    async def delete_my_commands(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self._commands.pop((_scope_key(params.get("scope")), str(params.get("language_code") or "")), None)
        return True

    # ---------------------------------------------------------------------- webhook and polling

    @_method("setWebhook")
    async def set_webhook(self, params: dict[str, Any]) -> bool:
        url = str(params.get("url") or "")
        if not url:
            return await self.delete_webhook(params)
        parts = urlsplit(url)
        if not self.insecure_webhooks:
            if parts.scheme != "https":
                raise _bad(WEBHOOK_HTTPS)
            if (parts.port or 443) not in (443, 80, 88, 8443):
                raise _bad(WEBHOOK_PORT)
        elif parts.scheme not in ("http", "https"):
            raise _bad(WEBHOOK_HTTPS)
        secret = params.get("secret_token")
        if secret is not None and not _SECRET.fullmatch(str(secret)):
            raise _bad(WEBHOOK_SECRET)
        connections = _int(params, "max_connections") or 40
        allowed = params.get("allowed_updates")
        with self._lock:
            if _bool(params, "drop_pending_updates"):
                self._updates.clear()
            self.webhook = WebhookState(
                url=url,
                secret_token=str(secret) if secret else None,
                max_connections=max(1, min(100, connections)),
                allowed_updates=list(allowed) if isinstance(allowed, list) else None,
            )
            pollers = list(self._pollers)
        for poller in pollers:  # a poller waiting now gets a conflict like any later getUpdates
            poller.superseded = True
            poller.wake()
        self._ensure_delivery()
        return True

    @_method("deleteWebhook")
    async def delete_webhook(self, params: dict[str, Any]) -> bool:
        with self._lock:
            self.webhook = WebhookState(delivered=self.webhook.delivered)
            if _bool(params, "drop_pending_updates"):
                self._updates.clear()
        return True

    @_method("getWebhookInfo")
    async def get_webhook_info(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            hook = self.webhook
            info: dict[str, Any] = {"url": hook.url, "has_custom_certificate": False}
            info["pending_update_count"] = len(self._updates)
            if hook.url:
                info["max_connections"] = hook.max_connections
                info["ip_address"] = "127.0.0.1"
                if hook.allowed_updates is not None:
                    info["allowed_updates"] = hook.allowed_updates
            if hook.last_error_date is not None:
                info["last_error_date"] = hook.last_error_date
                info["last_error_message"] = hook.last_error_message
            return info

    @_method("getUpdates")
    async def get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        offset = _int(params, "offset")
        limit = max(1, min(100, _int(params, "limit") or 100))
        timeout = max(0, _int(params, "timeout") or 0)
        allowed = params.get("allowed_updates")
        with self._lock:
            if self.webhook.url:
                raise BotApiError(409, CONFLICT_WEBHOOK)
            if isinstance(allowed, list):
                self._allowed_updates = [str(a) for a in allowed]
            self._confirm(offset)
            for earlier in self._pollers:
                earlier.superseded = True
                earlier.wake()
            me = _Poller(loop, asyncio.Event())
            self._pollers.append(me)
        deadline = loop.time() + timeout
        try:
            while True:
                with self._lock:
                    me.event.clear()
                    if me.superseded:
                        raise BotApiError(409, CONFLICT_WEBHOOK if self.webhook.url else CONFLICT_POLLING)
                    batch = self._deliverable(limit)
                if batch:
                    return batch
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return []
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(me.event.wait(), remaining)
        finally:
            with self._lock:
                if me in self._pollers:
                    self._pollers.remove(me)

    def _confirm(self, offset: int | None) -> None:
        if offset is None or offset == 0:
            return
        if offset > 0:
            while self._updates and int(self._updates[0]["update_id"]) < offset:
                self._updates.popleft()
        else:
            while len(self._updates) > -offset:
                self._updates.popleft()

    def _deliverable(self, limit: int) -> list[dict[str, Any]]:
        allowed = self._allowed_updates
        if allowed:
            kept = [u for u in self._updates if any(k in allowed for k in u if k != "update_id")]
            self._updates = deque(kept)
        return [dict(u) for u in itertools.islice(self._updates, limit)]

    def _ensure_delivery(self) -> None:
        """Start the webhook delivery task (in the server's loop) unless it runs already."""
        if self._delivery is None or self._delivery.done():
            with contextlib.suppress(RuntimeError):
                self._delivery = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        async with httpx.AsyncClient(timeout=10.0) as client:
            while True:
                with self._lock:
                    hook = self.webhook
                    if not hook.url or not self._updates:
                        return
                    update = dict(self._updates[0])
                headers = {"Content-Type": "application/json"}
                if hook.secret_token:
                    headers["X-Telegram-Bot-Api-Secret-Token"] = hook.secret_token
                try:
                    response = await client.post(hook.url, content=json.dumps(update), headers=headers)
                    error = None if response.is_success else f"Wrong response from the webhook: {response.status_code}"
                except httpx.HTTPError as exc:
                    error = f"Connection failed: {type(exc).__name__}"
                with self._lock:
                    if error is None:
                        if self._updates and self._updates[0].get("update_id") == update["update_id"]:
                            self._updates.popleft()
                        self.webhook.delivered.append(update)
                        continue
                    self.webhook.last_error_date = int(time.time())
                    self.webhook.last_error_message = error
                await asyncio.sleep(self.webhook_retry_delay)


# -------------------------------------------------------------------------------------- decoding


async def _decode(request: Request) -> dict[str, Any]:
    """Parameters as the Bot API reads them: query string, then the body (form, multipart or JSON);
    the nested-object fields given as JSON text are decoded."""
    params: dict[str, Any] = dict(parse_qsl(request.url.query, keep_blank_values=True))
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if body:
        if kind == "application/json":
            try:
                loaded = json.loads(body)
            except ValueError:
                raise _bad("Bad Request: can't parse JSON encoded request") from None  # unverified
            if not isinstance(loaded, dict):
                raise _bad("Bad Request: can't parse JSON encoded request")
            params.update(loaded)
        elif kind == "multipart/form-data":
            params.update(_multipart(body, request.headers["content-type"]))
        else:
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    for name in JSON_FIELDS & params.keys():
        value = params[name]
        if isinstance(value, str):
            try:
                params[name] = json.loads(value) if value else None
            except ValueError:
                if name == "reply_markup":
                    raise _bad(MARKUP_JSON) from None
                raise _bad(f"Bad Request: can't parse {name} JSON object") from None
    return params


def _multipart(body: bytes, content_type: str) -> dict[str, str]:
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    out: dict[str, str] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if isinstance(name, str):
            payload = part.get_payload(decode=True)
            out[name] = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return out


def _int(params: Mapping[str, Any], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        return int(str(value))
    except ValueError:
        raise _bad(f'Bad Request: invalid parameter "{name}": integer expected') from None  # unverified text


def _bool(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name)
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("true", "1") if value is not None else False


def _chat_key(raw: Any) -> int | None:
    if raw is None or isinstance(raw, bool):
        return None
    try:
        return int(str(raw))
    except ValueError:
        return None


def _text(params: Mapping[str, Any]) -> ParsedText:
    text = params.get("text")
    mode = params.get("parse_mode")
    return check_message_text(str(text) if text is not None else None, str(mode) if mode else None)


def _clean_name(name: str) -> str:
    """tdlib ``clean_name``: surrounding whitespace dropped, cut to 128 characters."""
    return name.strip(_WHITESPACE)[:MAX_TOPIC_NAME].strip(_WHITESPACE)


def _scope_key(scope: Any) -> str:
    if not scope:
        return json.dumps({"type": "default"})
    return json.dumps(scope, sort_keys=True)
