"""Helpers of the inbound Telegram tests: the real chat operations (ChatOps, IncidentService, the
memory store, the real explain pipeline) behind a :class:`TelegramApp`, a diagnose and an escalation
whose end the test decides, waiting for what the fake Bot API saw, and a real uvicorn serving an ASGI
app in the test's own event loop (the webhook must reach the loop the Application runs in)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Collection
from datetime import UTC, datetime
from typing import Any, TypeVar

import uvicorn
from starlette.types import ASGIApp
from telegram import Bot

from bot.adapters.telegram.sender import FloodGate
from bot.adapters.telegram.updates import TelegramApp
from bot.config import AllowList, ChatPermissions
from bot.core.incidents import Incident
from bot.core.models import Alert, Diagnosis
from bot.services.chatops import ChatOps, Policy
from bot.services.incidents import IncidentService
from bot.testing import MemoryStore, explain
from bot.testing.telegram_api import (
    DEFAULT_USER,
    FORUM_CHAT_ID,
    GROUP_CHAT_ID,
    SUPERGROUP_CHAT_ID,
    FakeMessage,
    FakeTelegram,
)

T = TypeVar("T")
T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
ALICE = DEFAULT_USER  # may respond and operate
BOB: dict[str, Any] = {"id": 515151, "is_bot": False, "first_name": "Bob"}  # may only read
MALLORY: dict[str, Any] = {"id": 616161, "is_bot": False, "first_name": "Mallory", "username": "mallory"}
SERVED = (str(FORUM_CHAT_ID), str(SUPERGROUP_CHAT_ID), str(GROUP_CHAT_ID))
REFUSED_LINE = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to"
    ' upstream, client: 127.0.0.1, server: shop.example.com, request: "GET / HTTP/1.1",'
    ' upstream: "http://127.0.0.1:18000/", host: "shop.example.com"'
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


class Gated:
    """An async operation that records its calls and finishes when the test opens ``gate`` (open by
    default)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.gate = asyncio.Event()
        self.gate.set()


class FakeDiagnose(Gated):
    """The ``diagnose`` of ChatOps: what ran over SSH in production is here the explain pipeline over a
    captured nginx line (a real diagnosis of a refused upstream)."""

    async def __call__(self, target: str, status: int | None, runbooks: tuple[str, ...], trigger: str) -> Diagnosis:
        self.calls.append((target, status, runbooks, trigger))
        await self.gate.wait()
        return explain(f"{REFUSED_LINE}\n{REFUSED_LINE}", status or 502)


class FakeEscalate(Gated):
    async def __call__(self, incident: Incident, actor: Any) -> str:
        self.calls.append((incident.id, actor.label))
        await self.gate.wait()
        return "paged the secondary on call"


def alert(fp: str, service: str = "shop", status: int = 502) -> Alert:
    labels = {"alertname": f"Site{status}", "service": service}
    return Alert.model_validate(
        {"source": "alertmanager", "fingerprint": fp, "state": "firing", "status": status, "labels": labels}
    )


class World:
    """The real chat operations behind a TelegramApp talking to the fake Bot API through ``bot``."""

    def __init__(
        self,
        bot: Bot,
        *,
        chats: Collection[str] = SERVED,
        users: Collection[str] = (),
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        answer_within: float = 1.0,
        grace: float = 2.0,
    ) -> None:
        self.clock = Clock()
        self.store = MemoryStore()
        self.incidents = IncidentService(
            self.store,
            route=lambda a: a.labels.get("service"),
            group=lambda a, service: f"{service}:{(a.status or 0) // 100}xx",
            clock=self.clock,
        )
        allowed = AllowList(users=[str(ALICE["id"])])
        self.policy = Policy(ChatPermissions(respond=allowed, operate=allowed), served=SERVED)
        self.diagnose = FakeDiagnose()
        self.escalate = FakeEscalate()
        self.ops = ChatOps(
            self.store,
            self.incidents,
            policies={"telegram": self.policy},
            explain=explain,
            diagnose=self.diagnose,
            clock=self.clock,
            escalate=self.escalate,
        )
        self.gate = FloodGate(per_chat_interval=0.0)  # the pace is the sender's tests' business
        self.app = TelegramApp(
            bot,
            self.ops,
            webhook_secret=webhook_secret,
            webhook_url=webhook_url,
            chats=chats,
            users=users,
            gate=self.gate,
            answer_within=answer_within,
            grace=grace,
        )

    async def incident(self, fp: str = "a1", service: str = "shop") -> Incident:
        await self.incidents.ingest([alert(fp, service)])
        found = [i for i in self.store.incidents.values() if i.service == service]
        return found[-1]


async def until(check: Callable[[], T | None], *, timeout: float = 5.0, what: str = "the condition") -> T:
    """Wait until ``check()`` returns something truthy (and return it); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


async def bot_reply(
    fake: FakeTelegram, chat_id: int, *, after: int = 0, count: int = 1, timeout: float = 5.0
) -> list[FakeMessage]:
    """The first ``count`` messages the bot sent to ``chat_id`` after message id ``after``."""

    def found() -> list[FakeMessage] | None:
        sent = [m for m in fake.bot_messages(chat_id) if m.message_id > after][:count]
        return sent if len(sent) >= count else None

    return await until(
        found,
        timeout=timeout,
        what=f"{count} bot message(s) in chat {chat_id}",
    )


async def quiet(seconds: float = 0.3) -> None:
    """Give the bot time to do something it should not (used before asserting it did nothing)."""
    await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` on a real uvicorn at ``http://127.0.0.1:PORT`` in the running event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    await until(lambda: server.started or task.done(), what="uvicorn to start")
    if task.done():
        task.result()
        raise AssertionError("uvicorn stopped at once")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)
        sock.close()
