"""Helpers of the inbound Slack tests: the real SlackApp (slack-bolt) mounted in a real FastAPI app served
by uvicorn on 127.0.0.1:0 in the test's own event loop, in front of the real ChatOps, IncidentService and
a MemoryStore; requests signed for real (platforms.md §1.6); outbound calls and ``response_url`` answers
go to the fake Slack Web API.

The ``diagnose`` port of ChatOps is :class:`GatedDiagnose`: it knows the hosts of a small configuration
(anything else is refused as the real one refuses it) and holds each run until the test releases it, so
a test can see the acknowledgement arrive while the work is still going on.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import uvicorn
from fastapi import FastAPI

from bot.adapters.slack.app import SlackApp
from bot.adapters.slack.blocks import render
from bot.adapters.slack.sender import slack_client
from bot.config import AllowList, ChatPermissions
from bot.core.cards import status_card
from bot.core.chat_commands import Operations
from bot.core.models import Diagnosis
from bot.services.chatops import ChatOps, Policy
from bot.services.explain import explain_text
from bot.services.incidents import IncidentService
from bot.services.targets import TargetRefused
from bot.testing import MemoryStore
from bot.testing.slack_api import FakeSlack
from tests.adapters.slack.helpers import make_incident, stored

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
FORM = "application/x-www-form-urlencoded"
ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"
RESPONDERS = "S0RESPONDERS"
#: Where incidents are posted (``served`` channels of the policy).
INCIDENTS = "C0INCIDENTS"
#: A channel the bot is in that is not an incident channel.
OTHER = "C0API"
#: A real capture: nginx in front of a stopped gunicorn (the bundled sample).
SAMPLE = resources.files("bot").joinpath("samples/502-upstream-down.txt").read_text()


def signed_headers(secret: str, body: bytes, ts: int | None = None, content_type: str = FORM) -> dict[str, str]:
    """Slack's request signature over ``body`` at ``ts`` (now by default)."""
    stamp = str(int(time.time()) if ts is None else ts)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": "v0=" + digest, "Content-Type": content_type}


def form(fields: Mapping[str, str]) -> bytes:
    return urlencode(fields).encode()


def interactive(payload: Mapping[str, Any]) -> bytes:
    return f"payload={quote(json.dumps(payload))}".encode()


class GatedDiagnose:
    """ChatOps' ``diagnose`` port: hosts and services of a small config only; each run waits for ``release``
    and then reads the captured sample, as a run over SSH on that host would have found it."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.calls: list[tuple[str, int | None, tuple[str, ...], str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, target: str, status: int | None, runbooks: tuple[str, ...], trigger: str) -> Diagnosis:
        self.calls.append((target, status, runbooks, trigger))
        if target not in self.known:
            raise TargetRefused(f"{target!r} is not a host or service of the configuration")
        await self.release.wait()
        return explain_text(SAMPLE, status)


@asynccontextmanager
async def served(api: FastAPI) -> AsyncIterator[str]:
    """``api`` served by uvicorn on 127.0.0.1 (a port the kernel picks) in this event loop."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api, log_level="warning", access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                raise RuntimeError(f"uvicorn did not start: {task.exception()!r}")
            await asyncio.sleep(0.005)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
        sock.close()


