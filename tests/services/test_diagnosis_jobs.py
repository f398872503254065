"""The diagnosis worker on the in-memory store: a job is claimed, diagnosed, its diagnosis saved with a
``diagnosis_done`` event and the job finished; the thread hears the probe and each host as they come,
then the cause card; a re-run says only what changed; a failing diagnosis fails the job and says so; a
job whose worker died is taken again once its lease runs out; ``run_forever`` stops when asked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from bot.core.incidents import Incident, Job
from bot.core.models import Cause, Diagnosis, Finding, Severity
from bot.core.ports import Reporter
from bot.errors import HostUnreachable
from bot.services.diagnosis_jobs import DiagnosisWorker
from bot.testing import MemoryStore

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
LEASE = timedelta(seconds=90)
LINE = "connect() to unix:/run/gunicorn.sock failed (111: Connection refused) while connecting to upstream"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


DIAGNOSIS = Diagnosis(
    status=502,
    target="shop",
    findings=(Finding(kind="nginx.upstream_refused", severity=Severity.CRITICAL, summary="refused", evidence=(LINE,)),),
    causes=(
        Cause(id="upstream_down", confidence=0.9, title="The upstream is down", summary="s", evidence=(LINE,)),
        Cause(id="upstream_timeout", confidence=0.1, title="The upstream is slow", summary="s"),
    ),
)


async def queued(store: MemoryStore, *numbers: int) -> None:
    async with store.transaction() as tx:
        for n in numbers:
            await tx.save_incident(
                Incident(id=str(n), key=f"shop{n}:5xx", service="shop", routed=True, status=502, opened_at=T0)
            )
            await tx.enqueue_job(Job(id=f"j{n}", incident_id=str(n), created_at=T0 + timedelta(seconds=n)))


def worker(store: MemoryStore, diagnose: object, clock: Clock, name: str = "w1") -> DiagnosisWorker:
    return DiagnosisWorker(store, diagnose, clock, name, LEASE)  # type: ignore[arg-type]


async def test_a_job_is_diagnosed_saved_on_its_incident_and_finished() -> None:
    store, clock = MemoryStore(), Clock()
    await queued(store, 1)
    seen: list[str] = []

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        seen.append(incident.id)
        return DIAGNOSIS

    assert await worker(store, diagnose, clock).run_once() is True
    assert seen == ["1"]
    saved = await store.get_diagnosis("1")
    assert saved == DIAGNOSIS.to_json()
    assert saved is not None and saved["causes"][0]["evidence"] == [LINE]
    done = [e for e in await store.timeline("1") if e.kind == "diagnosis_done"]
    assert len(done) == 1 and "upstream_down" in done[0].text
    assert done[0].data["cause"] == "upstream_down"
    assert store.job_states["j1"].state == "done"
    assert await store.pending_jobs() == []
    assert await worker(store, diagnose, clock).run_once() is False  # nothing left


async def test_jobs_are_taken_oldest_first_one_per_call() -> None:
    store, clock = MemoryStore(), Clock()
    await queued(store, 2, 1)
    seen: list[str] = []

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        seen.append(incident.id)
        return Diagnosis(status=incident.status)

    w = worker(store, diagnose, clock)
    assert await w.run_once() and await w.run_once()
    assert not await w.run_once()
    assert seen == ["1", "2"]
    no_cause = [e.text for e in await store.timeline("2") if e.kind == "diagnosis_done"]
    assert no_cause == ["diagnosis done: no cause found"]


async def test_a_failing_diagnosis_fails_the_job_with_its_code_on_the_timeline_not_its_text() -> None:
    store, clock = MemoryStore(), Clock()
    await queued(store, 1)

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        raise HostUnreachable("web-1", "10.0.0.5:22 secret detail")

    assert await worker(store, diagnose, clock).run_once() is True
    assert store.job_states["j1"].state == "failed"
    assert await store.get_diagnosis("1") is None
    notes = [e for e in await store.timeline("1") if e.kind == "diagnosis_failed"]
    assert len(notes) == 1
    assert "host_unreachable" in notes[0].text and "secret" not in notes[0].text


async def test_a_job_whose_incident_is_gone_fails_without_an_event() -> None:
    store, clock = MemoryStore(), Clock()
    async with store.transaction() as tx:
        await tx.enqueue_job(Job(id="j9", incident_id="9", created_at=T0))

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        raise AssertionError("not called")

    assert await worker(store, diagnose, clock).run_once() is True
    assert store.job_states["j9"].state == "failed"
    assert store.events == []


async def test_a_job_of_a_crashed_worker_is_taken_again_after_its_lease() -> None:
    store, clock = MemoryStore(), Clock()
    await queued(store, 1)
    started = asyncio.Event()

    async def hangs(incident: Incident, reporter: Reporter) -> Diagnosis:
        started.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    crashed = asyncio.create_task(worker(store, hangs, clock, "w1").run_once())
    await started.wait()
    crashed.cancel()  # the process dies mid-job: the job stays leased to w1
    await asyncio.gather(crashed, return_exceptions=True)
    assert store.job_states["j1"].worker == "w1"  # still running, leased to the dead worker

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        return DIAGNOSIS

    second = worker(store, diagnose, clock, "w2")
    assert await second.run_once() is False  # still leased
    clock.now = T0 + LEASE
    assert await second.run_once() is True
    assert store.job_states["j1"].state == "done"
    assert store.job_states["j1"].attempts == 2
    assert await store.get_diagnosis("1") == DIAGNOSIS.to_json()


async def test_run_forever_works_through_the_queue_and_stops_when_asked() -> None:
    store, clock = MemoryStore(), Clock()
    await queued(store, 1, 2)
    stop = asyncio.Event()
    seen: list[str] = []

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        seen.append(incident.id)
        if len(seen) == 2:
            stop.set()
        return DIAGNOSIS

    await asyncio.wait_for(worker(store, diagnose, clock).run_forever(stop, idle=0.01), 5)
    assert seen == ["1", "2"]


async def test_run_forever_waits_when_idle_and_picks_up_a_new_job() -> None:
    store, clock = MemoryStore(), Clock()
    stop = asyncio.Event()
    seen: list[str] = []

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        seen.append(incident.id)
        stop.set()
        return DIAGNOSIS

    running = asyncio.create_task(worker(store, diagnose, clock).run_forever(stop, idle=0.01))
    await asyncio.sleep(0.05)
    assert not running.done()
    await queued(store, 3)
    await asyncio.wait_for(running, 5)
    assert seen == ["3"]


def finding(kind: str, host: str | None, severity: Severity = Severity.CRITICAL) -> Finding:
    return Finding(kind=kind, severity=severity, summary=kind, evidence=(LINE,), host=host)


async def test_the_thread_hears_the_probe_and_each_host_as_they_arrive_then_the_cause_card() -> None:
    store, clock = MemoryStore(), Clock()
    await queued(store, 1)

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        await reporter.probe([finding("probe.http_status", None)])
        await reporter.host("web-1", [finding("nginx.upstream_refused", "web-1")])
        assert [m.payload.get("host") for m in store.messages] == [None, "web-1"]  # posted before the end
        await reporter.host("app-1", [finding("service.inactive", "app-1", Severity.WARNING)])
        return DIAGNOSIS

    await worker(store, diagnose, clock).run_once()
    posts = [(m.kind, sorted(m.payload)) for m in store.messages]
    assert posts == [
        ("post", ["findings", "probe"]),
        ("post", ["findings", "host"]),
        ("post", ["findings", "host"]),
        ("post", ["diagnosis"]),
        ("updated", []),
    ]
    assert store.messages[1].payload["findings"][0]["kind"] == "nginx.upstream_refused"


async def test_a_rerun_posts_only_what_changed_and_no_second_cause_card_for_the_same_cause() -> None:
    store, clock = MemoryStore(), Clock()
    await queued(store, 1)
    first = [finding("nginx.upstream_refused", "web-1"), finding("disk.full", "app-1")]

    async def diagnose(incident: Incident, reporter: Reporter) -> Diagnosis:
        await reporter.host("web-1", first[:1])
        await reporter.host("app-1", first[1:])
        return DIAGNOSIS.model_copy(update={"findings": tuple(first)})

    await worker(store, diagnose, clock).run_once()
    before = len(store.messages)
    async with store.transaction() as tx:
        await tx.enqueue_job(Job(id="j1-again", incident_id="1", created_at=T0 + timedelta(minutes=5)))

    async def rerun(incident: Incident, reporter: Reporter) -> Diagnosis:
        await reporter.host("web-1", first[:1])  # the same: nothing said
        await reporter.host("app-1", [finding("memory.oom_kill", "app-1")])  # disk fine now, OOM new
        return DIAGNOSIS.model_copy(update={"findings": (first[0], finding("memory.oom_kill", "app-1"))})

    await worker(store, rerun, clock).run_once()
    said = store.messages[before:]
    assert [m.payload.get("host") for m in said if "findings" in m.payload] == ["app-1"]
    app = said[0].payload
    assert app["rerun"] is True and [f["kind"] for f in app["findings"]] == ["memory.oom_kill"]
    assert app["gone"] == ["disk.full"]
    assert said[1].payload == {"text": "Re-run done: still The upstream is down (upstream_down, 90%)"}
    assert [m.kind for m in said] == ["post", "post", "updated"]
