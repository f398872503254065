"""Diagnosis jobs: a worker that takes the queued diagnoses of incidents and stores what they found.

Opening a routed incident queues a :class:`~bot.core.incidents.Job` (``services/incidents``). A
:class:`DiagnosisWorker` claims one job at a time under a lease (:meth:`Store.claim_job`), runs
``diagnose_incident`` (composed by the app: the service's hosts over SSH, the confirmation probe,
the rules), saves the diagnosis on the incident, adds a ``diagnosis_done`` event naming the top cause
and, in the same transaction, queues a ``post`` message carrying the diagnosis (the cause card the
outbox delivers to chat), and marks the job done. A diagnosis that raises marks the job failed and
says so on the timeline (with the error's code only, never its text). A worker that dies mid-job leaves the job running
under its lease; once the lease runs out another worker (or this one after a restart) claims it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from bot.core.incidents import Incident, OutboxMessage, TimelineEvent
from bot.core.models import Diagnosis
from bot.core.store import ClaimedJob, Store

log = logging.getLogger(__name__)

DiagnoseIncident = Callable[[Incident], Awaitable[Diagnosis]]
Clock = Callable[[], datetime]


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
    ) -> None:
        if lease <= timedelta(0):
            raise ValueError("lease must be positive")
        self.store = store
        self.diagnose_incident = diagnose_incident
        self.clock = clock
        self.worker_id = worker_id
        self.lease = lease

    async def run_once(self) -> bool:
        """Claim one job and run it to the end; False when no job was due."""
        job = await self.store.claim_job(self.worker_id, self.lease, self.clock())
        if job is None:
            return False
        try:
            incident = await self.store.get_incident(job.incident_id)
            if incident is None:
                raise IncidentGone(job.incident_id)
            diagnosis = await self.diagnose_incident(incident)
        except asyncio.CancelledError:
            raise  # shutting down: the job stays leased and is taken again once the lease runs out
        except Exception as exc:
            log.exception("diagnosis job %s of incident %s failed (attempt %d)", job.id, job.incident_id, job.attempts)
            await self._failed(job, exc)
            return True
        await self._done(job, diagnosis)
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

    async def _done(self, job: ClaimedJob, diagnosis: Diagnosis) -> None:
        now = self.clock()
        body = diagnosis.to_json()
        await self.store.save_diagnosis(job.incident_id, body, now)
        top = diagnosis.top
        if top is not None:
            text = f"diagnosis done: {top.title} ({top.id}, {top.confidence:.0%})"
            data = {"job": job.id, "cause": top.id, "confidence": top.confidence}
        else:
            text = "diagnosis done: no cause found"
            data = {"job": job.id, "cause": None}
        post = OutboxMessage(
            id=uuid.uuid4().hex, incident_id=job.incident_id, kind="post", created_at=now, payload={"diagnosis": body}
        )
        await self._event(job, now, "diagnosis_done", text, data, message=post)
        if not await self.store.finish_job(job.id, True, self.clock(), worker=self.worker_id):
            log.warning("diagnosis job %s: the lease ran out before it finished; another worker holds it", job.id)

    async def _failed(self, job: ClaimedJob, exc: Exception) -> None:
        now = self.clock()
        code = _error_code(exc)
        text = f"diagnosis failed ({code}, attempt {job.attempts})"
        if not isinstance(exc, IncidentGone):  # no timeline to write on
            await self._event(
                job, now, "diagnosis_failed", text, {"job": job.id, "error": code, "attempt": job.attempts}
            )
        await self.store.finish_job(job.id, False, now, worker=self.worker_id)

    async def _event(
        self,
        job: ClaimedJob,
        at: datetime,
        kind: str,
        text: str,
        data: dict[str, object],
        *,
        message: OutboxMessage | None = None,
    ) -> None:
        event = TimelineEvent.model_validate(
            {"incident_id": job.incident_id, "at": at, "kind": kind, "text": text, "data": data}
        )
        async with self.store.transaction() as tx:
            await tx.add_event(event)
            if message is not None:
                await tx.enqueue_message(message)
