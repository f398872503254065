"""The store port: what the incident service needs from persistence.

All changes happen inside :meth:`Store.transaction`; an implementation makes each transaction atomic
and serialises transactions that lock the same group key (:meth:`Transaction.lock_group`), so two
deliveries of the same alert (retries, HA peers, several replicas) can never open two incidents. The
SQL adapter does it with a row lock per group; :class:`bot.testing.MemoryStore` with one asyncio lock.

Work queues live beside it. Diagnosis jobs are claimed under a lease: the oldest queued job, or a running
one whose lease ran out (its worker crashed), so a job is picked up again after a restart and two
workers never hold the same job at once. Outbox messages are claimed in insertion order per incident:
a message waits while an earlier message of its incident is not yet due (leased to a sender or set to
retry later), so replies about one incident are never delivered out of order to one chat target
(targets do not wait for each other).
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from bot.core.approvals import Approval, ApprovalState
from bot.core.incidents import (
    ChatThread,
    EscalationTimer,
    Incident,
    Job,
    OutboxMessage,
    Paging,
    StoredAlert,
    TimelineEvent,
)
from bot.core.oncall import Override
from bot.core.ports import AuditEntry

#: How long a sender may hold claimed outbox messages before they are offered again.
MESSAGE_LEASE = timedelta(minutes=1)


class ClaimedJob(Job):
    """A job as a worker holds it: which attempt this is and until when the lease runs."""

    attempts: int
    worker: str
    lease_until: datetime


class ClaimedMessage(OutboxMessage):
    """An outbox message as a sender holds it: which delivery attempt this is."""

    attempts: int


class ClaimedTimer(EscalationTimer):
    """An escalation timer as a worker holds it: which attempt this is and until when the lease runs."""

    attempts: int
    worker: str
    lease_until: datetime


class Transaction(Protocol):
    async def lock_group(self, key: str) -> None:
        """Serialise every transaction that works on this incident group until this one ends."""
        ...

    async def get_alert(self, fingerprint: str) -> StoredAlert | None: ...

    async def save_alert(self, alert: StoredAlert) -> None: ...

    async def firing_alerts(self, incident_id: str) -> Sequence[StoredAlert]: ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def open_incident(self, key: str) -> Incident | None:
        """The group's incident that is not resolved, if any."""
        ...

    async def last_resolved(self, key: str, since: datetime) -> Incident | None:
        """The group's most recent incident resolved at or after ``since`` (flapping window)."""
        ...

    async def next_incident_number(self) -> int: ...

    async def save_incident(self, incident: Incident) -> None: ...

    async def add_event(self, event: TimelineEvent) -> None: ...

    async def enqueue_job(self, job: Job) -> None: ...

    async def enqueue_message(self, message: OutboxMessage) -> None: ...

    async def save_diagnosis(self, incident_id: str, diagnosis_json: dict[str, Any], at: datetime) -> None:
        """:meth:`Store.save_diagnosis` inside this transaction."""
        ...

    async def finish_job(self, job_id: str, ok: bool, now: datetime, *, worker: str | None = None) -> bool:
        """:meth:`Store.finish_job` inside this transaction: the job's result and its end commit together,
        so a crash can neither keep the result of an unfinished job nor finish a job without its result."""
        ...

    # -- paging (issue #7): call these after lock_group of the incident's key --------------------------

    async def get_paging(self, incident_id: str) -> Paging | None: ...

    async def save_paging(self, paging: Paging) -> None:
        """Record (or replace) where paging the incident stands."""
        ...

    async def storm_leader(self, service: str, since: datetime) -> Paging | None:
        """The service's latest paging that paged someone at or after ``since`` and is still ``paged`` or
        ``acknowledged`` (not folded into another)."""
        ...

    async def storm_followers(self, incident_id: str) -> Sequence[Paging]:
        """The pagings folded into ``incident_id``'s page, in the order they were folded."""
        ...

    async def schedule_timer(self, timer: EscalationTimer) -> None:
        """Add a pending escalation timer (a timer with an id already stored is left as it is)."""
        ...

    async def cancel_timers(self, incident_id: str, now: datetime) -> int:
        """Cancel the incident's pending and claimed timers; how many were."""
        ...

    async def fire_timer(self, timer_id: str, worker: str, now: datetime) -> bool:
        """Mark a timer ``worker`` holds as fired; False (nothing changes) when it is not claimed by
        ``worker`` any more (cancelled, or its lease ran out and another worker took it)."""
        ...

    # -- approvals of mutating runbooks (issue #9) -----------------------------------------------------

    async def add_approval(self, approval: Approval) -> None:
        """Record a new request (its id is new)."""
        ...


