"""Webhook mode: the real FastAPI app on a real uvicorn (127.0.0.1, a kernel-picked port) with the
TelegramApp mounted; the fake Bot API delivers updates to it with the secret header, as Telegram does,
and requests without the right secret are refused with 403 before anything is processed."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from telegram import Bot

from bot.adapters.telegram.sender import telegram_bot
from bot.adapters.telegram.updates import ALLOWED_UPDATES, SECRET_HEADER, WEBHOOK_PATH, WORKING, TelegramApp
from bot.core.incidents import IncidentState
from bot.errors import ChatRejected, ConfigError
from bot.testing.telegram_api import SUPERGROUP_CHAT_ID, FakeTelegram
from tests.adapters.telegram.inbound import ALICE, World, bot_reply, quiet, served, until

SECRET = "Tg-webhook_secret-0123456789"


@dataclass
class Hooked:
    world: World
    url: str
    client: httpx.AsyncClient

    @property
    def app(self) -> TelegramApp:
        return self.world.app

    async def post(self, body: bytes, secret: str | None = SECRET) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if secret is not None:
            headers[SECRET_HEADER] = secret
        return await self.client.post(self.url, content=body, headers=headers)


@pytest.fixture
async def hooked(bot: Bot, fake: FakeTelegram) -> AsyncIterator[Hooked]:
    fake.insecure_webhooks = True  # a plain-HTTP URL on a high port, which only a local server has
    api = FastAPI()
    async with served(api) as base, httpx.AsyncClient(timeout=5.0) as client:
        url = base + WEBHOOK_PATH
        world = World(bot, webhook_url=url, webhook_secret=SECRET)
        world.app.mount(api)
        await world.app.start(poll=False)
        try:
            yield Hooked(world, url, client)
        finally:
            await world.app.stop()


def message_update(update_id: int, text: str, *, message_id: int = 500) -> bytes:
    """An Update as Telegram sends it: someone writes ``text`` in the supergroup."""
    word = text.split(maxsplit=1)[0]
    update: dict[str, Any] = {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": ALICE,
            "chat": {"id": SUPERGROUP_CHAT_ID, "type": "supergroup", "title": "Ops"},
            "date": int(time.time()),
            "text": text,
            "entities": [{"type": "bot_command", "offset": 0, "length": len(word)}],
        },
    }
    return json.dumps(update).encode()


async def test_starting_registers_the_webhook_with_the_secret_and_the_update_types(
    hooked: Hooked, fake: FakeTelegram
) -> None:
    assert fake.webhook.url == hooked.url
    assert fake.webhook.secret_token == SECRET
    assert fake.webhook.allowed_updates == list(ALLOWED_UPDATES) == ["message", "callback_query"]
    assert next(c["command"] for c in fake.commands()) == "incidents"
    assert not fake.calls_to("getUpdates")  # a webhook bot never polls


async def test_updates_telegram_delivers_with_the_secret_are_handled(hooked: Hooked, fake: FakeTelegram) -> None:
    incident = await hooked.world.incident()
    asked = fake.user_message(SUPERGROUP_CHAT_ID, f"/ack {incident.id}")
    (reply,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
    assert (reply.text, reply.reply_to) == ("Acknowledged #1.", asked.message_id)
    assert hooked.world.store.incidents["1"].state is IncidentState.ACKNOWLEDGED
    query = fake.click(SUPERGROUP_CHAT_ID, reply.message_id, "resolve:1")
    answer = await until(lambda: fake.answers.get(query), what="the callback answer")
    assert answer["text"] == "Resolved #1."
    assert [sorted(u) for u in fake.webhook.delivered] == [["message", "update_id"], ["callback_query", "update_id"]]
    assert fake.webhook.last_error_message is None  # every delivery answered 2xx the first time


@pytest.mark.parametrize(
    "secret",
    [None, "", "wrong", SECRET[:-1], SECRET + "x", SECRET.lower(), "Ｔg-webhook_secret-0123456789"],
    ids=["missing", "empty", "wrong", "prefix", "longer", "case", "non-ascii"],
)
async def test_a_request_without_the_right_secret_is_refused_and_nothing_is_processed(
    hooked: Hooked, fake: FakeTelegram, secret: str | None
) -> None:
    await hooked.world.incident()
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    body = message_update(77, "/ack 1")
    response = await hooked.client.post(
        hooked.url, content=body, headers={k.encode(): v.encode() for k, v in headers.items()}
    )
    assert response.status_code == 403
    await quiet()
    assert hooked.world.store.incidents["1"].state is IncidentState.TRIGGERED
    assert fake.bot_messages(SUPERGROUP_CHAT_ID) == [] and not fake.calls_to("sendMessage")
    assert (hooked.app.refused, hooked.app.ignored) == (1, 0)


@pytest.mark.parametrize(
    "body",
    [b"not json", b"", b"[1, 2]", b'"update"', b'{"message": {"text": "/ack 1"}}'],
    ids=["text", "empty", "array", "string", "no-update-id"],
)
async def test_a_body_that_is_not_an_update_gets_400(hooked: Hooked, fake: FakeTelegram, body: bytes) -> None:
    response = await hooked.post(body)
    assert response.status_code == 400
    assert "not a Telegram Update" in response.json()["error"]
    await quiet(0.1)
    assert not fake.calls_to("sendMessage")


async def test_an_update_is_answered_200_at_once_before_a_slow_command_is_done(
    hooked: Hooked, fake: FakeTelegram
) -> None:
    hooked.world.diagnose.gate.clear()
    started = time.monotonic()
    response = await hooked.post(message_update(90, "/diagnose shop"))
    assert response.status_code == 200 and time.monotonic() - started < 1.0
    (working,) = await bot_reply(fake, SUPERGROUP_CHAT_ID)
    assert working.text == WORKING
    await until(lambda: hooked.world.diagnose.calls, what="the diagnosis to start")
    hooked.world.diagnose.gate.set()
    _, result = await bot_reply(fake, SUPERGROUP_CHAT_ID, count=2)
    assert result.bold()[0] == "diagnose shop"


async def test_a_stopped_app_answers_503_so_telegram_delivers_the_update_again_later(
    hooked: Hooked, fake: FakeTelegram
) -> None:
    await hooked.app.stop()
    response = await hooked.post(message_update(91, "/incidents"))
    assert response.status_code == 503
    wrong = await hooked.post(message_update(92, "/incidents"), secret="wrong")
    assert wrong.status_code == 403  # the secret is still checked first


# --------------------------------------------------------------------------- configuration


def test_the_webhook_is_not_mounted_without_a_secret(bot: Bot) -> None:
    world = World(bot)
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET: is not set"):
        world.app.mount(FastAPI())


def test_a_webhook_url_without_a_secret_or_a_secret_telegram_refuses_is_a_config_error(bot: Bot) -> None:
    ops = World(bot).ops
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET: is not set"):
        TelegramApp(bot, ops, webhook_secret=None, webhook_url="https://bot.example.com/telegram/webhook", chats=[])
    for bad in ("has space", "semi;colon", "x" * 257, ""):
        with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET: must be 1-256 characters"):
            TelegramApp(bot, ops, webhook_secret=bad, webhook_url=None, chats=[])


async def test_starting_in_the_wrong_mode_says_what_is_missing(bot: Bot, fake: FakeTelegram) -> None:
    polling = World(bot)
    with pytest.raises(ConfigError, match=r"telegram\.webhook_url: is not set"):
        await polling.app.start(poll=False)
    hooked = World(bot, webhook_url="https://bot.example.com/telegram/webhook", webhook_secret=SECRET)
    with pytest.raises(ValueError, match=r"telegram\.webhook_url is set"):
        await hooked.app.start(poll=True)
    assert not polling.app.running and not hooked.app.running


async def test_a_token_telegram_refuses_fails_the_start_with_a_clear_error(fake: FakeTelegram, api_url: str) -> None:
    wrong = telegram_bot("123456789:WrongTokenWrongTokenWrongToken", api_url)
    world = World(wrong)
    try:
        with pytest.raises(ChatRejected, match="TELEGRAM_BOT_TOKEN"):
            await world.app.start(poll=True)
        assert not world.app.running
        assert not fake.calls_to("setMyCommands") and not fake.calls_to("deleteWebhook")  # getMe failed first
    finally:
        await wrong.shutdown()
