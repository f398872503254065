"""Schemathesis against the OpenAPI schema of ``serve`` (``GET /openapi.json``): every operation, the alert
webhooks included, is called with generated requests (authenticated), and every answer must be no 5xx
but the documented 503, a documented status, the documented content type and a body matching the
documented schema. Valid requests (generated from the schema) run on MemoryStore and on a migrated SQLite
file; invalid ones (schemathesis' negative mode: wrong types, missing fields, bad tokens) on MemoryStore,
where they must be a documented 4xx with the JSON error body.

Each run first sends the real payloads of tests/fixtures/alerts/ through the app, so the read and action
operations have incidents to find: about half of the generated incident ids are swapped for one of them
(chosen by a hash of the generated id, so a failing example replays the same way)."""

from __future__ import annotations

import asyncio
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy.pool import NullPool

from bot.adapters.db import SqlStore, create_engine, upgrade
from bot.adapters.http import build_api
from bot.core.store import Store
from bot.testing import MemoryStore
from tests.adapters.test_http import make_service

ALERTS = Path(__file__).resolve().parents[1] / "fixtures" / "alerts"
WEBHOOK_TOKEN = "fuzz-webhook-token"
API_TOKEN = "fuzz-api-token"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25


def _schema_of(store: Store) -> tuple[Any, list[str]]:
    """The loaded schema of an app on ``store``, seeded with the fixture alerts; and the incident ids."""
    app = build_api(make_service(store), store, webhook_token=WEBHOOK_TOKEN, api_token=API_TOKEN, max_body=64 * 1024)
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    for source in ("alertmanager", "grafana", "uptime-kuma"):
        operation = schema[f"/alerts/{source}"]["POST"]
        for payload in sorted((ALERTS / source).glob("*.json"))[:3]:
            case = operation.Case(body=json.loads(payload.read_bytes()), media_type="application/json")
            answer = case.call(headers=_auth(f"/alerts/{source}"))
            assert answer.status_code == 202, answer.text
    listed = schema["/api/incidents"]["GET"].Case().call(headers=_auth("/api/incidents"))
    ids = [incident["id"] for incident in listed.json()["incidents"]]
    assert ids, "seeding opened no incident"
    return schema, ids


def _auth(path: str) -> dict[str, str]:
    token = WEBHOOK_TOKEN if path.startswith("/alerts/") else API_TOKEN
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def memory_schema() -> Iterator[tuple[Any, list[str]]]:
    yield _schema_of(MemoryStore())


@pytest.fixture(scope="module")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, list[str]]]:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('fuzz') / 'bot.db'}"
    asyncio.run(upgrade(url))
    # No pool: the requests run on schemathesis's own event loop thread, so no connection outlives its loop.
    engine = create_engine(url, poolclass=NullPool)
    yield _schema_of(SqlStore(engine))
    asyncio.run(engine.dispose())


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation the schema documents (read from a bare app: no I/O)."""
    store = MemoryStore()
    paths = build_api(make_service(store), store).openapi()["paths"]
    return [(method.upper(), path) for path, item in paths.items() for method in item]


OPERATIONS = _operations()
WITH_INPUT = [(m, p) for m, p in OPERATIONS if m == "POST" or "{" in p or p == "/api/incidents"]


def _fuzz(schema: Any, incident_ids: list[str], method: str, path: str, mode: GenerationMode) -> None:
    """Up to ``EXAMPLES`` generated requests of one operation, each answer checked against the schema."""

    @given(case=schema[path][method].as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        derandomize=True,
    )
    def call(case: Any) -> None:
        given_id = (case.path_parameters or {}).get("incident_id")
        if given_id is not None:
            pick = zlib.crc32(str(given_id).encode())
            if pick % 2 == 0:
                case.path_parameters["incident_id"] = incident_ids[pick // 2 % len(incident_ids)]
        case.call_and_validate(headers=_auth(path), checks=CHECKS)

    call()


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_valid_requests_are_answered_as_the_schema_says_on_memory(
    memory_schema: tuple[Any, list[str]], method: str, path: str
) -> None:
    _fuzz(*memory_schema, method, path, GenerationMode.POSITIVE)


@pytest.mark.parametrize(("method", "path"), WITH_INPUT)
def test_invalid_requests_are_documented_4xx_never_5xx_on_memory(
    memory_schema: tuple[Any, list[str]], method: str, path: str
) -> None:
    _fuzz(*memory_schema, method, path, GenerationMode.NEGATIVE)


@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_valid_requests_are_answered_as_the_schema_says_on_sqlite(
    sqlite_schema: tuple[Any, list[str]], method: str, path: str
) -> None:
    _fuzz(*sqlite_schema, method, path, GenerationMode.POSITIVE)