@dataclass
class Bench:
    slack: FakeSlack
    store: MemoryStore
    app: SlackApp
    http: httpx.AsyncClient
    diagnose: GatedDiagnose
    secret: str = SECRET

    async def post(
        self, body: bytes, *, ts: int | None = None, secret: str | None = None, headers: Mapping[str, str] | None = None
    ) -> httpx.Response:
        """POST a signed request to ``/slack/events`` (signed with ``secret``, at ``ts``)."""
        sent = {**signed_headers(secret or self.secret, body, ts), **(headers or {})}
        return await self.http.post("/slack/events", content=body, headers=sent)

    async def command(self, text: str, *, user: str = ALICE, channel: str = INCIDENTS) -> tuple[httpx.Response, str]:
        """Type ``/incident text``: Slack's answer to the request and the command's ``response_url``."""
        fields = self.slack.slash_command(text, user=user, channel=channel)
        return await self.post(form(fields)), fields["response_url"]

    async def click(
        self, action: str, incident: str, *, user: str = ALICE, channel: str = INCIDENTS, message_ts: str
    ) -> tuple[httpx.Response, str]:
        """Click button ``action`` of the card ``message_ts``: Slack's answer and the click's ``response_url``."""
        payload = self.slack.block_actions(action, incident, user=user, channel=channel, message_ts=message_ts)
        return await self.post(interactive(payload)), str(payload["response_url"])

    async def card(self, incident_id: str = "1", channel: str = INCIDENTS) -> str:
        """Post the incident's status card as the outbox would (the root of its thread); its ``ts``."""
        incident = await self.store.get_incident(incident_id)
        assert incident is not None
        message = render(status_card(incident, None), incident_id=incident_id)
        web = slack_client(self.slack.token, self.slack.api_url)
        answer = await web.chat_postMessage(channel=channel, text=message.text, blocks=message.blocks)
        return str(answer["ts"])


def chat_ops(store: MemoryStore, diagnose: GatedDiagnose) -> ChatOps:
    """The real chat operations: alice may respond and operate, members of S0RESPONDERS may respond."""

    def now() -> datetime:
        return datetime.now(UTC)

    incidents = IncidentService(store, route=lambda alert: None, group=lambda alert, service: "test", clock=now)
    allow = ChatPermissions(respond=AllowList(users=[ALICE], groups=[RESPONDERS]), operate=AllowList(users=[ALICE]))
    return ChatOps(
        store,
        incidents,
        policies={"slack": Policy(allow, served=[INCIDENTS])},
        explain=lambda text: explain_text(text, None),
        diagnose=diagnose,
        clock=now,
    )


@dataclass
class Wired:
    store: MemoryStore
    diagnose: GatedDiagnose
    app: SlackApp


async def wire(
    slack: FakeSlack,
    *,
    ops: Callable[[MemoryStore, GatedDiagnose], Operations] = chat_ops,
    clock: Callable[[], float] = time.time,
    signing_secret: str | None = SECRET,
    app_token: str | None = None,
) -> Wired:
    """The SlackApp in front of ``ops`` (the real ChatOps by default), talking to the fake Slack; alice,
    bob (in S0RESPONDERS) and carol exist there; incident #1 (shop, 502, triggered) is in the store."""
    slack.users.update({ALICE: "alice", BOB: "bob", CAROL: "carol"})
    slack.usergroups[RESPONDERS] = [BOB]
    store = MemoryStore()
    await stored(store, make_incident(1))
    diagnose = GatedDiagnose({"web-1", "shop"})
    app = SlackApp(
        slack_client(slack.token, slack.api_url),
        ops(store, diagnose),
        signing_secret=signing_secret,
        app_token=app_token,
        groups=[RESPONDERS],
        clock=clock,
        connect_timeout=5.0,
    )
    return Wired(store, diagnose, app)


@asynccontextmanager
async def bench(
    slack: FakeSlack,
    *,
    ops: Callable[[MemoryStore, GatedDiagnose], Operations] = chat_ops,
    clock: Callable[[], float] = time.time,
) -> AsyncIterator[Bench]:
    """:func:`wire`, mounted at ``/slack/events`` of a FastAPI app served by uvicorn."""
    wired = await wire(slack, ops=ops, clock=clock)
    api = FastAPI()
    wired.app.mount(api)
    try:
        async with served(api) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            yield Bench(slack, wired.store, wired.app, http, wired.diagnose)
    finally:
        await wired.app.stop()


async def eventually(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``check`` until it returns something truthy (then return it) or fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {check}")
        await asyncio.sleep(0.01)
