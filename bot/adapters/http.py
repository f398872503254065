"""The HTTP API (FastAPI): alert webhooks in, incidents out (DESIGN §4.4).

- ``POST /alerts/{source}``: bearer token when configured (compared in constant time); the body is read
  up to ``max_body`` bytes (413 beyond); bad JSON or a bad field is a 400 naming the field; the answer is
  2xx only after the incident service has committed every alert; a failure of the store is a 503 so
  Alertmanager retries (it never retries a 4xx).
- ``GET /api/incidents``, ``GET /api/incidents/{id}``: the API token when configured; one incident comes
  with its timeline, its ``delivery`` per chat target (``ok``/``degraded``, since when, messages waiting,
  the last error: :func:`bot.core.delivery.delivery_report`) and, once a worker has diagnosed it, its
  latest ``diagnosis`` (DESIGN §4.2 shape);
  ``limit`` (1..500, default 50) outside that range or not a number is a 400; a store failure is a 503.
- ``POST /api/incidents/{id}/ack`` and ``/resolve``: the API token; an optional JSON body
  ``{"actor": "..."}`` (default ``api``); 200 with the incident and ``outcome`` (acknowledging twice
  answers ``already_acknowledged`` and changes nothing), 404 for an unknown incident, 409 when it is
  already resolved.
- ``POST /alerts/grafana`` with a Grafana HMAC secret configured: the body must be signed (see
  :class:`GrafanaSigning`), else 401 and nothing is stored.
- ``GET /healthz``: 200 when the store answers, else 503. ``GET /metrics``: Prometheus text
  (``bot.adapters.metrics``), open like ``/healthz`` so a scraper needs no token.

- ``GET /openapi.json``: every endpoint above with its body, its answers (status and JSON schema) and its
  bearer scheme; the alert route is a plain Starlette route, so its operations (one per source) are added
  to FastAPI's schema when it is first built, off the request path.

Nothing slow runs in a request: diagnoses and chat messages are queued by the service and done by
workers.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from bot.adapters.intake import SOURCES
from bot.adapters.metrics import CONTENT_TYPE, Metrics
from bot.adapters.openapi import (
    ACTION_BODY,
    LIMIT_PARAMETER,
    MAX_ACTOR,
    ActionAnswer,
    ErrorBody,
    Health,
    IncidentDetail,
    IncidentList,
    answers,
    describe_alert_routes,
    security,
)
from bot.core.delivery import delivery_report
from bot.core.incidents import Incident, Intake
from bot.core.store import Store
from bot.errors import PayloadError

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 1 << 20


class ActionResult(Protocol):
    """What ``acknowledge``/``resolve`` answer (``bot.services.incidents.ActionResult``)."""

    @property
    def outcome(self) -> str: ...

    @property
    def incident(self) -> Incident | None: ...


class IncidentDesk(Intake, Protocol):
    """The incident service as the HTTP API uses it: alerts in, a person's actions."""

    async def acknowledge(self, incident_id: str, actor: str) -> ActionResult: ...

    async def resolve(self, incident_id: str, actor: str) -> ActionResult: ...


@dataclass(frozen=True)
class GrafanaSigning:
    """Grafana's webhook HMAC: ``hex(HMAC-SHA256(secret, body))`` in ``header``; with a timestamp header,
    the signed text is ``timestamp + ":" + body`` and the timestamp may be at most ``max_age`` seconds
    off. Per Grafana's docs ("Configure webhook notifications", section "HMAC signature":
    https://grafana.com/docs/grafana/latest/alerting/configure-notifications/manage-contact-points/integrations/webhook-notifier/),
    the default header is ``X-Grafana-Alerting-Signature`` and the value is plain hex; a ``sha256=``
    prefix (GitHub's style, used by some relays) is accepted too."""

    secret: str
    header: str = "X-Grafana-Alerting-Signature"
    timestamp_header: str | None = None
    max_age: float = 300.0
    clock: Callable[[], float] = time.time

    def verify(self, request: Request, body: bytes) -> bool:
        given = request.headers.get(self.header, "").strip()
        if given[:7].lower() == "sha256=":
            given = given[7:]
        signed = body
        if self.timestamp_header is not None:
            stamp = request.headers.get(self.timestamp_header, "").strip()
            try:
                age = abs(self.clock() - float(stamp))
            except ValueError:
                return False
            if age > self.max_age:
                return False
            signed = stamp.encode() + b":" + body
        expected = hmac.new(self.secret.encode(), signed, hashlib.sha256).hexdigest()
        return hmac.compare_digest(given.lower().encode(), expected.encode())


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


