"""``GET /api/incidents/{id}`` says how delivery to each chat target stands: ``degraded`` with since when,
the messages waiting and the last error while a ``delivery_degraded`` event is the target's latest,
``ok`` after a ``delivery_restored``; targets with nothing to report are left out; the body still
matches the published schema."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from bot.adapters.http import build_api
from bot.adapters.openapi import IncidentDetail
from bot.core.delivery import degraded_event, restored_event
from bot.testing import MemoryStore
from tests.adapters.test_http import API_TOKEN, make_service
from tests.services.test_outbox import T0, enqueue, incident

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, MemoryStore]]:
    store = MemoryStore()
    await incident(store, 1)
    api = build_api(make_service(store), store, api_token=API_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot") as c:
        yield c, store


async def test_an_incident_with_nothing_to_report_has_an_empty_delivery(
    client: tuple[httpx.AsyncClient, MemoryStore],
) -> None:
    api, _ = client
    body = (await api.get("/api/incidents/1", headers=AUTH)).json()
    assert body["delivery"] == {}
    IncidentDetail.model_validate(body)


async def test_a_degraded_target_shows_since_waiting_and_the_error_then_ok_once_restored(
    client: tuple[httpx.AsyncClient, MemoryStore],
) -> None:
    api, store = client
    for n in range(3):
        await enqueue(store, 1, "post", f"s{n}", target="slack", text="finding")
    await enqueue(store, 1, "post", "t0", target="telegram", text="finding")
    degraded = degraded_event(
        "1", at=T0 + timedelta(seconds=31), target="slack", since=T0, error="Slack chat.postMessage: HTTP 503",
        code="chat_transient", failures=6, waiting=3,
    )  # fmt: skip
    async with store.transaction() as tx:
        await tx.add_event(degraded)
    body = (await api.get("/api/incidents/1", headers=AUTH)).json()
    assert body["delivery"] == {
        "slack": {"target": "slack", "label": "Slack", "state": "degraded", "since": "2026-11-30T03:25:00Z",
                  "waiting": 3, "last_error": "Slack chat.postMessage: HTTP 503"},
        "telegram": {"target": "telegram", "label": "Telegram", "state": "ok", "since": None, "waiting": 1,
                     "last_error": None},
    }  # fmt: skip
    assert body["timeline"][-1]["kind"] == "delivery_degraded"
    IncidentDetail.model_validate(body)

    for mid in ("s0", "s1", "s2", "t0"):
        await store.mark_delivered(mid, T0 + timedelta(minutes=10))
    async with store.transaction() as tx:
        await tx.add_event(restored_event("1", at=T0 + timedelta(minutes=10), target="slack", since=T0, waiting=2))
    after = (await api.get("/api/incidents/1", headers=AUTH)).json()["delivery"]
    assert after == {
        "slack": {"target": "slack", "label": "Slack", "state": "ok", "since": "2026-11-30T03:35:00Z", "waiting": 0,
                  "last_error": "Slack chat.postMessage: HTTP 503"}
    }  # fmt: skip


async def test_the_schema_publishes_the_delivery_field(client: tuple[httpx.AsyncClient, MemoryStore]) -> None:
    api, _ = client
    schema = (await api.get("/openapi.json")).json()
    detail = schema["components"]["schemas"]["IncidentDetail"]["properties"]["delivery"]
    target = schema["components"]["schemas"]["TargetDelivery"]["properties"]
    assert detail["type"] == "object" and detail["additionalProperties"]["$ref"].endswith("/TargetDelivery")
    assert target["state"]["enum"] == ["ok", "degraded"]
