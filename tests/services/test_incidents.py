"""Acknowledging and resolving incidents by hand, on the in-memory store, and the helpers the store-level
rule tests share. The alert scenarios (one incident per group, duplicates, resolutions, the flapping
window, unrouted alerts, concurrent deliveries) run on every store, memory included, in
tests/adapters/db/test_incident_rules.py."""

from __future__ import annotations

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
    assert [m.kind for m in store.messages] == ["opened", "updated", "post"]
    assert store.messages[-1].payload == {"text": "Acknowledged by alice"}  # said in the thread too


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
    assert [m.kind for m in store.messages] == ["opened", "updated", "post"]
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
    assert [m.kind for m in store.messages] == ["opened", "updated", "post", "resolved", "post"]


async def test_acting_on_a_resolved_incident_changes_nothing(service: IncidentService, store: MemoryStore) -> None:
    await service.ingest([alert("a1")])
    [incident_id] = store.incidents
    await service.resolve(incident_id, "alice")
    assert (await service.resolve(incident_id, "bob")).outcome == "already_resolved"
    assert (await service.acknowledge(incident_id, "bob")).outcome == "already_resolved"
    assert [m.kind for m in store.messages] == ["opened", "resolved", "post"]


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
    assert [m.kind for m in store.messages] == ["opened", "resolved", "post"]
