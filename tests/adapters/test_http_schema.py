"""The OpenAPI schema of ``serve`` and the bugs the schema fuzzing (test_http_fuzz.py) pinned: every answer is
a documented status with the JSON error body, a store failure on the read side included."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from bot.adapters.http import build_api
from bot.adapters.intake import SOURCES
from bot.testing import MemoryStore
from tests.adapters.test_http import API_TOKEN, TOKEN, auth, make_service


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    store = MemoryStore()
    api = build_api(make_service(store), store, webhook_token=TOKEN, api_token=API_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot") as c:
        yield c


async def test_the_schema_documents_every_alert_source_with_its_answers_and_the_bearer_token(
    client: httpx.AsyncClient,
) -> None:
    schema = (await client.get("/openapi.json")).json()
    for source in SOURCES:
        operation = schema["paths"][f"/alerts/{source}"]["post"]
        assert set(operation["responses"]) == {"202", "400", "401", "413", "503"}
        assert operation["requestBody"]["content"]["application/json"]["schema"]
        assert operation["security"] == [{"webhookToken": []}]
    assert schema["components"]["securitySchemes"]["apiToken"] == {"type": "http", "scheme": "bearer"}
    ack = schema["paths"]["/api/incidents/{incident_id}/ack"]["post"]
    assert ack["security"] == [{"apiToken": []}] and ack["requestBody"]["required"] is False
    assert not [path for path, item in schema["paths"].items() for op in item.values() if "422" in op["responses"]]


async def test_without_tokens_the_schema_asks_for_no_credentials() -> None:
    store = MemoryStore()
    schema = build_api(make_service(store), store).openapi()
    assert not [op for item in schema["paths"].values() for op in item.values() if "security" in op]


@pytest.mark.parametrize("limit", ["abc", "1.5", "-1", "99999999999999999999", "٣"])
async def test_a_limit_that_is_not_a_whole_number_in_range_is_400_naming_the_field(
    client: httpx.AsyncClient, limit: str
) -> None:
    response = await client.get("/api/incidents", params={"limit": limit}, headers=auth(API_TOKEN))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_parameter" and response.json()["field"] == "limit"


async def test_a_store_failure_on_the_read_side_is_503_not_an_unhandled_500() -> None:
    class Broken(MemoryStore):
        async def list_incidents(self, *, limit: int = 50):  # type: ignore[no-untyped-def]
            raise ConnectionError("database is down")

        async def get_incident(self, incident_id: str):  # type: ignore[no-untyped-def]
            raise ConnectionError("database is down")

    broken = Broken()
    api = build_api(make_service(broken), broken, api_token=API_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot") as c:
        listed = await c.get("/api/incidents", headers=auth(API_TOKEN))
        shown = await c.get("/api/incidents/1", headers=auth(API_TOKEN))
    for response in (listed, shown):
        assert response.status_code == 503 and response.json()["error"] == "unavailable"
        assert "database" not in response.text