class Store(Protocol):
    def transaction(self) -> AbstractAsyncContextManager[Transaction]: ...

    async def get_incident(self, incident_id: str) -> Incident | None: ...

    async def list_incidents(self, *, limit: int = 50) -> Sequence[Incident]: ...

    async def timeline(self, incident_id: str) -> Sequence[TimelineEvent]: ...

    async def pending_messages(self) -> Sequence[OutboxMessage]:
        """Messages not delivered yet, in the order they were queued."""
        ...

    async def pending_jobs(self) -> Sequence[Job]:
        """Jobs not finished yet (queued or running), in the order they were queued."""
        ...

    async def claim_job(self, worker: str, lease: timedelta, now: datetime) -> ClaimedJob | None:
        """Take the oldest queued job, or a running one whose lease expired, for ``worker`` until ``now + lease``."""
        ...

    async def finish_job(self, job_id: str, ok: bool, now: datetime, *, worker: str | None = None) -> bool:
        """Mark a running job done (``ok``) or failed. False, and nothing changes, when the job is not
        running or (``worker`` given) its lease now belongs to another worker."""
        ...

    async def claim_messages(
        self, limit: int, now: datetime, *, lease: timedelta = MESSAGE_LEASE
    ) -> Sequence[ClaimedMessage]:
        """Up to ``limit`` undelivered messages that are due, in insertion order, each leased until
        ``now + lease``; a message is held back while an earlier one of its incident to the same target
        is not due."""
        ...

    async def mark_delivered(self, message_id: str, now: datetime) -> None: ...

    async def retry_message(self, message_id: str, at: datetime) -> None:
        """Offer an undelivered message again at ``at`` (and hold back its incident's later messages)."""
        ...

    async def save_diagnosis(self, incident_id: str, diagnosis_json: dict[str, Any], at: datetime) -> None:
        """Keep a diagnosis of the incident (its JSON shape); earlier ones are kept too."""
        ...

    async def get_diagnosis(self, incident_id: str) -> dict[str, Any] | None:
        """The incident's latest diagnosis (by ``at``, then by order saved), or None."""
        ...

    async def get_thread(self, incident_id: str, target: str) -> ChatThread | None:
        """Where the incident's thread is on ``target``, once its sender has started it."""
        ...

    async def save_thread(self, thread: ChatThread) -> None:
        """Record (or replace) where the incident's thread is on ``thread.target``."""
        ...

    async def find_thread(self, target: str, channel: str, root: str) -> ChatThread | None:
        """The thread whose root message is ``root`` in ``channel`` of ``target`` (a click on a card)."""
        ...

    # -- escalation timers and on-call overrides (issue #7) -------------------------------------------

    async def claim_timer(self, worker: str, lease: timedelta, now: datetime) -> ClaimedTimer | None:
        """Take the earliest due pending timer, or a claimed one whose lease expired, for ``worker`` until
        ``now + lease``."""
        ...

    async def pending_timers(self, incident_id: str | None = None) -> Sequence[EscalationTimer]:
        """Timers not fired nor cancelled (of one incident, or all), earliest due first."""
        ...

    async def get_paging(self, incident_id: str) -> Paging | None: ...

    async def add_override(self, override: Override) -> None: ...

    async def overrides(self, now: datetime) -> Sequence[Override]:
        """On-call overrides that have not ended by ``now``, oldest created first."""
        ...

    async def record_audit(self, entry: AuditEntry) -> None: ...

    # -- approvals of mutating runbooks (issue #9) -----------------------------------------------------

    async def get_approval(self, approval_id: str) -> Approval | None: ...

    async def transition_approval(
        self,
        approval_id: str,
        expect: Sequence[ApprovalState],
        to: ApprovalState,
        at: datetime,
        *,
        decided_by: str | None = None,
        decider: str | None = None,
        outcome: str | None = None,
        unexpired: bool = False,
    ) -> Approval | None:
        """Move a request from one of the ``expect`` states to ``to`` (setting ``decided_*`` when given,
        ``outcome`` when given); with ``unexpired``, only while ``at`` is before its ``expires_at``. The
        request as it now is, or None when it was not in such a state (someone else moved it first)."""
        ...

    async def due_approvals(self, now: datetime, *, limit: int = 100) -> Sequence[Approval]:
        """Pending requests whose time ran out by ``now``, oldest first."""
        ...

    async def stuck_approvals(self, started_before: datetime) -> Sequence[Approval]:
        """Requests still ``running`` that were approved before ``started_before`` (their run was cut
        short: the bot stopped while it ran), oldest first."""
        ...

    async def approvals(self, incident_id: str) -> Sequence[Approval]:
        """The incident's requests, oldest first."""
        ...

    async def audit_log(self, *, limit: int = 100) -> Sequence[AuditEntry]:
        """The most recent audit entries, newest first."""
        ...