def _actor(raw: bytes) -> str | JSONResponse:
    """The ``actor`` of an action body (``api`` when the body is empty or names none), or the 400."""
    if not raw.strip():
        return "api"
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return _error(400, "invalid_json", "the body is not JSON", field="body")
    if not isinstance(body, dict):
        return _error(400, "invalid_payload", "the body must be a JSON object", field="body")
    actor = body.get("actor", "api")
    if not isinstance(actor, str) or not actor.strip() or len(actor) > MAX_ACTOR:
        return _error(400, "invalid_payload", f"actor must be a non-empty string of at most {MAX_ACTOR}", field="actor")
    return actor.strip()


def build_api(
    service: IncidentDesk,
    store: Store,
    *,
    webhook_token: str | None = None,
    api_token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    metrics: Metrics | None = None,
    grafana_signing: GrafanaSigning | None = None,
) -> FastAPI:
    api = FastAPI(title="incident-bot", version="0.1.0", docs_url=None, redoc_url=None)
    counted = metrics if metrics is not None else Metrics()

    async def receive(request: Request) -> JSONResponse:
        """``POST /alerts/{source}``: a plain Starlette endpoint (FastAPI's per-request dependency solving cost
        a tenth of a webhook's CPU under a storm, and this route needs none of it)."""
        source: str = request.path_params["source"]
        parse = SOURCES.get(source)
        if parse is None:
            return _error(404, "unknown_source", f"no alert source {source!r}", sources=sorted(SOURCES))
        if not _authorised(request, webhook_token):
            counted.alert_received(source, "unauthorized")
            return _error(401, "unauthorized", "missing or wrong bearer token")
        try:
            raw = await _read_body(request, max_body)
        except _TooLarge:
            counted.alert_received(source, "too_large")
            return _error(413, "payload_too_large", f"the body exceeds {max_body} bytes", limit=max_body)
        if source == "grafana" and grafana_signing is not None and not grafana_signing.verify(request, raw):
            counted.alert_received(source, "bad_signature")
            return _error(401, "bad_signature", f"missing or wrong {grafana_signing.header} signature")
        try:
            body = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            counted.alert_received(source, "invalid")
            where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
            return _error(400, "invalid_json", f"the body is not JSON{where}", field="body")
        try:
            alerts = parse(body)
        except PayloadError as exc:
            counted.alert_received(source, "invalid")
            return _error(400, "invalid_payload", exc.user_message(), field=exc.field)
        try:
            report = await service.ingest(alerts)
        except Exception:
            log.exception("storing %d alert(s) from %s failed", len(alerts), source)
            counted.alert_received(source, "unavailable")
            return _error(503, "unavailable", "the alert could not be stored; retry later")
        for result in report.results:
            counted.alert_received(source, result.outcome)
        counted.incident_opened(len(report.opened))
        results = [
            {"fingerprint": r.fingerprint, "outcome": r.outcome, "incident": r.incident_id} for r in report.results
        ]
        return JSONResponse({"accepted": len(alerts), "results": results}, status_code=202)

    api.add_route("/alerts/{source}", receive, methods=["POST"], name="receive_alerts", include_in_schema=False)

    api_auth = security("apiToken", api_token)
    unauthorised = (ErrorBody, "missing or wrong bearer token")
    unavailable = (ErrorBody, "the store failed; retry later")

    @api.get(
        "/api/incidents",
        responses=answers(
            {200: (IncidentList, "the latest incidents, newest first"), 400: (ErrorBody, "a bad `limit`"),
             401: unauthorised, 503: unavailable}
        ),
        openapi_extra={"parameters": [LIMIT_PARAMETER], **api_auth},
    )  # fmt: skip
    async def incidents(request: Request) -> JSONResponse:
        if not _authorised(request, api_token):
            return _error(401, "unauthorized", "missing or wrong bearer token")
        raw_limit = request.query_params.get("limit", "50").strip()
        limit = int(raw_limit) if raw_limit.isascii() and raw_limit.isdigit() and len(raw_limit) < 5 else 0
        if not 1 <= limit <= 500:
            return _error(400, "invalid_parameter", "limit must be between 1 and 500", field="limit")
        try:
            found = await store.list_incidents(limit=limit)
        except Exception:
            log.exception("listing incidents failed")
            return _error(503, "unavailable", "the store failed; retry later")
        return JSONResponse({"incidents": [_incident_json(i) for i in found]})

    @api.get(
        "/api/incidents/{incident_id}",
        responses=answers(
            {200: (IncidentDetail, "the incident, its timeline and its latest diagnosis"), 401: unauthorised,
             404: (ErrorBody, "no such incident"), 503: unavailable}
        ),
        openapi_extra=api_auth,
    )  # fmt: skip
    async def incident(incident_id: str, request: Request) -> JSONResponse:
        if not _authorised(request, api_token):
            return _error(401, "unauthorized", "missing or wrong bearer token")
        try:
            found = await store.get_incident(incident_id)
            if found is None:
                return _error(404, "not_found", f"no incident {incident_id!r}")
            events = await store.timeline(incident_id)
            delivery = delivery_report(incident_id, events, await store.pending_messages())
            diagnosis = await store.get_diagnosis(incident_id)
        except Exception:
            log.exception("reading incident %s failed", incident_id)
            return _error(503, "unavailable", "the store failed; retry later")
        body = {**_incident_json(found), "timeline": [e.model_dump(mode="json") for e in events]}
        body["delivery"] = {target: state.model_dump(mode="json") for target, state in delivery.items()}
        if diagnosis is not None:
            body["diagnosis"] = diagnosis
        return JSONResponse(body)

    async def act(incident_id: str, request: Request, action: str) -> JSONResponse:
        if not _authorised(request, api_token):
            return _error(401, "unauthorized", "missing or wrong bearer token")
        try:
            raw = await _read_body(request, 64 * 1024)
        except _TooLarge:
            return _error(413, "payload_too_large", "the body exceeds 65536 bytes", limit=64 * 1024)
        actor = _actor(raw)
        if isinstance(actor, JSONResponse):
            return actor
        try:
            if action == "ack":
                result = await service.acknowledge(incident_id, actor)
            else:
                result = await service.resolve(incident_id, actor)
        except Exception:
            log.exception("%s of incident %s failed", action, incident_id)
            return _error(503, "unavailable", "the store failed; retry later")
        if result.outcome == "not_found" or result.incident is None:
            return _error(404, "not_found", f"no incident {incident_id!r}")
        if result.outcome == "already_resolved":
            return _error(409, "already_resolved", f"incident {incident_id} is already resolved",
                          incident=_incident_json(result.incident))  # fmt: skip
        return JSONResponse({**_incident_json(result.incident), "outcome": result.outcome})

    action_answers = answers(
        {200: (ActionAnswer, "the incident after the action"), 400: (ErrorBody, "a bad body (named in `field`)"),
         401: unauthorised, 404: (ErrorBody, "no such incident"),
         409: (ErrorBody, "already resolved (the incident is in `incident`)"),
         413: (ErrorBody, "the body is over 64 KiB"), 503: unavailable}
    )  # fmt: skip
    action_extra = {"requestBody": ACTION_BODY, **api_auth}

    @api.post("/api/incidents/{incident_id}/ack", responses=action_answers, openapi_extra=action_extra)
    async def acknowledge(incident_id: str, request: Request) -> JSONResponse:
        return await act(incident_id, request, "ack")

    @api.post("/api/incidents/{incident_id}/resolve", responses=action_answers, openapi_extra=action_extra)
    async def resolve(incident_id: str, request: Request) -> JSONResponse:
        return await act(incident_id, request, "resolve")

    @api.get(
        "/metrics",
        response_class=Response,
        responses={
            200: {
                "description": "Prometheus text exposition",
                "content": {CONTENT_TYPE: {"schema": {"type": "string"}}},
            },
            503: {"model": ErrorBody, "description": "the store does not answer"},
        },
    )
    async def metrics_text() -> Response:
        try:
            text = await counted.render(store)
        except Exception:
            log.exception("metrics: the store does not answer")
            return _error(503, "unhealthy", "the store does not answer")
        return Response(text, media_type=CONTENT_TYPE)

    @api.get("/healthz", responses=answers({200: (Health, "the store answers"), 503: (ErrorBody, "it does not")}))
    async def healthz() -> JSONResponse:
        try:
            await store.list_incidents(limit=1)
        except Exception:
            log.exception("health check: the store does not answer")
            return _error(503, "unhealthy", "the store does not answer")
        return JSONResponse({"ok": True})

    generated = api.openapi

    def openapi() -> dict[str, Any]:
        """FastAPI's schema of the routes it knows, plus the alert operations and the bearer schemes."""
        schema = generated()
        if "/alerts/alertmanager" not in schema["paths"]:
            describe_alert_routes(schema, webhook_token)
        return schema

    api.openapi = openapi  # type: ignore[method-assign]
    return api
