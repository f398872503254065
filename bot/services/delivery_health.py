"""Delivery health of the outbox: a chat target that keeps failing for an incident is said to be degraded,
on the incident's timeline and on the cards the other targets show, until it takes a message again.

The outbox worker tells a :class:`DeliveryHealth` about every failed attempt that will be retried (5xx,
network error, timeout, 429, a sender's bug) and every delivery, per incident and target
(``bot/core/delivery.py`` says what the events hold):

- **degraded**: once the incident's head message to the target first failed at least
  :attr:`~bot.core.delivery.DegradedAfter.seconds` ago and the target has failed at least
  :attr:`~bot.core.delivery.DegradedAfter.failures` times since (this incident's attempts, or any
  incident's while nothing reached the target: a busy worker may retry one incident seldom, but an outage
  shows on every attempt), one ``delivery_degraded`` event ("Slack delivery delayed since 10:02 UTC: Slack
  chat.postMessage: HTTP 503; 7 messages waiting"), unless the timeline already says degraded (a worker
  that restarted mid-outage, another replica);
- **restored**: at the first delivery to the target after that, one ``delivery_restored`` event ("Slack
  delivery restored after 10m05s; 7 messages held back go out now, in order");
- with each of the two, an ``updated`` card is queued (the same transaction) for every other target where
  the incident has a thread, so a Telegram thread's card shows Slack's trouble and loses the line again;
  the failing target's own card needs no refresh (it cannot be reached, and a card never shows its own
  target's trouble: once it goes out, that target works).

The state lives on the timeline only. What this process knows of it is cached per incident and target
for :attr:`DeliveryHealth.recheck` (a delivery reads the timeline at most that often to learn whether a
restore is due), so a degradation another process recorded is cleared within that time of a delivery.
Recording never gets in the way of delivery: a store failure here is logged and the message goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.core.delivery import (
    DEGRADED_AFTER,
    DegradedAfter,
    TargetDelivery,
    degraded_event,
    degraded_targets,
    restored_event,
)
from bot.core.incidents import Incident, OutboxMessage, TimelineEvent
from bot.core.redact import redact_or_withhold
from bot.core.store import Store
from bot.services.announce import Announcer

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
#: ``target_of(message, incident)``: the target (sender name) a pending message goes to.
TargetOf = Callable[[OutboxMessage, Incident], str]

#: How long the last failure's text may be on the timeline.
MAX_ERROR_CHARS = 200
#: How many (incident, target) states and failing runs one process remembers (the oldest are forgotten).
MAX_KNOWN = 4096


@dataclass
class _Trouble:
    """The failing run of one incident's messages to one target, as this process saw it: its own failures,
    and the target's (``seen``: any incident's, counted while nothing reached the target)."""

    incident: Incident
    since: datetime
    failures: int = 0
    seen: int = 0
    error: str = ""
    code: str = ""
    reported: bool = False


def _error_text(text: str) -> str:
    text = redact_or_withhold(" ".join(text.split()))
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


class DeliveryHealth:
    def __init__(
        self,
        store: Store,
        clock: Clock,
        targets: Iterable[str],
        target_of: TargetOf,
        *,
        threshold: DegradedAfter = DEGRADED_AFTER,
        recheck: timedelta = timedelta(seconds=60),
    ) -> None:
        self.store = store
        self.clock = clock
        self.targets = tuple(targets)
        self.target_of = target_of
        self.threshold = threshold
        self.recheck = recheck
        self._trouble: dict[tuple[str, str], _Trouble] = {}
        self._known: OrderedDict[tuple[str, str], tuple[bool, datetime]] = OrderedDict()

    # -- what the worker calls --------------------------------------------------------------------

    async def failed(self, incident: Incident, target: str, error: str, code: str) -> None:
        """A message of ``incident`` to ``target`` failed and will be tried again."""
        key = (incident.id, target)
        now = self.clock()
        trouble = self._trouble.get(key)
        if trouble is None:
            trouble = self._trouble[key] = _Trouble(incident, since=now)
            while len(self._trouble) > MAX_KNOWN:  # runs that never ended (their messages were refused for good)
                del self._trouble[next(iter(self._trouble))]
        trouble.incident = incident
        trouble.failures += 1
        trouble.error, trouble.code = _error_text(error), code
        runs = [run for (_, name), run in self._trouble.items() if name == target]
        for run in runs:
            run.seen += 1
        for run in runs:
            if not run.reported and self.threshold.reached(max(run.failures, run.seen), now - run.since):
                await self._report(run, target, now)

    async def _report(self, trouble: _Trouble, target: str, now: datetime) -> None:
        """Write the degraded event of ``trouble`` (unless the timeline has it already)."""
        incident = trouble.incident
        try:
            if await self._degraded(incident.id, target) is None:
                await self._record_degraded(incident, target, trouble, now)
            trouble.reported = True
            self._remember((incident.id, target), True, now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery health: recording that %s is degraded for incident %s failed", target, incident.id)

    async def delivered(self, incident: Incident, target: str) -> None:
        """A message of ``incident`` reached ``target``."""
        key = (incident.id, target)
        trouble = self._trouble.pop(key, None)
        for (_, name), run in self._trouble.items():
            if name == target:  # the target works: other incidents' runs count their own failures again
                run.seen = run.failures
        now = self.clock()
        try:
            known = self._cached(key, now)
            if known is False and (trouble is None or not trouble.reported):
                return
            degraded = await self._degraded(incident.id, target)
            if degraded is not None:
                await self._record_restored(incident, target, degraded, now)
            self._remember(key, False, now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery health: recording that %s is restored for incident %s failed", target, incident.id)

    async def others_degraded(self, incident: Incident, target: str) -> list[TargetDelivery]:
        """The targets other than ``target`` whose delivery is degraded for ``incident`` (what its card on
        ``target`` warns about); nothing when the timeline cannot be read."""
        try:
            events = await self.store.timeline(incident.id)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("delivery health: reading incident %s's timeline failed", incident.id)
            return []
        now = self.clock()
        degraded = degraded_targets(events)
        for name in {*self.targets, *degraded}:
            self._remember((incident.id, name), name in degraded, now)
        return [state for name, state in degraded.items() if name != target]

    # -- the state --------------------------------------------------------------------------------

    def _cached(self, key: tuple[str, str], now: datetime) -> bool | None:
        known = self._known.get(key)
        if known is None or now - known[1] >= self.recheck:
            return None
        self._known.move_to_end(key)
        return known[0]

    def _remember(self, key: tuple[str, str], degraded: bool, now: datetime) -> None:
        self._known[key] = (degraded, now)
        self._known.move_to_end(key)
        while len(self._known) > MAX_KNOWN:
            self._known.popitem(last=False)

    async def _degraded(self, incident_id: str, target: str) -> TargetDelivery | None:
        """The target's degradation on the incident's timeline, if it is degraded now."""
        events = await self.store.timeline(incident_id)
        return degraded_targets(events).get(target)

    async def _waiting(self, incident: Incident, target: str) -> int:
        pending = await self.store.pending_messages()
        return sum(1 for m in pending if m.incident_id == incident.id and self.target_of(m, incident) == target)

    async def _refresh(self, incident: Incident, target: str, now: datetime) -> Sequence[OutboxMessage]:
        """An ``updated`` card for each other target where the incident's thread exists."""
        others = [t for t in self.targets if t != target and await self.store.get_thread(incident.id, t) is not None]
        return Announcer(lambda _: others).messages(incident, "updated", now) if others else []

    async def _write(self, event: TimelineEvent, cards: Sequence[OutboxMessage]) -> None:
        async with self.store.transaction() as tx:
            await tx.add_event(event)
            for card in cards:
                await tx.enqueue_message(card)

    async def _record_degraded(self, incident: Incident, target: str, trouble: _Trouble, now: datetime) -> None:
        event = degraded_event(
            incident.id, at=now, target=target, since=trouble.since, error=trouble.error, code=trouble.code,
            failures=trouble.failures, waiting=await self._waiting(incident, target),
        )  # fmt: skip
        await self._write(event, await self._refresh(incident, target, now))
        log.warning("outbox: %s (incident %s)", event.text, incident.id)

    async def _record_restored(self, incident: Incident, target: str, degraded: TargetDelivery, now: datetime) -> None:
        since = degraded.since or now
        waiting = await self._waiting(incident, target)
        event = restored_event(incident.id, at=now, target=target, since=since, waiting=waiting)
        await self._write(event, await self._refresh(incident, target, now))
        log.warning("outbox: %s (incident %s)", event.text, incident.id)
