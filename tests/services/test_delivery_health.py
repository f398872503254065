"""DeliveryHealth on the in-memory store, told about failures and deliveries directly: an incident whose
message was tried only once is still marked degraded when the target keeps failing for other incidents
(a busy worker retries each incident seldom); a delivery to the target in between voids that evidence;
one degraded and one restored event per run, with the other targets' cards queued for a refresh."""

from __future__ import annotations

from datetime import timedelta

from bot.core.incidents import ChatThread, Incident
from bot.services.delivery_health import DeliveryHealth
from bot.testing import MemoryStore
from tests.services.test_outbox import T0, Clock, incident


def health(store: MemoryStore, clock: Clock) -> DeliveryHealth:
    return DeliveryHealth(store, clock, ("slack", "telegram"), lambda message, _: message.target)


async def kinds(store: MemoryStore, incident_id: str) -> list[str]:
    return [e.kind for e in await store.timeline(incident_id) if e.kind.startswith("delivery_")]


async def fail(watch: DeliveryHealth, clock: Clock, found: Incident, at: float) -> None:
    clock.now = T0 + timedelta(seconds=at)
    await watch.failed(found, "slack", "Slack chat.postMessage: HTTP 503", "chat_transient")


async def test_a_target_failing_for_others_marks_an_incident_tried_once_as_degraded() -> None:
    store, clock = MemoryStore(), Clock()
    busy, quiet = await incident(store, 1), await incident(store, 2)
    watch = health(store, clock)
    await fail(watch, clock, quiet, 0)  # tried once, its retry far away
    for at in (1, 10, 20):
        await fail(watch, clock, busy, at)
    assert await kinds(store, "2") == []  # not 30 s yet
    await fail(watch, clock, busy, 31)
    assert await kinds(store, "1") == ["delivery_degraded"] and await kinds(store, "2") == ["delivery_degraded"]
    [event] = [e for e in await store.timeline("2") if e.kind == "delivery_degraded"]
    assert event.at == T0 + timedelta(seconds=31) and event.data["since"] == T0.isoformat()
    assert event.data["failures"] == 1  # its own; the target's other failures made the case
    await fail(watch, clock, busy, 90)
    assert await kinds(store, "2") == ["delivery_degraded"]  # once per run

    clock.now = T0 + timedelta(seconds=120)
    await watch.delivered(quiet, "slack")
    await watch.delivered(busy, "slack")
    assert await kinds(store, "2") == ["delivery_degraded", "delivery_restored"]
    assert await kinds(store, "1") == ["delivery_degraded", "delivery_restored"]


async def test_a_delivery_to_the_target_voids_the_other_incidents_evidence() -> None:
    store, clock = MemoryStore(), Clock()
    busy, quiet, fine = await incident(store, 1), await incident(store, 2), await incident(store, 3)
    watch = health(store, clock)
    await fail(watch, clock, quiet, 0)
    await fail(watch, clock, busy, 1)
    await fail(watch, clock, busy, 2)
    clock.now = T0 + timedelta(seconds=3)
    await watch.delivered(fine, "slack")  # Slack works: incident 2's trouble is its own
    await fail(watch, clock, busy, 35)
    assert await kinds(store, "1") == ["delivery_degraded"]  # its own three failures over 34 s
    assert await kinds(store, "2") == []  # one failure of its own and one of the target's since it worked


async def test_the_other_targets_cards_are_refreshed_where_a_thread_exists() -> None:
    store, clock = MemoryStore(), Clock()
    found = await incident(store, 1)
    thread = {"incident_id": "1", "target": "telegram", "channel": "-100", "root": "7", "created_at": T0}
    await store.save_thread(ChatThread.model_validate(thread))
    watch = health(store, clock)
    for at in (0, 1, 3, 31):
        await fail(watch, clock, found, at)
    cards = [(m.target, m.kind) for m in await store.pending_messages()]
    assert cards == [("telegram", "updated")]  # not Slack's own card: it cannot be reached, and never warns
    clock.now = T0 + timedelta(seconds=60)
    await watch.delivered(found, "slack")
    assert [(m.target, m.kind) for m in await store.pending_messages()] == [("telegram", "updated")] * 2
