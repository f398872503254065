"""Diagnosis jobs: a worker that takes the queued diagnoses of incidents and stores what they found.

Opening a routed incident queues a :class:`~bot.core.incidents.Job` (``services/incidents``); so does
a person asking for a re-run. A :class:`DiagnosisWorker` claims one job at a time under a lease
(:meth:`Store.claim_job`) and runs ``diagnose_incident`` (composed by the app: the service's hosts over
SSH, the confirmation probe, the rules). While it runs, the thread hears about each part as it
arrives: the probe's result, then each host's findings as soon as that host's runbooks are done
(a :class:`Reporter` queues one ``post`` per part). A re-run (the incident already has a diagnosis)
posts only what changed: per host the findings new since the previous run and the kinds no longer
seen, nothing for a host where nothing changed, and the cause card only when the top cause changed.
At the end the worker saves the diagnosis on the incident, adds a ``diagnosis_done`` event naming the
top cause and, in the same transaction, queues the cause card and a card update, and marks the job
done. A diagnosis that raises marks the job failed and says so on the timeline (with the error's code
only, never its text). A worker that dies mid-job leaves the job running under its lease; once the
lease runs out another worker (or this one after a restart) claims it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.core.cards import read_diagnosis
from bot.core.incidents import Incident, OutboxMessage, TimelineEvent
from bot.core.models import Diagnosis, Finding
from bot.core.ports import Reporter
from bot.core.store import ClaimedJob, Store
from bot.services.announce import Announcer

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


DiagnoseIncident = Callable[[Incident, Reporter], Awaitable[Diagnosis]]


def _signature(findings: list[Finding]) -> set[tuple[str, str]]:
    return {(f.kind, f.severity.value) for f in findings}


class ThreadReporter:
    """Queues a thread post for the probe and for each host; on a re-run only what changed since
    ``previous`` (the incident's diagnosis before this run)."""

    def __init__(self, store: Store, announce: Announcer, incident: Incident, clock: Clock, previous: Diagnosis | None):
        self.store = store
        self.announce = announce
        self.incident = incident
        self.clock = clock
        self.previous = previous

    def _before(self, host: str | None, probe: bool) -> list[Finding]:
        if self.previous is None:
            return []
        if probe:
            return [f for f in self.previous.findings if f.kind.startswith("probe.")]
        return [f for f in self.previous.findings if f.host == host and not f.kind.startswith("probe.")]

    async def probe(self, findings: list[Finding]) -> None:
        if not findings:
            return
        if self.previous is not None and _signature(findings) == _signature(self._before(None, probe=True)):
            return
        await self._post({"probe": True, "findings": [f.model_dump(mode="json") for f in findings]})

    async def host(self, host: str, findings: list[Finding]) -> None:
        payload: dict[str, Any] = {"host": host}
        if self.previous is None:
            payload["findings"] = [f.model_dump(mode="json") for f in findings]
        else:
            before = _signature(self._before(host, probe=False))
            after = _signature(findings)
            if before == after:
                return
            new = [f for f in findings if (f.kind, f.severity.value) not in before]
            payload["findings"] = [f.model_dump(mode="json") for f in new]
            payload["gone"] = sorted({kind for kind, _ in before - after} - {kind for kind, _ in after})
            payload["rerun"] = True
        await self._post(payload)

    async def _post(self, payload: dict[str, Any]) -> None:
        async with self.store.transaction() as tx:
            await self.announce.say(tx, self.incident, "post", self.clock(), payload)


class DiagnosisHooks(Protocol):
    """What else hears about a diagnosis (paging: ``bot.services.paging.Pager``): ``reporter`` wraps
    the thread's reporter (to hear the probe), ``diagnosed`` is told the result (None: it failed)."""

    def reporter(self, incident: Incident, inner: Reporter) -> Reporter: ...

    async def diagnosed(self, incident_id: str, diagnosis: Diagnosis | None) -> None: ...


class IncidentGone(LookupError):
    """The job's incident is not in the store."""


def _error_code(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else type(exc).__name__


class DiagnosisWorker:
    def __init__(
        self,
        store: Store,
        diagnose_incident: DiagnoseIncident,
        clock: Clock,
        worker_id: str,
        lease: timedelta,
        *,
        announce: Announcer | None = None,
        hooks: DiagnosisHooks | None = None,
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        self.store = store
        self.announce = announce or Announcer()
        self.hooks = hooks
        self.diagnose_incident = diagnose_incident
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease

    async def run_once(self) -> bool:
        """Claim one job and run it to the end; False when no job was due."""
        job = await self.store.claim_job(self.worker_id, self.lease, self.clock())
        if job is None:
            return False
        previous: Diagnosis | None = None
        try:
            incident = await self.store.get_incident(job.incident_id)
            if incident is None:
                raise IncidentGone(job.incident_id)
            previous = read_diagnosis(await self.store.get_diagnosis(incident.id))
            reporter: Reporter = ThreadReporter(self.store, self.announce, incident, self.clock, previous)
            if self.hooks is not None:
                reporter = self.hooks.reporter(incident, reporter)
            diagnosis = await self.diagnose_incident(incident, reporter)
        except asyncio.CancelledError:
            raise  # shutting down: the job stays leased and is taken again once the lease runs out
        except Exception as exc:
            log.exception("diagnosis job %s of incident %s failed (attempt %d)", job.id, job.incident_id, job.attempts)
            await self._failed(job, exc)
            return True
        await self._done(job, incident, diagnosis, previous)
        return True

    async def run_forever(self, stop: asyncio.Event, idle: float = 1.0) -> None:
        """Run jobs until ``stop`` is set, waiting ``idle`` seconds whenever none is due."""
        while not stop.is_set():
            try:
                worked = await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store itself failed: wait and try again
                log.exception("diagnosis worker %s: the store failed", self.worker_id)
                worked = False
            if not worked:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), idle)

    async def _done(
        self, job: ClaimedJob, incident: Incident, diagnosis: Diagnosis, previous: Diagnosis | None
    ) -> None:
        now = self.clock()
        body = diagnosis.to_json()
        top = diagnosis.top
        if top is not None:
            text = f"diagnosis done: {top.title} ({top.id}, {top.confidence:.0%})"
            data: dict[str, object] = {"job": job.id, "cause": top.id, "confidence": top.confidence}
        else:
            text = "diagnosis done: no cause found"
            data = {"job": job.id, "cause": None}
        said: dict[str, Any] = {"diagnosis": body}
        before = previous.top.id if previous is not None and previous.top is not None else None
        if previous is not None and before == (top.id if top is not None else None):
            said = {
                "text": "Re-run done: "
                + (f"still {top.title} ({top.id}, {top.confidence:.0%})" if top else "still no cause found")
            }
        messages = [
            *self.announce.messages(incident, "post", now, said),
            *self.announce.messages(incident, "updated", now),  # the card shows the (new) top cause
        ]
        done = await self._finish(
            job, True, at=now, kind="diagnosis_done", text=text, data=data, messages=messages, body=body
        )
        if not done:
            return
        if self.hooks is not None:
            await self.hooks.diagnosed(job.incident_id, diagnosis)

    async def _failed(self, job: ClaimedJob, exc: Exception) -> None:
        now = self.clock()
        code = _error_code(exc)
        text = f"diagnosis failed ({code}, attempt {job.attempts})"
        data: dict[str, object] = {"job": job.id, "error": code, "attempt": job.attempts}
        gone = isinstance(exc, IncidentGone)  # no timeline to write on
        kind = None if gone else "diagnosis_failed"
        finished = await self._finish(job, False, at=now, kind=kind, text=text, data=data)
        if finished and not gone and self.hooks is not None:
            await self.hooks.diagnosed(job.incident_id, None)

    async def _finish(
        self,
        job: ClaimedJob,
        ok: bool,
        *,
        at: datetime,
        kind: str | None,
        text: str,
        data: dict[str, object],
        messages: list[OutboxMessage] | None = None,
        body: dict[str, Any] | None = None,
    ) -> bool:
        """End the job with its result, in one transaction: the diagnosis (``body``), the timeline event
        (unless ``kind`` is None) and the thread's messages commit with the job's end, or none of them
        does. False (nothing written) when the lease ran out and another worker now holds the job: its
        run is the one that counts."""
        async with self.store.transaction() as tx:
            if not await tx.finish_job(job.id, ok, at, worker=self.worker_id):
                log.warning("diagnosis job %s: the lease ran out before it finished; another worker holds it", job.id)
                return False
            if body is not None:
                await tx.save_diagnosis(job.incident_id, body, at)
            if kind is not None:
                event = TimelineEvent.model_validate(
                    {"incident_id": job.incident_id, "at": at, "kind": kind, "text": text, "data": data}
                )
                await tx.add_event(event)
            for message in messages or []:
                await tx.enqueue_message(message)
        return True
