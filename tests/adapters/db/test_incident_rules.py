"""The incident service's rules (tests/services/test_incidents.py) re-run through the Store port on
every backend: the in-memory reference, SQLite and PostgreSQL must give the same answers."""

from __future__ import annotations

import asyncio

import pytest

from bot.adapters.db import SqlStore
from bot.core.incidents import IncidentState
from bot.core.store import Store
from bot.services.incidents import IncidentService
from tests.adapters.db.conftest import SQL, EngineFactory
from tests.services.test_incidents import Clock, alert, group_of, service_of


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: Store, clock: Clock) -> IncidentService:
    return IncidentService(store, route=service_of, group=group_of, clock=clock)


async def repeats(store: Store, fingerprint: str) -> int:
    async with store.transaction() as tx:
        stored = await tx.get_alert(fingerprint)
    assert stored is not None
    return stored.repeats


async def test_the_same_payload_five_times_makes_one_incident_one_message_one_job(
    service: IncidentService, store: Store
) -> None:
    for _ in range(5):
        await service.ingest([alert("a1"), alert("a2")])
    assert len(await store.list_incidents()) == 1
    assert [m.kind for m in await store.pending_messages()] == ["opened"]
    assert len(await store.pending_jobs()) == 1
    assert await repeats(store, "a1") == 4


async def test_alerts_of_one_service_and_status_class_share_an_incident(service: IncidentService, store: Store) -> None:
    report = await service.ingest([alert("a1", status=502), alert("a2", status=504), alert("b1", service="blog")])
    assert [r.outcome for r in report.results] == ["opened", "joined", "opened"]
    assert {i.id: i.alert_count for i in await store.list_incidents()} == {"1": 2, "2": 1}


async def test_a_resolved_for_an_alert_never_seen_opens_nothing(service: IncidentService, store: Store) -> None:
    report = await service.ingest([alert("ghost", state="resolved")])
    assert report.results[0].outcome == "ignored"
    assert not await store.list_incidents() and not await store.pending_messages()


async def test_the_incident_resolves_when_its_last_alert_resolves(
    service: IncidentService, store: Store, clock: Clock
) -> None:
    await service.ingest([alert("a1"), alert("a2")])
    clock.advance(minutes=7)
    first = await service.ingest([alert("a1", state="resolved")])
    assert first.results[0].outcome == "resolved_alert"
    last = await service.ingest([alert("a2", state="resolved")])
    assert last.results[0].outcome == "resolved_incident"
    [incident] = await store.list_incidents()
    assert incident.state is IncidentState.RESOLVED and incident.resolved_at == clock.now
    assert [m.kind for m in await store.pending_messages()] == ["opened", "resolved", "post"]
    timeline = await store.timeline(incident.id)
    assert [e.kind for e in timeline] == [
        "opened", "diagnosis_queued", "alert_firing", "alert_resolved", "alert_resolved", "resolved"
    ]
    assert "after 7m00s" in timeline[-1].text


async def test_a_flapping_alert_stays_in_one_incident_within_the_window(
    service: IncidentService, store: Store, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    await service.ingest([alert("a1", state="resolved")])
    clock.advance(minutes=2)
    again = await service.ingest([alert("a1")])
    assert again.results[0].outcome == "reopened"
    [incident] = await store.list_incidents()
    assert incident.state is IncidentState.TRIGGERED and incident.resolved_at is None
    assert [m.kind for m in await store.pending_messages()] == ["opened", "resolved", "post", "updated", "post"]


async def test_a_trigger_after_the_window_opens_a_new_incident(
    service: IncidentService, store: Store, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    await service.ingest([alert("a1", state="resolved")])
    clock.advance(minutes=30)
    again = await service.ingest([alert("a1")])
    assert again.results[0].outcome == "opened"
    assert [i.id for i in await store.list_incidents()] == ["2", "1"]  # newest first
    assert len(await store.pending_jobs()) == 2


async def test_an_unrouted_alert_still_opens_an_incident_but_is_never_diagnosed(
    service: IncidentService, store: Store
) -> None:
    await service.ingest([alert("x1", service=None)])
    [incident] = await store.list_incidents()
    assert not incident.routed and incident.service is None
    assert not await store.pending_jobs()
    assert "unrouted" in (await store.timeline(incident.id))[0].text


async def test_concurrent_deliveries_of_one_group_open_one_incident(service: IncidentService, store: Store) -> None:
    """HA peers deliver the same group at the same moment: still one incident and one message."""
    await asyncio.gather(*(service.ingest([alert("a1"), alert("a2")]) for _ in range(3)))
    assert len(await store.list_incidents()) == 1
    assert [m.kind for m in await store.pending_messages()] == ["opened"]
    assert len(await store.pending_jobs()) == 1


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_three_replicas_delivering_one_group_at_once_open_one_incident(
    engines: EngineFactory, clock: Clock
) -> None:
    """Three engines (as three bot replicas would have) ingest the same alerts concurrently, several rounds."""
    stores = [SqlStore(await engines()) for _ in range(3)]
    services = [IncidentService(s, route=service_of, group=group_of, clock=clock) for s in stores]
    for _ in range(3):
        await asyncio.gather(*(svc.ingest([alert("a1"), alert("a2"), alert("b1", service="blog")]) for svc in services))
    store = stores[0]
    incidents = await store.list_incidents()
    assert sorted(i.key for i in incidents) == ["blog:5xx", "shop:5xx"]
    assert sorted(i.id for i in incidents) == ["1", "2"]
    assert [m.kind for m in await store.pending_messages()] == ["opened", "opened"]
    assert len(await store.pending_jobs()) == 2
    assert await repeats(store, "a1") == 8


@pytest.mark.parametrize("backend", SQL, indirect=True)
async def test_three_ha_peers_sending_one_group_0_15_and_30_seconds_apart_open_one_incident(
    engines: EngineFactory, clock: Clock
) -> None:
    """Alertmanager HA peers each notify (a peer waits ``peer_timeout`` × its position before sending), to
    different bot replicas, each payload replayed five times: one incident, one "opened", one job."""
    stores = [SqlStore(await engines()) for _ in range(3)]
    services = [IncidentService(s, route=service_of, group=group_of, clock=clock) for s in stores]
    for peer, service in enumerate(services):
        if peer:
            clock.advance(seconds=15)
        for _ in range(5):
            await service.ingest([alert("a1"), alert("a2")])
    store = stores[0]
    assert [i.key for i in await store.list_incidents()] == ["shop:5xx"]
    assert [m.kind for m in await store.pending_messages()] == ["opened"]
    assert len(await store.pending_jobs()) == 1


async def test_acknowledge_and_resolve_keep_the_actor_on_every_backend(
    service: IncidentService, store: Store, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    [incident] = await store.list_incidents()
    clock.advance(minutes=2)
    assert (await service.acknowledge(incident.id, "alice")).outcome == "acknowledged"
    assert (await service.acknowledge(incident.id, "bob")).outcome == "already_acknowledged"
    clock.advance(minutes=5)
    assert (await service.resolve(incident.id, "alice")).outcome == "resolved"
    assert (await service.resolve(incident.id, "alice")).outcome == "already_resolved"
    stored = await store.get_incident(incident.id)
    assert stored is not None and stored.state is IncidentState.RESOLVED
    assert stored.acknowledged_by == "alice" and stored.acknowledged_at is not None
    events = [(e.kind, e.actor) for e in await store.timeline(incident.id)]
    assert ("acknowledged", "alice") in events and events[-1] == ("resolved", "alice")
    assert [m.kind for m in await store.pending_messages()] == ["opened", "updated", "post", "resolved", "post"]
