"""The escalation worker: fires the stored escalation timers that are due.

Timers are rows in the store (:class:`~bot.core.incidents.EscalationTimer`), written in the same
transaction as the page or the opening that schedules them, so they survive restarts. An
:class:`EscalationWorker` claims the earliest due one under a lease (:meth:`Store.claim_timer`: ``FOR
UPDATE SKIP LOCKED`` on PostgreSQL, so replicas never claim the same timer) and hands it to
:meth:`Pager.fire <bot.services.paging.Pager.fire>`, which marks it fired in the same transaction as
the page, and only while this worker still holds it. A worker that dies holding a timer leaves it
claimed; once the lease runs out another worker takes it and, since nothing of the first attempt was
committed, pages once. Time is injected (``clock``): tests move it instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable
from datetime import datetime, timedelta

from bot.core.store import Store
from bot.services.paging import Pager

log = logging.getLogger(__name__)

#: How long a worker may hold a claimed timer before another may take it.
TIMER_LEASE = timedelta(seconds=60)


class EscalationWorker:
    def __init__(
        self,
        store: Store,
        pager: Pager,
        clock: Callable[[], datetime],
        worker_id: str,
        *,
        lease: timedelta = TIMER_LEASE,
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        self.store = store
        self.pager = pager
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease
        #: (timer id, ``Pager.fire``'s outcome) of the latest timers this worker claimed, newest last.
        self.outcomes: deque[tuple[str, str]] = deque(maxlen=1000)

    async def run_once(self) -> bool:
        """Claim one due timer and fire it; False when none was due."""
        timer = await self.store.claim_timer(self.worker_id, self.lease, self.clock())
        if timer is None:
            return False
        outcome = await self.pager.fire(timer)
        self.outcomes.append((timer.id, outcome))
        log.info("escalation timer %s of incident %s (level %d): %s", timer.id, timer.incident_id, timer.level, outcome)
        return True

    async def run_forever(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Fire timers until ``stop`` is set, looking again every ``idle`` seconds when none is due."""
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise  # a claimed timer stays leased and is taken again once the lease runs out
            except Exception:  # the store failed, or a page could not be written: the lease brings it back
                log.exception("escalation worker %s failed", self.worker_id)
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle)
