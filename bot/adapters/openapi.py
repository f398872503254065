"""The OpenAPI schema of ``serve`` (``GET /openapi.json``): what every endpoint really accepts and answers.

The models below only describe bodies (the handlers in :mod:`bot.adapters.http` build them as dicts); the
alert route is a plain Starlette route (for speed), so its operations are added to FastAPI's schema by
:func:`describe_alert_routes` when the schema is first asked for. schemathesis checks the app against it
(tests/adapters/test_http_fuzz.py).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from bot.core.delivery import TargetDelivery
from bot.core.incidents import Incident, Outcome, TimelineEvent

#: The longest actor name the ack/resolve body takes.
MAX_ACTOR = 255


class ErrorBody(BaseModel):
    """Every 4xx/5xx answer: ``error`` (a code), ``detail`` (one line) and, by error, the fields below."""

    error: str
    detail: str
    field: str | None = None
    limit: int | None = None
    sources: list[str] | None = None
    incident: Incident | None = None


class AlertResultBody(BaseModel):
    fingerprint: str
    outcome: Outcome
    incident: str | None


class AlertAnswer(BaseModel):
    """The 202 of an alert webhook: one result per alert of the body, in order."""

    accepted: int
    results: list[AlertResultBody]


class IncidentList(BaseModel):
    incidents: list[Incident]


class IncidentDetail(Incident):
    """One incident with its timeline, how delivery to each chat target stands (``delivery``: targets that
    had trouble or have messages waiting, keyed by target name) and, once diagnosed, its latest diagnosis
    (DESIGN §4.2)."""

    timeline: list[TimelineEvent]
    delivery: dict[str, TargetDelivery] = Field(default_factory=dict)
    diagnosis: dict[str, Any] | None = None


class ActionAnswer(Incident):
    """The incident after an acknowledgement or a resolution, and what the action did."""

    outcome: Literal["acknowledged", "already_acknowledged", "resolved"]


class Health(BaseModel):
    ok: bool


def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def answers(described: dict[int, tuple[type[BaseModel], str]]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": text} for status, (model, text) in described.items()}


_STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
_STATE: dict[str, Any] = {"type": "string", "enum": ["firing", "resolved"]}
_TIME: dict[str, Any] = {"type": "string", "format": "date-time"}
_TEXT: dict[str, Any] = {"type": "string"}


def _grouped_alerts(extra_alert: dict[str, Any], extra_group: dict[str, Any]) -> dict[str, Any]:
    """Alertmanager's webhook shape (version 4); Grafana's adds fields to it."""
    alert = {
        "type": "object",
        "required": ["status"],
        "properties": {
            "status": _STATE,
            "labels": _STRING_MAP,
            "annotations": _STRING_MAP,
            "startsAt": _TIME,
            "endsAt": _TIME,
            "fingerprint": _TEXT,
            "generatorURL": _TEXT,
            **extra_alert,
        },
    }
    return {
        "type": "object",
        "required": ["alerts"],
        "properties": {
            "version": _TEXT,
            "groupKey": _TEXT,
            "status": _STATE,
            "receiver": _TEXT,
            "commonLabels": _STRING_MAP,
            "commonAnnotations": _STRING_MAP,
            "externalURL": _TEXT,
            "alerts": {"type": "array", "items": alert},
            **extra_group,
        },
    }


_GENERIC_ALERT: dict[str, Any] = {
    "type": "object",
    "required": ["state"],
    "properties": {
        "id": {"anyOf": [{"type": "string", "pattern": r"\S"}, {"type": "integer"}]},
        "state": _STATE,
        "status": {"anyOf": [{"type": "integer", "minimum": 100, "maximum": 599}, {"type": "null"}]},
        "url": {"type": "string", "format": "uri"},
        "service": _TEXT,
        "host": _TEXT,
        "summary": _TEXT,
        "labels": _STRING_MAP,
        "starts_at": _TIME,
        "ends_at": _TIME,
    },
}

#: The body each alert source accepts (its parser in ``bot.adapters.intake`` is the full truth: a body
#: of the right shape with a bad value is still a 400 naming the field).
ALERT_BODIES: dict[str, dict[str, Any]] = {
    "alertmanager": _grouped_alerts({}, {}),
    "grafana": _grouped_alerts(
        {
            "values": {"type": "object", "additionalProperties": {"anyOf": [{"type": "number"}, {"type": "null"}]}},
            "valueString": _TEXT,
            "silenceURL": _TEXT,
            "dashboardURL": _TEXT,
            "panelURL": _TEXT,
        },
        {"orgId": {"type": "integer"}, "title": _TEXT, "state": _TEXT, "message": _TEXT},
    ),
    "uptime-kuma": {
        "type": "object",
        "properties": {
            "heartbeat": {
                "anyOf": [
                    {
                        "type": "object",
                        "required": ["status"],
                        "properties": {
                            "status": {"enum": [0, 1, 2, 3]},
                            "msg": _TEXT,
                            "time": {"type": "string", "pattern": r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d"},
                        },
                    },
                    {"type": "null"},
                ]
            },
            "monitor": {
                "anyOf": [
                    {"type": "object", "properties": {"id": {"type": "integer"}, "name": _TEXT, "url": _TEXT}},
                    {"type": "null"},
                ]
            },
            "msg": _TEXT,
        },
    },
    "generic": {
        "anyOf": [
            _GENERIC_ALERT,
            {"type": "array", "items": _GENERIC_ALERT},
            {
                "type": "object",
                "required": ["alerts"],
                "properties": {"alerts": {"type": "array", "items": _GENERIC_ALERT}},
            },
        ]
    },
}

ACTION_BODY: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "actor": {
                        "type": "string",
                        "minLength": 1,
                        "maxLength": MAX_ACTOR,
                        "pattern": r"\S",
                        "default": "api",
                    }
                },
            }
        }
    },
}

LIMIT_PARAMETER: dict[str, Any] = {
    "name": "limit",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
}


def security(scheme: str, token: str | None) -> dict[str, Any]:
    return {} if token is None else {"security": [{scheme: []}]}


def describe_alert_routes(schema: dict[str, Any], webhook_token: str | None) -> None:
    """Add ``POST /alerts/<source>`` (one operation per source), the bodies they answer and the bearer schemes."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (AlertAnswer, ErrorBody):
        described = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        schemas.update(described.pop("$defs", {}))
        schemas[model.__name__] = described
    error = {"content": {"application/json": {"schema": _json_schema(ErrorBody)}}}
    for source, body in ALERT_BODIES.items():
        schema["paths"][f"/alerts/{source}"] = {
            "post": {
                "operationId": f"receive_{source.replace('-', '_')}_alerts",
                "summary": f"Receive {source} alerts",
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {
                    "202": {
                        "description": "every alert is stored",
                        "content": {"application/json": {"schema": _json_schema(AlertAnswer)}},
                    },
                    "400": {"description": "the body is not JSON or a field is bad (named in `field`)", **error},
                    "401": {"description": "missing or wrong bearer token (or Grafana signature)", **error},
                    "413": {"description": "the body is over the size limit", **error},
                    "503": {"description": "the store failed; retry later", **error},
                },
                **security("webhookToken", webhook_token),
            }
        }
    schemes = components.setdefault("securitySchemes", {})
    for name in ("webhookToken", "apiToken"):
        schemes[name] = {"type": "http", "scheme": "bearer"}
    for path in schema["paths"].values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)  # FastAPI's, never answered: no validated parameter
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
