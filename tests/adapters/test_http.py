"""The HTTP API: every branch of the alert endpoints (status and JSON body), auth failures storing
nothing, the read side and the health check. Payloads are the real ones Alertmanager 0.25 sent
(tests/fixtures/alerts/alertmanager/)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bot.adapters.http import build_api
from bot.config import Settings
from bot.services.incidents import IncidentService
from bot.services.routing import group_key, route
from bot.testing import MemoryStore

PAYLOADS = Path(__file__).resolve().parents[1] / "fixtures" / "alerts" / "alertmanager"
FIRING = (PAYLOADS / "01-firing-group-of-two.json").read_bytes()
TOKEN = "s3cret-webhook-token"
API_TOKEN = "s3cret-api-token"


def make_service(store: MemoryStore) -> IncidentService:
    settings = Settings()
    return IncidentService(
        store,
        route=lambda a: route(a, settings),
        group=group_key,
        clock=lambda: datetime(2026, 11, 30, 3, 25, tzinfo=UTC),
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    api = build_api(make_service(store), store, webhook_token=TOKEN, api_token=API_TOKEN, max_body=64 * 1024)
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://bot") as c:
        yield c


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


async def test_a_real_alertmanager_payload_is_stored_and_answered_202(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    response = await client.post("/alerts/alertmanager", content=FIRING, headers=auth())
    assert response.status_code == 202
    body = response.json()
    assert body["accepted"] == 2
    assert [r["outcome"] for r in body["results"]] == ["opened", "joined"]
    assert len(store.incidents) == 1


async def test_replaying_the_same_payload_keeps_one_incident(client: httpx.AsyncClient, store: MemoryStore) -> None:
    for _ in range(5):
        assert (await client.post("/alerts/alertmanager", content=FIRING, headers=auth())).status_code == 202
    assert len(store.incidents) == 1 and [m.kind for m in store.messages] == ["opened"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": TOKEN}, 401),
    ],
)
async def test_bad_or_missing_credentials_are_401_and_store_nothing(
    client: httpx.AsyncClient, store: MemoryStore, headers: dict[str, str], expected: int
) -> None:
    response = await client.post("/alerts/alertmanager", content=FIRING, headers=headers)
    assert response.status_code == expected
    assert response.json()["error"] == "unauthorized"
    assert not store.incidents and not store.alerts


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (b"\xff\xfe", "body"),
        (b"[]", None),
        (b'{"version": "4", "alerts": "nope"}', "alerts"),
    ],
)
async def test_invalid_bodies_are_400_naming_the_field(
    client: httpx.AsyncClient, store: MemoryStore, body: bytes, field: str | None
) -> None:
    response = await client.post("/alerts/alertmanager", content=body, headers=auth())
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"] in {"invalid_json", "invalid_payload"}
    if field is not None:
        assert answer["field"] == field
    assert answer["detail"] and "\n" not in answer["detail"]
    assert not store.incidents


async def test_a_body_over_the_limit_is_413(client: httpx.AsyncClient, store: MemoryStore) -> None:
    big = b'{"alerts": [' + b",".join([b'{"labels": {"x": "' + b"y" * 1000 + b'"}}'] * 100) + b"]}"
    response = await client.post("/alerts/alertmanager", content=big, headers=auth())
    assert response.status_code == 413
    assert response.json()["limit"] == 64 * 1024
    assert not store.incidents


async def test_an_unknown_source_is_404_and_lists_the_sources(client: httpx.AsyncClient) -> None:
    response = await client.post("/alerts/nagios", content=b"{}", headers=auth())
    assert response.status_code == 404
    assert "alertmanager" in response.json()["sources"]


async def test_a_store_failure_is_503_so_alertmanager_retries(store: MemoryStore) -> None:
    class Broken(MemoryStore):
        def transaction(self):  # type: ignore[no-untyped-def]
            raise ConnectionError("database is down")

    broken = Broken()
    api = build_api(make_service(broken), broken, webhook_token=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot") as c:
        response = await c.post("/alerts/alertmanager", content=FIRING, headers=auth())
        health = await c.get("/healthz")
    assert response.status_code == 503 and response.json()["error"] == "unavailable"
    assert "database" not in response.text  # no internals leak
    assert health.status_code == 200  # reads still work: only the write path failed


async def test_the_read_side_needs_the_api_token_and_shows_the_timeline(client: httpx.AsyncClient) -> None:
    await client.post("/alerts/alertmanager", content=FIRING, headers=auth())
    assert (await client.get("/api/incidents")).status_code == 401
    listed = await client.get("/api/incidents", headers=auth(API_TOKEN))
    assert listed.status_code == 200
    [incident] = listed.json()["incidents"]
    shown = await client.get(f"/api/incidents/{incident['id']}", headers=auth(API_TOKEN))
    assert shown.status_code == 200
    assert [e["kind"] for e in shown.json()["timeline"]][:1] == ["opened"]
    missing = await client.get("/api/incidents/999", headers=auth(API_TOKEN))
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    bad = await client.get("/api/incidents?limit=0", headers=auth(API_TOKEN))
    assert bad.status_code == 400 and bad.json()["field"] == "limit"


async def test_healthz_answers_when_the_store_does(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}
