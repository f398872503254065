"""Replayed and redelivered Slack requests: recognised, answered 200, and not acted on.

- **Replays (HTTP mode).** A request is signed over its timestamp and body, and Slack's signature stays
  acceptable for :data:`WINDOW` (300) seconds either side of its timestamp. :class:`ReplayGuard`
  remembers every (timestamp, signature) it let through until that window has surely passed, so the same
  signed request sent again (captured and replayed, or re-sent by a proxy) is a no-op. Signature
  verification runs first: a request with a bad or stale signature never reaches the guard (401).
- **Redeliveries (both modes).** The Events API sends an event again when it did not get a 200 within
  3 seconds, with ``X-Slack-Retry-Num`` (in Socket Mode the envelope's ``retry_attempt``, which bolt
  turns into the same header, ``0`` on the first delivery). Those are acknowledged and ignored: the first
  delivery was already taken.

The memory is per process: several HTTP replicas behind one load balancer each keep their own.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence

from slack_bolt.middleware.async_middleware import AsyncMiddleware
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse

log = logging.getLogger(__name__)

#: Slack's signature window: a timestamp more than this many seconds from now is refused.
WINDOW = 300.0
#: At most this many signatures are remembered (the oldest are forgotten first).
CAPACITY = 100_000


class ReplayGuard:
    """Remembers the signed requests it has let through for as long as their signature could be accepted.

    ``clock`` gives seconds since the epoch (the same clock Slack's timestamps use)."""

    def __init__(
        self, clock: Callable[[], float] = time.time, *, window: float = WINDOW, capacity: int = CAPACITY
    ) -> None:
        self.clock = clock
        self.window = window
        self.capacity = capacity
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def first_time(self, timestamp: str, signature: str) -> bool:
        """True the first time a (timestamp, signature) pair is offered, False for every replay of it."""
        now = self.clock()
        self._forget(now)
        key = (timestamp, signature)
        if key in self._seen:
            return False
        try:
            signed_at = float(timestamp)
        except ValueError:
            signed_at = now
        # Acceptable until signed_at + window by Slack's rule; measured from now too, in case clocks differ.
        self._seen[key] = max(signed_at, now) + self.window + 1
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True

    def _forget(self, now: float) -> None:
        while self._seen:
            key, until = next(iter(self._seen.items()))
            if until > now:
                return
            del self._seen[key]

    def __len__(self) -> int:
        return len(self._seen)


def _header(headers: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = headers.get(name)
    return values[0] if values else None


def retry_number(headers: Mapping[str, Sequence[str]]) -> int:
    """The redelivery number in ``X-Slack-Retry-Num`` (0 for a first delivery or no header)."""
    value = _header(headers, "x-slack-retry-num")
    try:
        return max(0, int(value)) if value is not None else 0
    except ValueError:
        return 0


class ReplayMiddleware(AsyncMiddleware):
    """A bolt global middleware (it runs after bolt's signature verification): a replayed HTTP request or
    an Events API redelivery gets an empty 200 and goes no further."""

    def __init__(self, guard: ReplayGuard) -> None:
        self.guard = guard

    async def async_process(
        self, *, req: AsyncBoltRequest, resp: BoltResponse, next: Callable[[], Awaitable[BoltResponse]]
    ) -> BoltResponse | None:
        retry = retry_number(req.headers)
        if retry > 0:
            reason = _header(req.headers, "x-slack-retry-reason") or "unknown"
            log.info("slack: redelivery %d of a request (%s) acknowledged and ignored", retry, reason)
            return BoltResponse(status=200, body="")
        if req.mode == "http":
            timestamp = _header(req.headers, "x-slack-request-timestamp") or ""
            signature = _header(req.headers, "x-slack-signature") or ""
            if not self.guard.first_time(timestamp, signature):
                log.warning("slack: a replayed request (timestamp %s) was answered and ignored", timestamp)
                return BoltResponse(status=200, body="")
        return await next()

    @property
    def name(self) -> str:
        return "ReplayMiddleware"
