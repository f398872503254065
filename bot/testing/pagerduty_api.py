"""A local fake of the PagerDuty Events API v2, for tests that send real HTTP to it.

:class:`FakePagerDuty` is a Starlette app (served by :class:`~bot.testing.http_fake.FakeHttpServer` on
``127.0.0.1:0``) with ``POST /v2/enqueue``, the one endpoint of the Events API v2; point a sender at
:attr:`FakePagerDuty.events_url`. It answers as platforms.md §3.4 describes:

- **202** ``{"status": "success", "message": "Event processed", "dedup_key": <key>}`` for a valid event
  (a ``trigger`` without ``dedup_key`` gets a generated one);
- **400** ``{"status": "invalid event", "message": "Event object is invalid", "errors": [...]}`` for a
  body that is not a JSON object, a ``routing_key`` that is not 32 characters, an unknown
  ``event_action``, a ``dedup_key`` over 255 characters, a trigger without ``payload.summary`` (or over
  1024 characters), ``payload.source`` or a valid ``payload.severity``, an ``acknowledge``/``resolve``
  without ``dedup_key``, ``custom_details`` that is not an object, and a body over 512 KB;
- **429** on demand: :meth:`FakePagerDuty.rate_limit` (the next *n* requests) or
  :meth:`FakePagerDuty.rate_limit_for` (every request for *s* seconds), optionally with a
  ``Retry-After`` header (PagerDuty documents none; its docs suggest retrying after about 30 s);
- **5xx** on demand: :meth:`FakePagerDuty.fail`.

It keeps PagerDuty's alert semantics per (routing key, dedup key) in :attr:`FakePagerDuty.alerts`: a
trigger opens an alert or is deduplicated into the open one, ``acknowledge`` and ``resolve`` change an
open alert and are accepted but dropped for a key with no open alert; after ``resolve`` the same key
opens a new alert. Every request is recorded with its answer (:attr:`FakePagerDuty.requests`) and every
accepted event in order (:attr:`FakePagerDuty.events`). State is behind one lock: the server runs in a
thread of its own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bot.testing.http_fake import FakeHttpServer
from bot.testing.secrets import register

ENQUEUE_PATH = "/v2/enqueue"
ROUTING_KEY_LENGTH = 32
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
MAX_BODY = 512 * 1024
ACTIONS = ("trigger", "acknowledge", "resolve")
SEVERITIES = ("critical", "error", "warning", "info")

Json = dict[str, Any]


@dataclass
class Received:
    """One request: its body (None when it was not JSON), the HTTP status answered and when (monotonic)."""

    body: Json | None
    status: int
    at: float


@dataclass
class Alert:
    """An alert as PagerDuty keeps it: its state and the events deduplicated into it."""

    routing_key: str
    dedup_key: str
    state: str = "triggered"
    summary: str = ""
    events: list[Json] = field(default_factory=list)


def validate(body: object) -> list[str]:
    """Why PagerDuty would refuse this event (empty: it would take it)."""
    if not isinstance(body, dict):
        return ["Event object must be a JSON object"]
    errors: list[str] = []
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != ROUTING_KEY_LENGTH:
        errors.append(f"Length of 'routing_key' is incorrect (should be {ROUTING_KEY_LENGTH} characters)")
    action = body.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of trigger, acknowledge, resolve)")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or len(dedup) > MAX_DEDUP_KEY):
        errors.append(f"'dedup_key' must be a string of at most {MAX_DEDUP_KEY} characters")
    if action in ("acknowledge", "resolve") and not dedup:
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        payload = body.get("payload")
        if not isinstance(payload, dict):
            errors.append("'payload' is missing or blank")
        else:
            summary = payload.get("summary")
            if not isinstance(summary, str) or not summary.strip():
                errors.append("'payload.summary' is missing or blank")
            elif len(summary) > MAX_SUMMARY:
                errors.append(f"'payload.summary' is too long (maximum is {MAX_SUMMARY} characters)")
            if not isinstance(payload.get("source"), str) or not payload["source"].strip():
                errors.append("'payload.source' is missing or blank")
            if payload.get("severity") not in SEVERITIES:
                errors.append("'payload.severity' is invalid (must be one of critical, error, warning, info)")
            details = payload.get("custom_details")
            if details is not None and not isinstance(details, dict):
                errors.append("'payload.custom_details' must be an object")
    return errors


class FakePagerDuty:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: list[Received] = []
        self.events: list[Json] = []
        self.alerts: list[Alert] = []
        self._throttle_count = 0
        self._throttle_until = 0.0
        self._retry_after: float | None = None
        self._failures: list[int] = []
        self.app = Starlette(routes=[Route(ENQUEUE_PATH, self._enqueue, methods=["POST"])])
        self.server = FakeHttpServer(self.app, name="fake-pagerduty")

    # -- running -------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def events_url(self) -> str:
        """Where a sender posts events (``PAGERDUTY_EVENTS_URL``)."""
        return self.server.url + ENQUEUE_PATH

    def __enter__(self) -> FakePagerDuty:
        self.server.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.server.stop()

    # -- scripting -----------------------------------------------------------------------------------

    def rate_limit(self, times: int, *, retry_after: float | None = None) -> None:
        """Answer the next ``times`` requests 429 (with ``Retry-After`` when given)."""
        with self._lock:
            self._throttle_count += times
            self._retry_after = retry_after

    def rate_limit_for(self, seconds: float, *, retry_after: float | None = None) -> None:
        """Answer every request 429 for the next ``seconds`` (with ``Retry-After`` when given)."""
        with self._lock:
            self._throttle_until = time.monotonic() + seconds
            self._retry_after = retry_after

    def fail(self, status: int = 500, times: int = 1) -> None:
        """Answer the next ``times`` requests with ``status`` (a 5xx)."""
        with self._lock:
            self._failures.extend([status] * times)

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.events.clear()
            self.alerts.clear()
            self._throttle_count, self._throttle_until, self._retry_after = 0, 0.0, None
            self._failures.clear()

    # -- reading -------------------------------------------------------------------------------------

    def accepted(self, action: str | None = None) -> list[Json]:
        """The events taken (202), in order; only those of ``action`` when given."""
        with self._lock:
            return [e for e in self.events if action is None or e.get("event_action") == action]

    def statuses(self) -> list[int]:
        with self._lock:
            return [r.status for r in self.requests]

    def alert(self, dedup_key: str) -> Alert | None:
        """The latest alert of ``dedup_key``."""
        with self._lock:
            found = [a for a in self.alerts if a.dedup_key == dedup_key]
            return found[-1] if found else None

    # -- the endpoint --------------------------------------------------------------------------------

    async def _enqueue(self, request: Request) -> Response:
        raw = await request.body()
        body: Json | None = None
        try:
            parsed = json.loads(raw)
            body = parsed if isinstance(parsed, dict) else None
        except ValueError:
            parsed = None
        with self._lock:
            now = time.monotonic()
            if self._throttle_count > 0 or now < self._throttle_until:
                self._throttle_count = max(0, self._throttle_count - 1)
                self.requests.append(Received(body, 429, now))
                headers = {"Retry-After": f"{self._retry_after:g}"} if self._retry_after is not None else {}
                return JSONResponse(
                    {
                        "status": "throttle event",
                        "message": "Requests for this service are arriving too quickly. Please retry later.",
                    },
                    status_code=429,
                    headers=headers,
                )
            if self._failures:
                status = self._failures.pop(0)
                self.requests.append(Received(body, status, now))
                return JSONResponse({"status": "error", "message": "Internal Server Error"}, status_code=status)
            errors = ["Event object is larger than 512 KB"] if len(raw) > MAX_BODY else validate(parsed)
            if errors:
                self.requests.append(Received(body, 400, now))
                return JSONResponse(
                    {"status": "invalid event", "message": "Event object is invalid", "errors": errors},
                    status_code=400,
                )
            assert body is not None
            key = body.get("dedup_key") or uuid.uuid4().hex
            self._apply(body, key)
            self.requests.append(Received(body, 202, now))
            self.events.append(body)
        return JSONResponse({"status": "success", "message": "Event processed", "dedup_key": key}, status_code=202)

    def _apply(self, body: Json, key: str) -> None:
        routing = register(str(body["routing_key"]), "a PagerDuty routing key sent to the fake")
        open_alert = next(
            (
                a
                for a in reversed(self.alerts)
                if a.dedup_key == key and a.routing_key == routing and a.state != "resolved"
            ),
            None,
        )
        action = body["event_action"]
        if action == "trigger":
            if open_alert is None:
                open_alert = Alert(routing, key, summary=str(body["payload"]["summary"]))
                self.alerts.append(open_alert)
            open_alert.events.append(body)
            return
        if open_alert is None:
            return  # PagerDuty accepts it and drops it: nothing open under that key
        open_alert.events.append(body)
        open_alert.state = "acknowledged" if action == "acknowledge" else "resolved"
