"""The outbox worker on every store (memory, SQLite, PostgreSQL): an incident's messages are delivered
in order, once each, when a worker dies mid-batch and a second one takes over after the lease; a 429's
Retry-After and coalesced card updates behave the same as on the in-memory reference."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.core.blocks import Block
from bot.core.cards import render_message
from bot.core.incidents import Incident, OutboxMessage
from bot.core.store import Store
from bot.services.outbox import OutboxWorker, Pace
from bot.testing import RecordingNotifier

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
LEASE = timedelta(seconds=30)
QUEUED = T0 - timedelta(seconds=1)  # queued just before the worker looks


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class Crash(BaseException):
    """The process dies: nothing after it runs."""


async def seed(store: Store, kinds: list[tuple[str, str]]) -> None:
    async with store.transaction() as tx:
        await tx.save_incident(Incident(id="1", key="shop:5xx", service="shop", routed=True, status=502, opened_at=T0))
        for n, (mid, kind) in enumerate(kinds):
            await tx.enqueue_message(
                OutboxMessage.model_validate(
                    {"id": mid, "incident_id": "1", "kind": kind, "created_at": QUEUED + timedelta(microseconds=n)}
                )
            )


def worker(store: Store, clock: Clock, chat: RecordingNotifier) -> OutboxWorker:
    return OutboxWorker(store, render_message, {"chat": chat}, clock, Pace(1.0), sleep=clock.sleep, lease=LEASE)


async def drain(outbox: OutboxWorker, store: Store, clock: Clock) -> None:
    for _ in range(500):
        if not await store.pending_messages():
            return
        if not await outbox.run_once():
            clock.now += timedelta(seconds=0.5)
    raise AssertionError("the outbox never drained")


async def test_exactly_once_in_order_across_a_crash(store: Store) -> None:
    clock = Clock()
    ids = [f"m{i}" for i in range(5)]
    await seed(store, [("m0", "opened")] + [(m, "post") for m in ids[1:]])

    class Dying(RecordingNotifier):
        async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
            if len(self.sent) == 2:
                raise Crash
            await super().send(message, blocks, incident)

    first = Dying(clock)
    with pytest.raises(Crash):
        await worker(store, clock, first).run_once()
    second = RecordingNotifier(clock)
    restarted = worker(store, clock, second)
    assert await restarted.run_once() == 0  # still leased to the dead worker
    clock.now = T0 + LEASE + timedelta(seconds=1)
    await drain(restarted, store, clock)
    assert first.ids + second.ids == ids
    assert await store.pending_messages() == []


async def test_retry_after_and_coalescing(store: Store) -> None:
    clock = Clock()
    await seed(store, [("o1", "opened"), ("u1", "updated"), ("u2", "updated"), ("p1", "post")])
    chat = RecordingNotifier(clock).rate_limit(4.0)
    await drain(worker(store, clock, chat), store, clock)
    assert chat.attempts[0] == (T0, "o1")
    assert chat.ids == ["o1", "u2", "p1"]
    assert chat.times[0] == T0 + timedelta(seconds=4)
    assert await store.pending_messages() == []
