"""The PagerDuty sender: delivers page events from the outbox to the Events API v2.

:class:`PagerDutySender` implements the chat port for the outbox target ``pagerduty``. A message's
``payload["pagerduty"]`` is an Events API v2 event without its routing key, built by
``services/paging`` (``trigger`` with the summary, severity, source, component and ``custom_details``
holding the evidence; ``acknowledge`` and ``resolve`` with the dedup key only). The sender adds the
routing key (``PAGERDUTY_ROUTING_KEY``; every event of an incident goes out with the same one) and,
for a trigger, ``client``, the thread link (``client_url``, ``links`` and ``custom_details.thread``,
looked up at send time when the page did not know it yet), and posts it to ``events_url``
(``PAGERDUTY_EVENTS_URL``, default ``https://events.pagerduty.com/v2/enqueue``).

PagerDuty's answers, translated for the outbox (platforms.md §3.4):

- **202**: accepted (queued at PagerDuty: not yet a notification);
- **429**: :class:`~bot.errors.RateLimited` after ``Retry-After`` when given, else ``retry_after``
  seconds (PagerDuty suggests about 30): the outbox holds the whole target back and sends it again;
- **5xx**, timeouts and network errors: :class:`~bot.errors.TransientChatError` (retried with backoff;
  a trigger sent twice lands on the same alert, thanks to the dedup key);
- **400** and other 4xx: :class:`~bot.errors.ChatRejected` with PagerDuty's ``message`` and ``errors``
  (the outbox drops the message and, through the pager, says so on the timeline and in the thread).

The routing key is never logged nor put in an error.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import httpx

from bot.core.blocks import Block
from bot.core.incidents import Incident, OutboxMessage
from bot.errors import ChatRejected, RateLimited, TransientChatError

log = logging.getLogger(__name__)

TARGET = "pagerduty"
DEFAULT_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
ACTIONS = ("trigger", "acknowledge", "resolve")
CLIENT = "incident-bot"

#: ``thread_link(incident_id)``: a URL of the incident's chat thread, when one can be made.
ThreadLink = Callable[[str], Awaitable[str | None]]


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("Retry-After", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


def _explain(response: httpx.Response) -> str:
    """PagerDuty's own words for a refusal: its ``message`` and ``errors``, else the HTTP status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("status") or "")
        errors = body.get("errors")
        if isinstance(errors, list) and errors:
            message = f"{message}: {'; '.join(str(e) for e in errors)}" if message else "; ".join(map(str, errors))
        if message:
            return f"HTTP {response.status_code} {message}"
    return f"HTTP {response.status_code}"


class PagerDutySender:
    """Posts each message's event to the Events API v2 (see the module docstring)."""

    def __init__(
        self,
        routing_key: str,
        *,
        events_url: str = DEFAULT_EVENTS_URL,
        timeout: float = 10.0,
        retry_after: float = 30.0,
        thread_link: ThreadLink | None = None,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        if not routing_key:
            raise ValueError("a PagerDuty routing key is needed")
        self._routing_key = routing_key
        self.events_url = events_url
        self.timeout = timeout
        self.retry_after = retry_after
        self.thread_link = thread_link
        self._client = client or httpx.AsyncClient(timeout=timeout)
        self._own_client = client is None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    async def __aenter__(self) -> PagerDutySender:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def event(self, message: OutboxMessage, incident: Incident) -> dict[str, Any]:
        """The request body for ``message``: its event with the routing key (and, for a trigger, the client
        and the thread link). ChatRejected when the message carries no event."""
        event = message.payload.get("pagerduty")
        if not isinstance(event, dict) or event.get("event_action") not in ACTIONS:
            raise ChatRejected("the outbox message carries no PagerDuty event", target=TARGET)
        body: dict[str, Any] = {**event, "routing_key": self._routing_key}
        if body["event_action"] != "trigger":
            return body
        payload = dict(body.get("payload") or {})
        details = dict(payload.get("custom_details") or {})
        link = details.get("thread")
        if not link and self.thread_link is not None:
            link = await self.thread_link(incident.id)
        body["client"] = CLIENT
        if link:
            details["thread"] = link
            body["client_url"] = link
            body["links"] = [{"href": link, "text": f"Incident #{incident.id} thread"}]
        payload["custom_details"] = details
        body["payload"] = payload
        return body

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        body = await self.event(message, incident)
        action = body["event_action"]
        try:
            response = await self._client.post(self.events_url, json=body, timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise TransientChatError(f"{action}: timed out ({type(exc).__name__})", target=TARGET) from exc
        except httpx.HTTPError as exc:
            raise TransientChatError(f"{action}: {type(exc).__name__}", target=TARGET) from exc
        status = response.status_code
        if 200 <= status < 300:
            log.info("pagerduty: %s of incident %s accepted (dedup key %s)", action, incident.id, body.get("dedup_key"))
            return
        if status == 429:
            raise RateLimited(_retry_after(response, self.retry_after), target=TARGET, detail=f"{action}: HTTP 429")
        if status >= 500:
            raise TransientChatError(f"{action}: {_explain(response)}", target=TARGET)
        raise ChatRejected(f"{action}: {_explain(response)}", target=TARGET)
