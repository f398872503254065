"""Chat commands: the ``/incident`` grammar and what a chat adapter hands the operations behind it.

Slack's ``/incident SUB ARGS`` and Telegram's ``/SUB ARGS`` both become :func:`parse` of ``"SUB ARGS"``;
the adapter then calls :meth:`Operations.run` (or :meth:`Operations.act` for a card button) with an
:class:`Actor` saying who asked and where, and shows the :class:`ChatReply`. Arguments are validated
here (incident ids, status codes, names): nothing typed reaches a shell. Grammar::

    list | show ID | ack ID | resolve ID | diagnose TARGET [STATUS] | runbook NAME TARGET
    request ID NAME HOST [KEY=VALUE…] | approve REQUEST | deny REQUEST | explain TEXT… | oncall | help

``request`` asks for a mutating runbook (restart a unit, clear a cache) on one host of incident ``ID``;
it runs once a second operator approves it (its card's button, or ``approve REQUEST``).

``incidents``, ``ls`` mean ``list``; ``acknowledge`` means ``ack``; ``close`` means ``resolve``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

from bot.core.approvals import APPROVAL_ID
from bot.core.blocks import Block
from bot.core.models import parse_status
from bot.errors import UsageError

USAGE = """\
/incident list                       open and recent incidents
/incident show ID                    one incident: card, cause, timeline
/incident ack ID                     acknowledge
/incident resolve ID                 resolve by hand
/incident diagnose TARGET [STATUS]   run the 5xx checklist on a host or service of the configuration
/incident runbook NAME TARGET        run one runbook on a host or service of the configuration
/incident request ID NAME HOST [KEY=VALUE…]
                                     ask to run a runbook that changes the host (restart_unit unit=…,
                                     clear_cache cache=…); a second operator approves it
/incident approve REQUEST            approve someone else's request (or use its button)
/incident deny REQUEST               turn a request down (or withdraw your own)
/incident explain TEXT…              read pasted logs or command output and name the cause
/incident oncall                     who is on call
/incident help                       this text"""


@dataclass(frozen=True)
class Actor:
    """Who asked, and where: ``user`` is the platform's id (Slack ``U…``, a Telegram user id), ``name``
    what people call them, ``channel`` the Slack channel or Telegram chat of the request, ``groups`` the
    Slack user groups the adapter found them in."""

    platform: str
    user: str
    name: str
    channel: str
    groups: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """How the timeline and the card name them: ``@alice (slack)``."""
        return f"{self.name} ({self.platform})"


@dataclass(frozen=True)
class ChatReply:
    """An answer: ``private`` only for the asker (Slack ephemeral; Telegram a reply to them);
    ``incident_id`` when it belongs in that incident's thread."""

    blocks: list[Block]
    private: bool = False
    incident_id: str | None = None


@dataclass(frozen=True)
class ParsedCommand:
    """A valid command: ``slow`` ones (SSH, heavy reading) are acknowledged at once and answered later."""

    name: str
    args: tuple[str, ...] = ()
    text: str = ""

    @property
    def slow(self) -> bool:
        return self.name in ("diagnose", "runbook", "explain", "approve")


#: At most this many ``KEY=VALUE`` parameters after ``request ID NAME HOST``.
MAX_PARAMS = 8
_ALIASES = {"incidents": "list", "ls": "list", "acknowledge": "ack", "close": "resolve", "who": "oncall"}
#: name → (fewest, most) arguments and the usage line.
_ARITY: dict[str, tuple[int, int, str]] = {
    "list": (0, 0, "list"),
    "show": (1, 1, "show ID"),
    "ack": (1, 1, "ack ID"),
    "resolve": (1, 1, "resolve ID"),
    "diagnose": (1, 2, "diagnose TARGET [STATUS]"),
    "runbook": (2, 2, "runbook NAME TARGET"),
    "request": (3, 3 + MAX_PARAMS, "request ID NAME HOST [KEY=VALUE…]"),
    "approve": (1, 1, "approve REQUEST"),
    "deny": (1, 1, "deny REQUEST"),
    "oncall": (0, 8, "oncall"),
    "help": (0, 8, "help"),
}
_ID = re.compile(r"#?(\d{1,12})")
#: An ``oncall`` argument: a name, ``@user``, a duration or time, or Slack's escaped mention ``<@U123|alice>``.
_WORD = re.compile(r"[@A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}|<@[A-Z0-9]{2,32}(?:\|[A-Za-z0-9_.-]{1,80})?>")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\[\]-]{0,254}")
_PARAM = re.compile(r"([a-z][a-z0-9_]{0,31})=([A-Za-z0-9][A-Za-z0-9_.:@-]{0,254})")


