"""The console chat sender: what would be posted, shown as a thread per incident on the terminal and in the log.

It is the sender ``serve`` uses when no chat is configured. The first message of an incident prints a
header line naming it; every message (``opened``, ``updated``, ``resolved``, ``post``) then prints as a
reply under it, its blocks rendered with rich. Every piece of text goes through ``Text`` (never markup),
so evidence such as ``[error] connect() failed`` prints as it is, and rich never breaks a line
(``soft_wrap``): a long log line stays one line, whole when copied or piped to a file. Each message is
also logged as plain text (``bot.adapters.console_chat``, INFO). It never fails: the outbox marks each
message delivered.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.text import Text

from bot.core.blocks import Actions, Block, Code, Context, Divider, Fields, Header, Section, plain_text
from bot.core.incidents import Incident, OutboxMessage

log = logging.getLogger(__name__)

_KIND = {
    "opened": "opened the thread",
    "updated": "status card updated",
    "resolved": "resolved",
    "post": "reply",
}
_BAR = "  │ "


def _lines(block: Block) -> list[Text]:
    match block:
        case Header(text=text):
            return [Text(line, style="bold") for line in text.splitlines() or [""]]
        case Section(text=text):
            return [Text(line) for line in text.splitlines() or [""]]
        case Context(text=text):
            return [Text(line, style="dim italic") for line in text.splitlines() or [""]]
        case Fields(pairs=pairs):
            return [Text.assemble((f"{key}: ", "dim"), value) for key, value in pairs]
        case Code(lines=lines):
            return [Text.assemble(("> ", "dim"), (line, "cyan")) for line in lines]
        case Divider():
            return [Text("─" * 24, style="dim")]
        case Actions(buttons=buttons):
            return [Text(" ".join(f"[{b.label}]" for b in buttons), style="dim")]


def render_thread_entry(message: OutboxMessage, blocks: list[Block], incident: Incident) -> Text:
    """One message as it appears under its incident's header."""
    out = Text()
    out.append("  ↳ ", style="dim")
    out.append(_KIND.get(message.kind, message.kind), style="bold")
    out.append(f"  {message.created_at.strftime('%H:%M:%S')}", style="dim")
    for block in blocks:
        for line in _lines(block):
            out.append("\n")
            out.append(_BAR, style="dim")
            out.append_text(line)
    return out


def render_header(incident: Incident) -> Text:
    """The line that starts an incident's thread."""
    out = Text()
    out.append("━━ ", style="bold red")
    out.append(f"incident #{incident.id}", style="bold")
    out.append(f" · {incident.service or 'unrouted'}")
    if incident.status is not None:
        out.append(f" · {incident.status}")
    if incident.title:
        out.append(f" · {incident.title}")
    out.append(" ━━", style="bold red")
    return out


class PipeSafeConsole(Console):
    """A rich Console that goes quiet when its reader goes away (``… 2>&1 | head``) instead of raising
    ``SystemExit`` (rich's default) from whichever task happened to print: the bot (or the demo) keeps
    working and cleans up; only the output is lost."""

    def on_broken_pipe(self) -> None:
        self.quiet = True


class ConsoleChat:
    """A ChatSender printing each incident's messages as a thread (one header per incident)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._threads: set[str] = set()

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        if incident.id not in self._threads:
            self._threads.add(incident.id)
            self.console.print(render_header(incident), soft_wrap=True)
        self.console.print(render_thread_entry(message, blocks, incident), soft_wrap=True)
        log.info("incident #%s %s:\n%s", incident.id, message.kind, plain_text(blocks))
