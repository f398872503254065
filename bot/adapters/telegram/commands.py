"""Telegram's bot commands: the names people type (``/incidents``, ``/show 12``…), how each maps onto
the chat grammar of :mod:`bot.core.chat_commands`, its usage line and the one-line description the
command menu shows (``setMyCommands``).

Telegram command names are 1–32 characters of ``a-z 0-9 _`` (no ``/incident SUB`` as on Slack), so
each subcommand is a command of its own: ``/incidents`` is the grammar's ``list``, ``/show 12`` its
``show 12``, and so on. ``/start`` (what Telegram sends when someone opens a private chat with the bot)
answers like ``/help`` but is not listed in the menu. Also here: reading a command message (the name,
the text after it, the message it replies to) and the help and usage answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import BotCommand, Message

from bot.core.blocks import Block, Code, Header, Section
from bot.core.chat_commands import ChatReply, ParsedCommand, parse
from bot.errors import UsageError


@dataclass(frozen=True)
class TelegramCommand:
    """``/name ARGS``: ``grammar`` is the chat grammar's command it stands for."""

    name: str
    grammar: str
    args: str
    description: str

    @property
    def usage(self) -> str:
        """``/show ID``."""
        return f"/{self.name} {self.args}".rstrip()

    def parse(self, rest: str) -> ParsedCommand:
        """The grammar's command for ``rest`` (what follows ``/name``); ChatUsageError or InvalidStatus
        (both :class:`~bot.errors.UsageError`) when it cannot run as typed."""
        return parse(f"{self.grammar} {rest.strip()}")


COMMANDS: tuple[TelegramCommand, ...] = (
    TelegramCommand("incidents", "list", "", "Open and recent incidents"),
    TelegramCommand("show", "show", "ID", "One incident: card, cause, timeline"),
    TelegramCommand("ack", "ack", "ID", "Acknowledge an incident"),
    TelegramCommand("resolve", "resolve", "ID", "Resolve an incident by hand"),
    TelegramCommand("diagnose", "diagnose", "TARGET [STATUS]", "Run the 5xx checklist on a host or service"),
    TelegramCommand("runbook", "runbook", "NAME TARGET", "Run one runbook on a host or service"),
    TelegramCommand("request", "request", "ID NAME HOST [KEY=VALUE…]", "Ask to change a host; another approves"),
    TelegramCommand("approve", "approve", "REQUEST", "Approve someone else's request to change a host"),
    TelegramCommand("deny", "deny", "REQUEST", "Turn down (or withdraw) a request to change a host"),
    TelegramCommand("explain", "explain", "TEXT…", "Name the cause in pasted logs, or in the message replied to"),
    TelegramCommand("oncall", "oncall", "", "Who is on call"),
    TelegramCommand("help", "help", "", "The commands and how to use them"),
)
#: Commands answered like ``/help`` without being listed in the menu.
HELP_ALIASES = ("start",)
BY_NAME = {command.name: command for command in COMMANDS}


def bot_commands() -> list[BotCommand]:
    """What ``setMyCommands`` registers: every command with its one-line description."""
    return [BotCommand(command.name, command.description) for command in COMMANDS]


def help_lines() -> tuple[str, ...]:
    """One line per command: its usage, then what it does (aligned for a ``<pre>`` block)."""
    width = max(len(command.usage) for command in COMMANDS)
    lines = [f"{command.usage:<{width}}  {command.description}" for command in COMMANDS]
    lines.append("")
    lines.append("/explain also works as a reply to a message that holds the evidence.")
    return tuple(lines)


def command_text(message: Message) -> tuple[str, str]:
    """(command name without ``/`` and ``@botname``, lower-case; the text after the command)."""
    text = message.text or ""
    entity = next((e for e in message.entities if e.type == "bot_command" and e.offset == 0), None)
    word = message.parse_entity(entity) if entity is not None else (text.split(maxsplit=1) or [""])[0]
    return word[1:].partition("@")[0].lower(), text[len(word) :]


def replied_text(message: Message) -> str:
    """The text (or caption) of the message ``message`` replies to; "" when none."""
    replied = message.reply_to_message
    if replied is None:
        return ""
    return replied.text or replied.caption or ""


def usage_reply(command: TelegramCommand, exc: UsageError) -> ChatReply:
    """What bad arguments get: the error (unless it is only the grammar's usage line), the Telegram
    usage line, and every command."""
    said = exc.user_message()
    blocks: list[Block] = [] if said.lower().startswith("usage:") else [Section(said)]
    blocks += [Section(f"Usage: {command.usage}"), Code(help_lines())]
    return ChatReply(blocks, private=True)


def help_reply() -> ChatReply:
    return ChatReply([Header("Commands"), Code(help_lines())], private=True)
