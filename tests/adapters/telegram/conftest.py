"""One fake Telegram Bot API server per test module (its state reset before each test) and a real
python-telegram-bot ``Bot`` talking to it through ``base_url``, as in production.

PTB ≥ 22.2 warns (PTBDeprecationWarning) when it builds a ``RetryAfter`` unless ``PTB_TIMEDELTA`` is
set, and this project turns warnings into errors; the tests opt in to the future behaviour like a
deployment should. ``test_sender.py`` pins what happens without it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest
from telegram import Bot

from bot.adapters.telegram.sender import telegram_bot
from bot.testing.http_fake import FakeHttpServer
from bot.testing.telegram_api import FakeTelegram


@pytest.fixture(autouse=True)
def ptb_timedelta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PTB_TIMEDELTA", "true")


@pytest.fixture(scope="module")
def telegram_server() -> Iterator[tuple[FakeTelegram, FakeHttpServer]]:
    fake = FakeTelegram()
    with FakeHttpServer(fake, name="fake-telegram") as server:
        yield fake, server


@pytest.fixture
def fake(telegram_server: tuple[FakeTelegram, FakeHttpServer]) -> FakeTelegram:
    fake, _ = telegram_server
    fake.reset()
    fake.enforce(None)
    fake.clock = time.monotonic
    fake.insecure_webhooks = False
    return fake


@pytest.fixture
def api_url(telegram_server: tuple[FakeTelegram, FakeHttpServer]) -> str:
    return telegram_server[1].url + "/bot"


@pytest.fixture
async def bot(fake: FakeTelegram, api_url: str) -> AsyncIterator[Bot]:
    async with telegram_bot(fake.token, api_url) as bot:
        yield bot
