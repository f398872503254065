"""Escalation timers on real databases: three replicas (three engines, three pagers, three workers)
racing for the same due timers fire each escalation exactly once, and timers written before a restart
are fired by the process that comes after it. PostgreSQL (``FOR UPDATE SKIP LOCKED``) and SQLite (one
writer at a time) alike; time is an injected clock."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.adapters.db import SqlStore
from bot.core.oncall import Level, Rota
from bot.services.escalation import EscalationWorker
from bot.services.incidents import IncidentService
from bot.services.paging import PAGERDUTY, SLACK_DM, TELEGRAM_DM, Pager, PagingOptions
from tests.adapters.db.conftest import SQL, EngineFactory
from tests.services.test_paging import Clock, alert, refused, rota

pytestmark = pytest.mark.parametrize("backend", SQL, indirect=True)

SERVICES = ("shop", "blog", "api", "web")
OPTIONS = PagingOptions(pagerduty=True, direct=frozenset({SLACK_DM, TELEGRAM_DM}))


def team() -> Rota:
    levels = (Level(schedule="primary", after=timedelta(minutes=10)), Level(people=("carol",)))
    return rota(**dict.fromkeys(SERVICES, levels))


async def test_three_replicas_fire_each_escalation_exactly_once(engines: EngineFactory) -> None:
    clock = Clock()
    stores = [SqlStore(await engines()) for _ in range(3)]
    pagers = [Pager(store, team(), clock, options=OPTIONS) for store in stores]
    service = IncidentService(
        stores[0],
        route=lambda a: a.labels.get("service"),
        group=lambda a, s: f"{s}:5xx",
        clock=clock,
        hooks=pagers[0],
    )
    opened = []
    for name in SERVICES:
        report = await service.ingest([alert(f"fp-{name}", service=name)])
        incident = await stores[0].get_incident(report.results[0].incident_id or "")
        assert incident is not None
        await pagers[1].probed(incident, [refused()])  # another replica's diagnosis worker probed it
        opened.append(incident)
    assert len(await stores[2].pending_timers()) == len(SERVICES)

    clock.advance(minutes=10)
    pairs = enumerate(zip(stores, pagers, strict=True))
    workers = [EscalationWorker(store, pager, clock, f"replica-{n}") for n, (store, pager) in pairs]

    async def drain(worker: EscalationWorker) -> None:
        for _ in range(10):
            await worker.run_once()

    await asyncio.gather(*(drain(w) for w in workers))

    outcomes = [outcome for w in workers for _, outcome in w.outcomes]
    assert sorted(outcomes) == ["escalated"] * len(SERVICES)
    for incident in opened:
        timeline = await stores[2].timeline(incident.id)
        assert [e.kind for e in timeline].count("escalated") == 1
        assert [e.kind for e in timeline].count("paged") == 1
    messages = await stores[1].pending_messages()
    carol = [m for m in messages if m.target == TELEGRAM_DM and m.payload["dm"]["user"] == "1003"]
    assert sorted(m.incident_id for m in carol) == sorted(i.id for i in opened)
    assert len([m for m in messages if m.target == PAGERDUTY]) == len(SERVICES)  # one trigger each, at level 1
    assert await stores[0].pending_timers() == []


async def test_timers_written_before_a_restart_fire_after_it(engines: EngineFactory) -> None:
    clock = Clock()
    before = SqlStore(await engines())
    pager = Pager(before, team(), clock, options=OPTIONS)
    service = IncidentService(
        before, route=lambda a: a.labels.get("service"), group=lambda a, s: f"{s}:5xx", clock=clock, hooks=pager
    )
    report = await service.ingest([alert("fp-1")])
    incident = await before.get_incident(report.results[0].incident_id or "")
    assert incident is not None
    await pager.probed(incident, [refused()])
    await before.engine.dispose()  # the process goes away

    clock.advance(minutes=30)
    after = SqlStore(await engines())
    worker = EscalationWorker(after, Pager(after, team(), clock, options=OPTIONS), clock, "restarted")
    assert await worker.run_once()
    assert not await worker.run_once()
    assert [outcome for _, outcome in worker.outcomes] == ["escalated"]
    kinds = [e.kind for e in await after.timeline(incident.id)]
    assert kinds.count("paged") == 1 and kinds.count("escalated") == 1
