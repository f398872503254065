"""Paging through `incident-bot serve` as composed for real (bot/chats.py, bot/serve.py): a service with an
on-call rotation and PagerDuty configured. An alert opens an incident; once its diagnosis is done the fake
PagerDuty Events API v2 gets one ``trigger`` (dedup key = the incident's key, the service and status in
the summary); acknowledging over the API sends ``acknowledge``; the alert resolving sends ``resolve`` —
each once, with the same routing key, even though PagerDuty answers 429 at first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.testing.pagerduty_api import FakePagerDuty
from tests.e2e.test_alertmanager import healthy, wait_until
from tests.test_serve import TOKENS, free_port

ROUTING_KEY = "R0UT1NGKEY0123456789ABCDEFGHIJKL"
CONFIG = """\
database_url: sqlite+aiosqlite:///{db}
listen: 127.0.0.1:{port}
services:
  shop:
    match: {{labels: {{service: shop}}}}
oncall:
  people:
    alice: {{name: Alice, pagerduty: true}}
  schedules:
    primary: {{time_zone: Europe/Berlin, rotation: weekly, members: [alice]}}
  escalation:
    - {{schedule: primary, after: 10m}}
"""


@pytest.fixture
def pagerduty() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
def serve(tmp_path: Path, pagerduty: FakePagerDuty) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "incident-bot.yaml"
    config.write_text(CONFIG.format(db=tmp_path / "bot.db", port=port))
    env = {
        **os.environ,
        **TOKENS,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PAGERDUTY_ROUTING_KEY": ROUTING_KEY,
        "PAGERDUTY_EVENTS_URL": pagerduty.events_url,
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve", "--config", str(config)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: healthy(f"{base}/healthz") or proc.poll() is not None, 30, "serve")
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def actions(fake: FakePagerDuty) -> list[str]:
    return [str(e.get("event_action")) for e in fake.events]


def test_an_incident_pages_through_pagerduty_and_ack_and_resolve_follow_once_each(
    serve: str, pagerduty: FakePagerDuty
) -> None:
    hook = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}
    api = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
    alert = {"id": "shop-502", "state": "firing", "status": 502, "service": "shop", "summary": "shop answers 502"}
    pagerduty.rate_limit(2, retry_after=1)
    assert httpx.post(f"{serve}/alerts/generic", json=alert, headers=hook, timeout=10).status_code == 202
    wait_until(lambda: "trigger" in actions(pagerduty), 60, "the PagerDuty trigger")
    [trigger] = [e for e in pagerduty.events if e["event_action"] == "trigger"]
    assert trigger["routing_key"] == ROUTING_KEY and trigger["dedup_key"] == "shop:5xx"
    assert "shop" in trigger["payload"]["summary"] and "502" in trigger["payload"]["summary"]

    answer = httpx.post(f"{serve}/api/incidents/1/ack", json={"actor": "alice"}, headers=api, timeout=10)
    assert answer.status_code == 200, answer.text
    wait_until(lambda: "acknowledge" in actions(pagerduty), 30, "the PagerDuty acknowledge")
    resolved = {**alert, "state": "resolved"}
    assert httpx.post(f"{serve}/alerts/generic", json=resolved, headers=hook, timeout=10).status_code == 202
    wait_until(lambda: "resolve" in actions(pagerduty), 30, "the PagerDuty resolve")
    time.sleep(2)  # anything sent twice would have arrived by now
    assert actions(pagerduty) == ["trigger", "acknowledge", "resolve"]
    assert {e["routing_key"] for e in pagerduty.events} == {ROUTING_KEY}
    assert {e["dedup_key"] for e in pagerduty.events} == {"shop:5xx"}
