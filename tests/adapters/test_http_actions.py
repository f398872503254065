"""The HTTP API's write side for people and the Grafana signature: ``POST /api/incidents/{id}/ack`` and
``/resolve`` (token, actor, 404, 409, the no-op second acknowledgement) and ``/alerts/grafana`` with an
HMAC secret (plain hex or ``sha256=``, optional timestamp; anything else is 401 and stores nothing)."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from bot.adapters.http import GrafanaSigning, build_api
from bot.core.incidents import IncidentState
from bot.testing import MemoryStore
from tests.adapters.test_http import API_TOKEN, FIRING, TOKEN, auth, make_service

GRAFANA_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "alerts" / "grafana"
GRAFANA = (GRAFANA_DIR / "01-docs-two-firing.json").read_bytes()
SECRET = "grafana-shared-secret"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def client(store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    api = build_api(make_service(store), store, webhook_token=TOKEN, api_token=API_TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot") as c:
        yield c


async def opened(client: httpx.AsyncClient) -> str:
    response = await client.post("/alerts/alertmanager", content=FIRING, headers=auth())
    assert response.status_code == 202
    incident_id = response.json()["results"][0]["incident"]
    assert isinstance(incident_id, str)
    return incident_id


async def test_ack_records_the_actor_and_a_second_ack_changes_nothing(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    incident_id = await opened(client)
    first = await client.post(f"/api/incidents/{incident_id}/ack", json={"actor": "alice"}, headers=auth(API_TOKEN))
    assert first.status_code == 200
    assert first.json()["outcome"] == "acknowledged"
    assert first.json()["state"] == "acknowledged" and first.json()["acknowledged_by"] == "alice"
    again = await client.post(f"/api/incidents/{incident_id}/ack", json={"actor": "bob"}, headers=auth(API_TOKEN))
    assert again.status_code == 200 and again.json()["outcome"] == "already_acknowledged"
    assert again.json()["acknowledged_by"] == "alice"
    assert [m.kind for m in store.messages] == ["opened", "updated", "post"]


async def test_ack_without_a_body_is_done_by_api(client: httpx.AsyncClient, store: MemoryStore) -> None:
    incident_id = await opened(client)
    response = await client.post(f"/api/incidents/{incident_id}/ack", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert response.status_code == 200 and response.json()["acknowledged_by"] == "api"


async def test_resolve_then_resolve_again_is_409(client: httpx.AsyncClient, store: MemoryStore) -> None:
    incident_id = await opened(client)
    done = await client.post(f"/api/incidents/{incident_id}/resolve", json={"actor": "alice"}, headers=auth(API_TOKEN))
    assert done.status_code == 200 and done.json()["state"] == "resolved"
    assert store.incidents[incident_id].state is IncidentState.RESOLVED
    again = await client.post(f"/api/incidents/{incident_id}/resolve", headers=auth(API_TOKEN))
    assert again.status_code == 409 and again.json()["error"] == "already_resolved"
    ack = await client.post(f"/api/incidents/{incident_id}/ack", headers=auth(API_TOKEN))
    assert ack.status_code == 409
    assert [m.kind for m in store.messages] == ["opened", "resolved", "post"]


@pytest.mark.parametrize("action", ["ack", "resolve"])
async def test_an_unknown_incident_is_404(client: httpx.AsyncClient, action: str) -> None:
    response = await client.post(f"/api/incidents/999/{action}", headers=auth(API_TOKEN))
    assert response.status_code == 404 and response.json()["error"] == "not_found"


@pytest.mark.parametrize("action", ["ack", "resolve"])
@pytest.mark.parametrize("token", [None, TOKEN, "wrong"])
async def test_actions_need_the_api_token_and_change_nothing_without_it(
    client: httpx.AsyncClient, store: MemoryStore, action: str, token: str | None
) -> None:
    incident_id = await opened(client)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = await client.post(f"/api/incidents/{incident_id}/{action}", headers=headers)
    assert response.status_code == 401
    assert store.incidents[incident_id].state is IncidentState.TRIGGERED
    assert [m.kind for m in store.messages] == ["opened"]


@pytest.mark.parametrize(
    ("body", "field"),
    [(b"{not json", "body"), (b"[1]", "body"), (b'{"actor": ""}', "actor"), (b'{"actor": 7}', "actor"),
     (b'{"actor": "' + b"x" * 300 + b'"}', "actor")],
)  # fmt: skip
async def test_a_bad_action_body_is_400_naming_the_field(
    client: httpx.AsyncClient, store: MemoryStore, body: bytes, field: str
) -> None:
    incident_id = await opened(client)
    response = await client.post(f"/api/incidents/{incident_id}/ack", content=body, headers=auth(API_TOKEN))
    assert response.status_code == 400 and response.json()["field"] == field
    assert store.incidents[incident_id].state is IncidentState.TRIGGERED


def signed(body: bytes, secret: str = SECRET, prefix: str = "") -> str:
    return prefix + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def grafana_client(store: MemoryStore, signing: GrafanaSigning) -> httpx.AsyncClient:
    api = build_api(make_service(store), store, webhook_token=TOKEN, grafana_signing=signing)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bot")


@pytest.mark.parametrize("prefix", ["", "sha256="])
async def test_a_grafana_body_signed_with_the_secret_is_accepted(store: MemoryStore, prefix: str) -> None:
    async with await grafana_client(store, GrafanaSigning(SECRET)) as c:
        headers = {**auth(), "X-Grafana-Alerting-Signature": signed(GRAFANA, prefix=prefix)}
        response = await c.post("/alerts/grafana", content=GRAFANA, headers=headers)
    assert response.status_code == 202, response.text
    assert store.incidents


@pytest.mark.parametrize(
    "signature",
    [None, "", "deadbeef", signed(GRAFANA, secret="other-secret"), signed(GRAFANA + b" "), "sha256=" + "0" * 64],
)
async def test_a_missing_or_wrong_grafana_signature_is_401_and_stores_nothing(
    store: MemoryStore, signature: str | None
) -> None:
    async with await grafana_client(store, GrafanaSigning(SECRET)) as c:
        headers = {**auth(), **({"X-Grafana-Alerting-Signature": signature} if signature is not None else {})}
        response = await c.post("/alerts/grafana", content=GRAFANA, headers=headers)
    assert response.status_code == 401 and response.json()["error"] == "bad_signature"
    assert not store.incidents and not store.messages


async def test_the_signature_header_is_configurable_and_only_grafana_is_checked(store: MemoryStore) -> None:
    async with await grafana_client(store, GrafanaSigning(SECRET, header="X-Grafana-Signature")) as c:
        wrong_header = {**auth(), "X-Grafana-Alerting-Signature": signed(GRAFANA)}
        assert (await c.post("/alerts/grafana", content=GRAFANA, headers=wrong_header)).status_code == 401
        right = {**auth(), "X-Grafana-Signature": signed(GRAFANA)}
        assert (await c.post("/alerts/grafana", content=GRAFANA, headers=right)).status_code == 202
        assert (await c.post("/alerts/alertmanager", content=FIRING, headers=auth())).status_code == 202


async def test_with_a_timestamp_header_the_signature_covers_it_and_old_ones_are_refused(store: MemoryStore) -> None:
    signing = GrafanaSigning(SECRET, timestamp_header="X-Grafana-Alerting-Timestamp", clock=lambda: 1_800_000_000)
    async with await grafana_client(store, signing) as c:
        stale = {**auth(), "X-Grafana-Alerting-Timestamp": "1799990000",
                 "X-Grafana-Alerting-Signature": signed(b"1799990000:" + GRAFANA)}  # fmt: skip
        assert (await c.post("/alerts/grafana", content=GRAFANA, headers=stale)).status_code == 401
        body_only = {**auth(), "X-Grafana-Alerting-Timestamp": "1800000000",
                     "X-Grafana-Alerting-Signature": signed(GRAFANA)}  # fmt: skip
        assert (await c.post("/alerts/grafana", content=GRAFANA, headers=body_only)).status_code == 401
        assert not store.incidents
        fresh = {**auth(), "X-Grafana-Alerting-Timestamp": "1800000000",
                 "X-Grafana-Alerting-Signature": signed(b"1800000000:" + GRAFANA)}  # fmt: skip
        assert (await c.post("/alerts/grafana", content=GRAFANA, headers=fresh)).status_code == 202
