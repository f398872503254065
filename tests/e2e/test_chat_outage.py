"""Issue #9 item 11 end to end, in one process on a fake clock (so ten minutes of outage take seconds):
the incident service, the real outbox worker, the real Slack sender (slack_sdk) against the fake Slack Web
API, the real Telegram sender (python-telegram-bot) against the fake Bot API with a forum chat, the SQLite
store and the HTTP API. Slack answers 503 to every post and edit for ten minutes while alerts keep opening
incidents and findings keep being posted, then recovers.

Asserted: during the outage each incident with Slack messages waiting has one ``delivery_degraded`` event,
``GET /api/incidents/{id}`` says ``delivery.slack.state == "degraded"`` with the messages waiting and the
error, and the incident's Telegram card warns "⚠ Slack delivery delayed since …"; afterwards one
``delivery_restored`` event each, the API says ``ok`` with nothing waiting, the Telegram cards lose the line,
and every Slack message arrived once, in the order queued, never two posts within a second."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from telegram import Bot

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.adapters.http import build_api
from bot.adapters.slack.sender import SlackSender, channel_by_service, slack_client
from bot.adapters.telegram.sender import FloodGate, TelegramSender, telegram_bot
from bot.core.cards import render_message
from bot.core.models import Alert
from bot.services.announce import Announcer
from bot.services.incidents import IncidentService
from bot.services.outbox import SLACK_PACE, TELEGRAM_GROUP_PACE, OutboxWorker
from bot.testing.http_fake import FakeHttpServer
from bot.testing.slack_api import FakeMessage, FakeSlack
from bot.testing.telegram_api import FORUM_CHAT_ID, FakeTelegram

T0 = datetime(2026, 11, 30, 10, 2, tzinfo=UTC)
CHANNEL = "C0INCIDENTS"
API_TOKEN = "outage-api-token"
OUTAGE = 600.0


class Clock:
    """One fake clock for the store, the worker, the flood gate and both fakes: ``sleep`` moves it on."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def elapsed(self) -> float:
        return (self.now - T0).total_seconds()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def slack(clock: Clock) -> Iterator[FakeSlack]:
    with FakeSlack(channels={CHANNEL: "incidents"}, clock=clock.seconds) as fake:
        yield fake


@pytest.fixture
def telegram(clock: Clock) -> Iterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram(clock=clock.seconds)
    with FakeHttpServer(fake, name="fake-telegram") as server:
        yield fake, server.url + "/bot"


@pytest.fixture
async def bot(telegram: tuple[FakeTelegram, str], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Bot]:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    fake, url = telegram
    async with telegram_bot(fake.token, url) as the_bot:
        yield the_bot


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlStore]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    await upgrade(engine)
    try:
        yield SqlStore(engine)
    finally:
        await engine.dispose()


def database_file(store: SqlStore) -> str:
    database = store.engine.url.database
    assert database is not None
    return database


def alert(service: str) -> Alert:
    labels = {"alertname": "HTTP5xx", "service": service}
    return Alert.model_validate(
        {"source": "alertmanager", "fingerprint": f"fp-{service}", "state": "firing", "status": 502, "labels": labels}
    )


async def run_until(outbox: OutboxWorker, clock: Clock, seconds: float) -> None:
    while clock.elapsed() < seconds:
        if not await outbox.run_once():
            clock.now += timedelta(seconds=1)


def queued(db: str) -> list[tuple[str, str, str, str]]:
    """Every outbox message as queued: (id, incident, target, kind), in order."""
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT id, incident_id, target, kind FROM outbox ORDER BY seq"))


def slack_thread(slack: FakeSlack, root: FakeMessage) -> list[FakeMessage]:
    return slack.thread(CHANNEL, root.ts)