class ChatUsageError(UsageError):
    """A command that cannot be run as typed; its message is the usage line to show."""

    code = "chat_usage"


def incident_id(value: str) -> str:
    found = _ID.fullmatch(value.strip())
    if found is None:
        raise ChatUsageError(f"{value!r} is not an incident id (a number, like 12 or #12)")
    return str(int(found.group(1)))


def parse(text: str) -> ParsedCommand:
    """``text`` after the command (``/incident``): a valid command, or :class:`ChatUsageError`."""
    stripped = text.strip()
    if not stripped:
        return ParsedCommand("help")
    head, _, rest = stripped.partition(" ")
    name = _ALIASES.get(head.lower(), head.lower())
    if name == "explain":
        if not rest.strip():
            raise ChatUsageError("usage: explain TEXT… (paste the log lines or command output after it)")
        return ParsedCommand("explain", text=rest.strip())
    if name not in _ARITY:
        raise ChatUsageError(f"unknown command {head!r}; try: help")
    args = tuple(rest.split())
    fewest, most, usage = _ARITY[name]
    if not fewest <= len(args) <= most:
        raise ChatUsageError(f"usage: {usage}")
    if name in ("show", "ack", "resolve"):
        args = (incident_id(args[0]),)
    elif name == "diagnose":
        for arg in args[:1]:
            _name_arg(arg, "TARGET")
        if len(args) == 2:
            status = parse_status(args[1])  # InvalidStatus (a UsageError) says why
            args = (args[0], str(status))
    elif name == "runbook":
        _name_arg(args[0], "NAME")
        _name_arg(args[1], "TARGET")
    elif name == "request":
        _name_arg(args[1], "NAME")
        _name_arg(args[2], "HOST")
        args = (incident_id(args[0]), args[1], args[2], *_params(args[3:]))
    elif name in ("approve", "deny"):
        args = (approval_id(args[0]),)
    elif name == "oncall":
        for arg in args:
            if _WORD.fullmatch(arg) is None:
                raise ChatUsageError(
                    f"{arg[:40]!r} is not a person, duration or time (usage: oncall [override @user 2h])"
                )
    return ParsedCommand(name, args)


def approval_id(value: str) -> str:
    """A request's id as the bot printed it (10 hex digits), or :class:`ChatUsageError`."""
    found = APPROVAL_ID.fullmatch(value.strip().lower())
    if found is None:
        raise ChatUsageError(f"{value[:40]!r} is not a request id (10 letters a-f and digits, shown on the request)")
    return found.group(0)


def _params(words: tuple[str, ...]) -> tuple[str, ...]:
    seen: set[str] = set()
    for word in words:
        found = _PARAM.fullmatch(word)
        if found is None:
            raise ChatUsageError(f"{word[:40]!r} is not a parameter (KEY=VALUE, e.g. unit=gunicorn.service)")
        if found.group(1) in seen:
            raise ChatUsageError(f"parameter {found.group(1)!r} is given twice")
        seen.add(found.group(1))
    return words


def request_params(args: tuple[str, ...]) -> dict[str, str]:
    """The ``KEY=VALUE`` parameters of a parsed ``request`` (its args after ``ID NAME HOST``)."""
    return {key: value for key, _, value in (word.partition("=") for word in args[3:])}


def _name_arg(value: str, what: str) -> None:
    if _NAME.fullmatch(value) is None:
        raise ChatUsageError(f"{what} {value[:40]!r} is not a host, service or runbook name")


class Operations(Protocol):
    """What chat commands and buttons do (``bot.services.chatops.ChatOps``); every failure is a reply."""

    async def run(self, actor: Actor, command: ParsedCommand) -> ChatReply: ...

    async def act(self, actor: Actor, action: str, incident: str) -> ChatReply: ...
