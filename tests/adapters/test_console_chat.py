"""The console chat sender: each incident's messages print as one thread under one header; text from
logs and commands (``[error]``, ``[bold]``) prints literally, never as rich markup; each message is
also logged as plain text."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

import pytest
from rich.console import Console

from bot.adapters.console_chat import ConsoleChat
from bot.core.blocks import Actions, Button, Code, Context, Divider, Fields, Header, Section
from bot.core.incidents import Incident, OutboxMessage

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
LINE = "2026/11/30 03:25:01 [error] 12#12: *7 connect() failed (111: Connection refused) [bold]x[/bold]"


def incident(n: int) -> Incident:
    return Incident(
        id=str(n), key=f"k{n}", service="shop", routed=True, status=502, title="[red]shop[/red]", opened_at=T0
    )


def message(mid: str, n: int, kind: str) -> OutboxMessage:
    return OutboxMessage.model_validate({"id": mid, "incident_id": str(n), "kind": kind, "created_at": T0})


def console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, color_system=None, force_terminal=False), out


async def test_messages_print_as_one_thread_per_incident_with_log_text_kept_literal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    term, out = console()
    chat = ConsoleChat(term)
    blocks = [
        Header("Suspected cause: The upstream is down"),
        Section("nginx could not connect [error]"),
        Fields((("State", "triggered"), ("Service", "shop"))),
        Code((LINE,)),
        Divider(),
        Context("Also possible: upstream_timeout 10%"),
        Actions((Button("Acknowledge", "acknowledge", "1"),)),
    ]
    with caplog.at_level(logging.INFO, logger="bot.adapters.console_chat"):
        await chat.send(message("o1", 1, "opened"), blocks, incident(1))
        await chat.send(message("p1", 1, "post"), [Section("second [error] reply")], incident(1))
        await chat.send(message("o2", 2, "opened"), [Section("other")], incident(2))
    text = out.getvalue()
    assert text.count("incident #1") == 1 and text.count("incident #2") == 1  # one header per incident
    assert "[red]shop[/red]" in text  # the title is not markup either
    assert LINE in text
    assert "nginx could not connect [error]" in text and "second [error] reply" in text
    assert "State: triggered" in text and "[Acknowledge]" in text
    assert text.index("incident #1") < text.index("second [error] reply") < text.index("incident #2")
    assert "opened the thread" in text and "reply" in text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert LINE in logged and "incident #1 post" in logged


async def test_styles_do_not_leak_markup_into_a_colour_terminal() -> None:
    out = io.StringIO()
    chat = ConsoleChat(Console(file=out, width=200, color_system="standard", force_terminal=True))
    await chat.send(message("o1", 1, "opened"), [Code((LINE,))], incident(1))
    assert "[error]" in out.getvalue() and "[bold]x[/bold]" in out.getvalue()


async def test_a_long_evidence_line_is_never_broken_even_on_a_narrow_terminal() -> None:
    out = io.StringIO()
    chat = ConsoleChat(Console(file=out, width=40, color_system=None, force_terminal=False))
    await chat.send(message("o1", 1, "post"), [Code((LINE,)), Section(LINE)], incident(1))
    lines = out.getvalue().splitlines()
    assert [line for line in lines if line.endswith(LINE)] == [f"  │ > {LINE}", f"  │ {LINE}"]
    assert any(line.startswith("━━ incident #1") and line.endswith("━━") for line in lines)  # the header too
