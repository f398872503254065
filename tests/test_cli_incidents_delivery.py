"""``incidents show`` on a real SQLite store says how delivery to each chat target stands: a degraded
target's line with since when, the messages waiting and the last error, and the same as ``delivery`` in
``--json`` (the shape of ``GET /api/incidents/{id}``); ``export`` is unchanged by it."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.core.delivery import degraded_event
from bot.core.incidents import OutboxMessage
from bot.services.incidents import IncidentService
from tests.services.test_incidents import Clock, alert, group_of, service_of
from tests.test_cli_incidents import cli


@pytest.fixture
async def config(tmp_path: Path) -> str:
    """Incident #1 whose Slack delivery is degraded with two messages waiting."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    engine = create_engine(url)
    try:
        await upgrade(engine)
        store = SqlStore(engine)
        clock = Clock()
        await IncidentService(store, route=service_of, group=group_of, clock=clock).ingest([alert("a1")])
        async with store.transaction() as tx:
            for n in range(2):
                body = {"id": f"s{n}", "incident_id": "1", "kind": "post", "created_at": clock.now,
                        "payload": {"text": "finding"}, "target": "slack"}  # fmt: skip
                await tx.enqueue_message(OutboxMessage.model_validate(body))
            degraded = degraded_event(
                "1", at=clock.now + timedelta(seconds=40), target="slack", since=clock.now,
                error="Slack chat.postMessage: HTTP 503", code="chat_transient", failures=5, waiting=2,
            )  # fmt: skip
            await tx.add_event(degraded)
    finally:
        await engine.dispose()
    path = tmp_path / "incident-bot.yaml"
    path.write_text(f"database_url: {url}\n")
    return str(path)


def test_show_prints_the_degraded_target_and_its_waiting_messages(config: str) -> None:
    shown = cli("incidents", "show", "1", "--config", config)
    assert shown.returncode == 0, shown.stderr
    assert "delivery_degraded" in shown.stdout  # on the timeline
    line = "delivery to Slack: degraded since 2026-11-30 03:25:00Z, 2 waiting, last error: "
    assert line + "Slack chat.postMessage: HTTP 503\n" in shown.stdout
    assert "delivery to default: ok, 1 waiting\n" in shown.stdout  # the card, queued for the default target


def test_show_json_has_the_delivery_field_of_the_api(config: str) -> None:
    shown = cli("incidents", "show", "1", "--json", "--config", config)
    assert shown.returncode == 0, shown.stderr
    slack = json.loads(shown.stdout)["delivery"]["slack"]
    assert slack == {"target": "slack", "label": "Slack", "state": "degraded", "since": "2026-11-30T03:25:00Z",
                     "waiting": 2, "last_error": "Slack chat.postMessage: HTTP 503"}  # fmt: skip


def test_export_still_works_beside_it(config: str) -> None:
    exported = cli("incidents", "export", "1", "--format", "json", "--config", config)
    assert exported.returncode == 0, exported.stderr
    assert "delivery_degraded" in exported.stdout