async def test_ten_minutes_of_slack_503s_show_degraded_then_restored_and_lose_nothing(
    clock: Clock, slack: FakeSlack, telegram: tuple[FakeTelegram, str], bot: Bot, store: SqlStore
) -> None:
    fake_telegram, _ = telegram
    announce = Announcer(lambda incident: ["slack", "telegram"])
    service = IncidentService(
        store, route=lambda a: a.labels.get("service"), group=lambda a, s: f"{s}:5xx", clock=clock, announce=announce
    )
    senders: dict[str, Any] = {
        "slack": SlackSender(slack_client(slack.token, slack.api_url), store, channel_by_service({}, CHANNEL), clock),
        "telegram": TelegramSender(
            bot, store, lambda i: str(FORUM_CHAT_ID), clock, gate=FloodGate(now=clock.seconds, sleep=clock.sleep)
        ),
    }
    outbox = OutboxWorker(
        store, render_message, senders, clock, {"slack": SLACK_PACE, "telegram": TELEGRAM_GROUP_PACE}, sleep=clock.sleep
    )
    api = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=build_api(service, store, api_token=API_TOKEN)), base_url="http://bot"
    )

    async def shown(incident_id: str) -> dict[str, Any]:
        answer = await api.get(f"/api/incidents/{incident_id}", headers={"Authorization": f"Bearer {API_TOKEN}"})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def finding(incident_id: str, text: str) -> None:
        incident = await store.get_incident(incident_id)
        assert incident is not None
        async with store.transaction() as tx:
            await announce.say(tx, incident, "post", clock(), {"text": text})

    async def telegram_card(incident_id: str) -> str:
        thread = await store.get_thread(incident_id, "telegram")
        assert thread is not None
        return fake_telegram.message(int(thread.channel), int(thread.root)).text or ""

    async with api:
        await service.ingest([alert("shop")])
        await run_until(outbox, clock, 5)  # the card is up on both
        slack.fail(503, for_seconds=OUTAGE, methods=["chat.postMessage", "chat.update"])
        outage_from = clock.elapsed()
        for n in range(5):  # findings, then more incidents, while Slack is down
            await finding("1", f"web-{n}: runbooks done")
        await service.ingest([alert("api")])
        await run_until(outbox, clock, 120)
        await finding("2", "api: runbooks done")
        await service.ingest([alert("cart")])
        await run_until(outbox, clock, 300)

        for incident_id in ("1", "2", "3"):
            body = await shown(incident_id)
            kinds = [e["kind"] for e in body["timeline"] if e["kind"].startswith("delivery_")]
            assert kinds == ["delivery_degraded"], (incident_id, kinds)
            slack_state = body["delivery"]["slack"]
            assert slack_state["state"] == "degraded" and slack_state["waiting"] >= 1
            assert "HTTP 503" in slack_state["last_error"]
            assert body["delivery"].get("telegram", {"state": "ok"})["state"] == "ok"  # absent: nothing to report
            assert "⚠ Slack delivery delayed since 10:0" in await telegram_card(incident_id)

        await run_until(outbox, clock, outage_from + OUTAGE + 120)
        assert await store.pending_messages() == []
        for incident_id in ("1", "2", "3"):
            body = await shown(incident_id)
            kinds = [e["kind"] for e in body["timeline"] if e["kind"].startswith("delivery_")]
            assert kinds == ["delivery_degraded", "delivery_restored"], (incident_id, kinds)
            assert body["delivery"]["slack"]["state"] == "ok" and body["delivery"]["slack"]["waiting"] == 0
            assert "⚠" not in await telegram_card(incident_id)

    roots = slack.history(CHANNEL)
    assert len(roots) == 3  # one thread per incident, none twice
    messages = queued(database_file(store))
    for root in roots:
        thread = slack_thread(slack, root)
        incident_id = str(thread[0].metadata["event_payload"]["incident_id"]) if thread[0].metadata else "?"
        posts = [
            mid
            for mid, incident, target, kind in messages
            if (incident, target, kind) == (incident_id, "slack", "post")
        ]
        assert [m.outbox_id for m in thread[1:]] == posts  # each once, in the order queued
        assert "⚠" not in str(root.blocks)  # Slack's own card never warns about Slack
    posted = [c.at for c in slack.calls_to("chat.postMessage", ok=True)]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(posted)), posted
    failed = slack.calls_to("chat.postMessage", ok=False) + slack.calls_to("chat.update", ok=False)
    assert failed and max(c.at for c in failed) - min(c.at for c in failed) >= OUTAGE - 60  # it really was down
