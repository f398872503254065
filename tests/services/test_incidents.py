"""The incident rules on the in-memory store: one incident per group, duplicates change nothing,
resolutions, the flapping window, unrouted alerts and concurrent deliveries."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.core.incidents import IncidentState
from bot.core.models import Alert
from bot.services.incidents import IncidentService
from bot.testing import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


def alert(fp: str, state: str = "firing", service: str | None = "shop", status: int = 502) -> Alert:
    labels = {"alertname": f"Site{status}", **({"service": service} if service else {})}
    return Alert.model_validate(
        {"source": "alertmanager", "fingerprint": fp, "state": state, "status": status, "labels": labels}
    )


def service_of(a: Alert) -> str | None:
    return a.labels.get("service")


def group_of(a: Alert, service: str | None) -> str:
    klass = f"{a.status // 100}xx" if a.status else "unknown"
    return f"{service or 'unrouted:' + a.fingerprint}:{klass}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def service(store: MemoryStore, clock: Clock) -> IncidentService:
    return IncidentService(store, route=service_of, group=group_of, clock=clock)


async def test_the_same_payload_five_times_makes_one_incident_one_message_one_job(
    service: IncidentService, store: MemoryStore
) -> None:
    for _ in range(5):
        await service.ingest([alert("a1"), alert("a2")])
    assert len(store.incidents) == 1
    assert [m.kind for m in store.messages] == ["opened"]
    assert len(store.jobs) == 1
    assert store.alerts["a1"].repeats == 4


async def test_alerts_of_one_service_and_status_class_share_an_incident(
    service: IncidentService, store: MemoryStore
) -> None:
    report = await service.ingest([alert("a1", status=502), alert("a2", status=504), alert("b1", service="blog")])
    assert [r.outcome for r in report.results] == ["opened", "joined", "opened"]
    assert len(store.incidents) == 2


async def test_a_resolved_for_an_alert_never_seen_opens_nothing(service: IncidentService, store: MemoryStore) -> None:
    report = await service.ingest([alert("ghost", state="resolved")])
    assert report.results[0].outcome == "ignored"
    assert not store.incidents and not store.messages


async def test_the_incident_resolves_when_its_last_alert_resolves(
    service: IncidentService, store: MemoryStore, clock: Clock
) -> None:
    await service.ingest([alert("a1"), alert("a2")])
    clock.advance(minutes=7)
    first = await service.ingest([alert("a1", state="resolved")])
    assert first.results[0].outcome == "resolved_alert"
    last = await service.ingest([alert("a2", state="resolved")])
    assert last.results[0].outcome == "resolved_incident"
    [incident] = store.incidents.values()
    assert incident.state is IncidentState.RESOLVED and incident.resolved_at == clock.now
    assert [m.kind for m in store.messages] == ["opened", "resolved"]
    assert "after 7m00s" in (await store.timeline(incident.id))[-1].text


async def test_a_flapping_alert_stays_in_one_incident_within_the_window(
    service: IncidentService, store: MemoryStore, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    await service.ingest([alert("a1", state="resolved")])
    clock.advance(minutes=2)
    again = await service.ingest([alert("a1")])
    assert again.results[0].outcome == "reopened"
    assert len(store.incidents) == 1
    assert next(iter(store.incidents.values())).state is IncidentState.TRIGGERED


async def test_a_trigger_after_the_window_opens_a_new_incident(
    service: IncidentService, store: MemoryStore, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    await service.ingest([alert("a1", state="resolved")])
    clock.advance(minutes=30)
    again = await service.ingest([alert("a1")])
    assert again.results[0].outcome == "opened"
    assert len(store.incidents) == 2
    assert len(store.jobs) == 2


async def test_an_unrouted_alert_still_opens_an_incident_but_is_never_diagnosed(
    service: IncidentService, store: MemoryStore
) -> None:
    await service.ingest([alert("x1", service=None)])
    [incident] = store.incidents.values()
    assert not incident.routed and incident.service is None
    assert not store.jobs
    assert "unrouted" in store.events[0].text


async def test_concurrent_deliveries_of_one_group_open_one_incident(
    service: IncidentService, store: MemoryStore
) -> None:
    """HA peers deliver the same group at the same moment: still one incident and one message."""
    await asyncio.gather(*(service.ingest([alert("a1"), alert("a2")]) for _ in range(3)))
    assert len(store.incidents) == 1
    assert [m.kind for m in store.messages] == ["opened"]


async def test_acknowledging_records_who_and_when_and_says_so_once(
    service: IncidentService, store: MemoryStore, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    [incident_id] = store.incidents
    clock.advance(minutes=3)
    done = await service.acknowledge(incident_id, "alice")
    assert done.outcome == "acknowledged" and done.changed
    incident = store.incidents[incident_id]
    assert incident.state is IncidentState.ACKNOWLEDGED
    assert incident.acknowledged_at == clock.now and incident.acknowledged_by == "alice"
    event = (await store.timeline(incident_id))[-1]
    assert (event.kind, event.actor, event.at) == ("acknowledged", "alice", clock.now)
    assert [m.kind for m in store.messages] == ["opened", "updated"]


async def test_acknowledging_twice_is_a_no_op_answer(
    service: IncidentService, store: MemoryStore, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    [incident_id] = store.incidents
    await service.acknowledge(incident_id, "alice")
    clock.advance(minutes=1)
    again = await service.acknowledge(incident_id, "bob")
    assert again.outcome == "already_acknowledged" and not again.changed
    assert again.incident is not None and again.incident.acknowledged_by == "alice"
    assert [m.kind for m in store.messages] == ["opened", "updated"]
    assert [e.kind for e in await store.timeline(incident_id)].count("acknowledged") == 1


async def test_resolving_by_hand_resolves_and_queues_resolved(
    service: IncidentService, store: MemoryStore, clock: Clock
) -> None:
    await service.ingest([alert("a1")])
    [incident_id] = store.incidents
    await service.acknowledge(incident_id, "alice")
    clock.advance(minutes=10)
    done = await service.resolve(incident_id, "alice")
    assert done.outcome == "resolved"
    incident = store.incidents[incident_id]
    assert incident.state is IncidentState.RESOLVED and incident.resolved_at == clock.now
    event = (await store.timeline(incident_id))[-1]
    assert (event.kind, event.actor) == ("resolved", "alice") and "after 10m" in event.text
    assert [m.kind for m in store.messages] == ["opened", "updated", "resolved"]


async def test_acting_on_a_resolved_incident_changes_nothing(service: IncidentService, store: MemoryStore) -> None:
    await service.ingest([alert("a1")])
    [incident_id] = store.incidents
    await service.resolve(incident_id, "alice")
    assert (await service.resolve(incident_id, "bob")).outcome == "already_resolved"
    assert (await service.acknowledge(incident_id, "bob")).outcome == "already_resolved"
    assert [m.kind for m in store.messages] == ["opened", "resolved"]


async def test_acting_on_an_unknown_incident_is_not_found(service: IncidentService, store: MemoryStore) -> None:
    assert (await service.acknowledge("404", "alice")).outcome == "not_found"
    assert (await service.resolve("404", "alice")).outcome == "not_found"
    assert not store.messages and not store.events


async def test_the_last_alert_resolving_after_a_manual_resolution_says_nothing_more(
    service: IncidentService, store: MemoryStore
) -> None:
    await service.ingest([alert("a1")])
    [incident_id] = store.incidents
    await service.resolve(incident_id, "alice")
    report = await service.ingest([alert("a1", state="resolved")])
    assert report.results[0].outcome == "resolved_alert"
    assert [m.kind for m in store.messages] == ["opened", "resolved"]
