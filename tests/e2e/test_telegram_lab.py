"""The Telegram issue's end-to-end check: the real Prometheus Alertmanager alerting a real `incident-bot
serve` (SQLite, long polling) about the fault lab with its upstream down, with Telegram configured
against the local fake Bot API (bot/testing/telegram_api.py) and the incident chat a forum supergroup.

Asserted on the fake: one topic for the incident holding the status message and the thread — the probe,
the lab host's findings read over SSH, the cause naming ``upstream_down`` with nginx's ``(111:
Connection refused)`` line; pressing Acknowledge in the inline keyboard edits the status message; the
resolution closes the topic.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.lab import Lab
from bot.testing.http_fake import FakeHttpServer
from bot.testing.telegram_api import FORUM_CHAT_ID, TOKEN, FakeTelegram
from tests.e2e.test_alertmanager import ALERTMANAGER, AMTOOL, TOKENS, Processes, amtool, start_stack, wait_until
from tests.labfixture import running_lab
from tests.test_serve import free_port


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-tg-") as the_lab:
        yield the_lab


@pytest.fixture
def telegram() -> Iterator[tuple[FakeTelegram, str]]:
    fake = FakeTelegram()
    with FakeHttpServer(fake, name="fake-telegram") as server:
        yield fake, server.url + "/bot"


def said(fake: FakeTelegram) -> str:
    return "\n".join(m.text or "" for m in fake.messages(FORUM_CHAT_ID))


def test_one_topic_with_findings_and_cause_acknowledged_with_the_button_and_closed_on_resolution(
    lab: Lab, telegram: tuple[FakeTelegram, str], tmp_path: Path
) -> None:
    fake, api_url = telegram
    if not (Path(ALERTMANAGER).exists() and Path(AMTOOL).exists()):
        pytest.fail("prometheus-alertmanager is not installed: run ./dev setup")
    bot_port, am_port = free_port(), free_port()
    document: dict[str, Any] = yaml.safe_load((lab.paths.root / "incident-bot.yaml").read_text())
    document["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    document["listen"] = f"127.0.0.1:{bot_port}"
    document["services"]["lab"]["chat"] = {"telegram_chat": str(FORUM_CHAT_ID)}
    document["telegram"] = {"allow": {"respond": {"channels": [str(FORUM_CHAT_ID)]}}}
    config = tmp_path / "incident-bot.yaml"
    config.write_text(yaml.safe_dump(document))
    env = {
        **TOKENS,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "TELEGRAM_BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": api_url,
    }
    labels = ["alertname=HTTP5xx", "service=lab", "status=502", f"instance={lab.url}"]
    procs = Processes()
    lab.rotate_logs()
    lab.break_("upstream_down")
    try:
        log = start_stack(
            procs, tmp_path, config, database_url=document["database_url"], ports=(bot_port, am_port), env=env
        )
        amtool(f"http://127.0.0.1:{am_port}", "alert", "add", *labels, "--annotation=summary=the lab returns 502")
        wait_until(lambda: "upstream_down" in said(fake), 120, f"the cause in the topic\n{log.read_text()}")
        [topic] = fake.topics(FORUM_CHAT_ID)
        assert topic.name.startswith("lab 502") and not topic.closed
        in_topic = fake.messages(FORUM_CHAT_ID, thread_id=topic.thread_id)
        card, thread = in_topic[0], "\n".join(m.text or "" for m in in_topic[1:])
        assert "Incident #1" in (card.text or "") and ("Acknowledge", "acknowledge:1") in card.buttons
        assert "Confirmation probe from the bot" in thread and "lab: runbooks done" in thread
        assert "(111: Connection refused)" in thread and "connect() to unix:" in thread
        assert len(fake.messages(FORUM_CHAT_ID)) == len(in_topic)  # nothing outside the incident's topic

        fake.click(FORUM_CHAT_ID, card.message_id, "acknowledge:1")
        wait_until(lambda: "acknowledged" in (fake.message(FORUM_CHAT_ID, card.message_id).text or ""), 30, "edit")
        assert fake.answers  # the button press was answered

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        amtool(f"http://127.0.0.1:{am_port}", "alert", "add", *labels, f"--end={now}")
        wait_until(lambda: fake.topic(FORUM_CHAT_ID, topic.thread_id).closed, 30, "the topic to close")
        assert "Resolved" in said(fake)
        assert "resolved" in (fake.message(FORUM_CHAT_ID, card.message_id).text or "")
        dump = os.environ.get("INCIDENT_BOT_THREAD_DUMP")  # the README's example topic comes from here
        if dump:
            topic_messages = fake.messages(FORUM_CHAT_ID, thread_id=topic.thread_id)
            Path(dump).write_text(json.dumps([m.text for m in topic_messages], indent=1))
    finally:
        procs.stop()
        lab.repair()
