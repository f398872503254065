"""Slack failures → our chat errors: the one place where slack_sdk and aiohttp exceptions are translated.

- HTTP 429, or ``error`` ``ratelimited``/``rate_limited`` → :class:`~bot.errors.RateLimited` with the
  ``Retry-After`` seconds (:data:`DEFAULT_RETRY_AFTER` when the header is missing or unreadable);
- HTTP 5xx, Slack's own transient errors (``internal_error``, ``fatal_error``, ``request_timeout``,
  ``service_unavailable``), network errors and timeouts → :class:`~bot.errors.TransientChatError`;
- any other ``ok: false`` (or another HTTP status) → :class:`SlackRejected`, a
  :class:`~bot.errors.ChatRejected` that keeps Slack's error code.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.errors import ChatError, ChatRejected, RateLimited, TransientChatError

#: Seconds to wait after a 429 that does not say (slack_sdk's own retry handler waits about one).
DEFAULT_RETRY_AFTER = 1.0
RATE_LIMIT_ERRORS = frozenset({"ratelimited", "rate_limited"})
TRANSIENT_ERRORS = frozenset({"internal_error", "fatal_error", "request_timeout", "service_unavailable"})
#: Errors about the message's size or blocks: worth sending again as plain text.
TOO_BIG_ERRORS = frozenset({"invalid_blocks", "invalid_blocks_format", "msg_blocks_too_long", "msg_too_long"})


class SlackRejected(ChatRejected):
    """Slack refused a call for good; ``error`` is its error code (``channel_not_found``…)."""

    code = "slack_rejected"

    def __init__(self, method: str, error: str, *, target: str = "slack", details: tuple[str, ...] = ()) -> None:
        super().__init__(f"Slack refused {method}: {error}", target=target)
        self.method = method
        self.error = error
        self.details = details


def retry_after(headers: Mapping[str, Any] | None) -> float:
    """The ``Retry-After`` seconds in ``headers`` (any case), or :data:`DEFAULT_RETRY_AFTER`."""
    for key, value in (headers or {}).items():
        if str(key).lower() == "retry-after":
            try:
                seconds = float(value)
            except (TypeError, ValueError):
                break
            if seconds >= 0:
                return seconds
            break
    return DEFAULT_RETRY_AFTER


def _api_error(exc: SlackApiError, method: str, target: str) -> ChatError:
    response = exc.response
    status = int(getattr(response, "status_code", 0) or 0)
    data = getattr(response, "data", None)
    body: Mapping[str, Any] = data if isinstance(data, Mapping) else {}
    error = str(body.get("error") or "")
    if status == 429 or error in RATE_LIMIT_ERRORS:
        headers = getattr(response, "headers", None)
        return RateLimited(retry_after(headers), target=target, detail=f"Slack {method}: {error or 'HTTP 429'}")
    if status >= 500 or error in TRANSIENT_ERRORS:
        return TransientChatError(f"Slack {method}: {error or f'HTTP {status}'}", target=target)
    details = tuple(str(e) for e in body.get("errors") or ())
    return SlackRejected(method, error or f"http_{status}", target=target, details=details)


def translate(exc: BaseException, *, method: str, target: str = "slack") -> ChatError:
    """The chat error a failed Slack call ``method`` stands for (raise it ``from exc``)."""
    if isinstance(exc, ChatError):
        return exc
    if isinstance(exc, SlackApiError):
        return _api_error(exc, method, target)
    if isinstance(exc, TimeoutError):
        return TransientChatError(f"Slack {method}: no answer in time", target=target)
    if isinstance(exc, aiohttp.ClientError | OSError):
        return TransientChatError(f"Slack {method}: {type(exc).__name__}", target=target)
    if isinstance(exc, SlackClientError):
        return SlackRejected(method, type(exc).__name__, target=target)
    return TransientChatError(f"Slack {method}: unexpected {type(exc).__name__}", target=target)
