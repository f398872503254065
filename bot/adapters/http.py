"""The HTTP API (FastAPI): alert webhooks in, incidents out (DESIGN §4.4).

- ``POST /alerts/{source}``: bearer token when configured (compared in constant time); the body is read
  up to ``max_body`` bytes (413 beyond); bad JSON or a bad field is a 400 naming the field; the answer is
  2xx only after the incident service has committed every alert; a failure of the store is a 503 so
  Alertmanager retries (it never retries a 4xx).
- ``GET /api/incidents``, ``GET /api/incidents/{id}``: the API token when configured; one incident comes
  with its timeline and, once a worker has diagnosed it, its latest ``diagnosis`` (DESIGN §4.2 shape).
- ``GET /healthz``: 200 when the store answers, else 503.

Nothing slow runs in a request: diagnoses and chat messages are queued by the service and done by
workers.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bot.adapters.intake import SOURCES
from bot.core.incidents import Incident, Intake
from bot.core.store import Store
from bot.errors import PayloadError

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1 << 20


class _TooLarge(Exception):
    pass


def _error(status: int, error: str, detail: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail, **extra}, status_code=status)


def _authorised(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    scheme, _, credential = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credential.strip().encode(), token.encode())


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _incident_json(incident: Incident) -> dict[str, Any]:
    return incident.model_dump(mode="json")


def build_api(
    service: Intake,
    store: Store,
    *,
    webhook_token: str | None = None,
    api_token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    api = FastAPI(title="incident-bot", version="0.1.0", docs_url=None, redoc_url=None)

    @api.post("/alerts/{source}", status_code=202)
    async def receive(source: str, request: Request) -> JSONResponse:
        parse = SOURCES.get(source)
        if parse is None:
            return _error(404, "unknown_source", f"no alert source {source!r}", sources=sorted(SOURCES))
        if not _authorised(request, webhook_token):
            return _error(401, "unauthorized", "missing or wrong bearer token")
        try:
            raw = await _read_body(request, max_body)
        except _TooLarge:
            return _error(413, "payload_too_large", f"the body exceeds {max_body} bytes", limit=max_body)
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            return _error(400, "invalid_json", f"the body is not JSON{where}", field="body")
        try:
            alerts = parse(body)
        except PayloadError as exc:
            return _error(400, "invalid_payload", exc.user_message(), field=exc.field)
        try:
            report = await service.ingest(alerts)
        except Exception:
            log.exception("storing %d alert(s) from %s failed", len(alerts), source)
            return _error(503, "unavailable", "the alert could not be stored; retry later")
        results = [
            {"fingerprint": r.fingerprint, "outcome": r.outcome, "incident": r.incident_id} for r in report.results
        ]
        return JSONResponse({"accepted": len(alerts), "results": results}, status_code=202)

    @api.get("/api/incidents")
    async def incidents(request: Request, limit: int = 50) -> JSONResponse:
        if not _authorised(request, api_token):
            return _error(401, "unauthorized", "missing or wrong bearer token")
        if not 1 <= limit <= 500:
            return _error(400, "invalid_parameter", "limit must be between 1 and 500", field="limit")
        found = await store.list_incidents(limit=limit)
        return JSONResponse({"incidents": [_incident_json(i) for i in found]})

    @api.get("/api/incidents/{incident_id}")
    async def incident(incident_id: str, request: Request) -> JSONResponse:
        if not _authorised(request, api_token):
            return _error(401, "unauthorized", "missing or wrong bearer token")
        found = await store.get_incident(incident_id)
        if found is None:
            return _error(404, "not_found", f"no incident {incident_id!r}")
        events = await store.timeline(incident_id)
        body = {**_incident_json(found), "timeline": [e.model_dump(mode="json") for e in events]}
        diagnosis = await store.get_diagnosis(incident_id)
        if diagnosis is not None:
            body["diagnosis"] = diagnosis
        return JSONResponse(body)

    @api.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            await store.list_incidents(limit=1)
        except Exception:
            log.exception("health check: the store does not answer")
            return _error(503, "unhealthy", "the store does not answer")
        return JSONResponse({"ok": True})

    return api
