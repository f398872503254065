"""Helpers we ship for testing our own code and plugins, with no SSH, files or event loop.

``read`` runs the scanner over text with the registered readers (or only the ones given) and returns
the findings; ``explain`` runs the whole explain pipeline on text; ``drive`` runs a runbook on captured
command outputs. ``RecordingNotifier`` is a chat sender that records what the outbox delivers.
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel

from bot.core.approvals import Approval, ApprovalState
from bot.core.audit_chain import GENESIS, ChainedEntry, entry_hash
from bot.core.blocks import Block, plain_text
from bot.core.commands import Command, CommandResult, Target
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
from bot.core.models import Diagnosis, Finding
from bot.core.oncall import Override
from bot.core.ports import AuditEntry
from bot.core.store import MESSAGE_LEASE, ClaimedJob, ClaimedMessage, ClaimedTimer
from bot.diagnosis.engine import diagnose
from bot.errors import ChatError, RateLimited, RemoteError, TransientChatError
from bot.evidence.reader import Reader
from bot.evidence.registry import load
from bot.evidence.scanner import Scanner
from bot.runbook.base import Reply, Runbook, Step


def read(text: str, readers: Sequence[type[Reader]] | None = None) -> list[Finding]:
    """Findings from ``text`` as explain would see them (every registered reader unless given)."""
    classes = list(readers) if readers is not None else load().readers
    scanner = Scanner([cls() for cls in classes])
    scanner.scan_text(text)
    return scanner.findings()


def kinds(text: str, readers: Sequence[type[Reader]] | None = None) -> set[str]:
    """The finding kinds recognised in ``text``."""
    return {finding.kind for finding in read(text, readers)}


def explain(text: str, status: int | None = None) -> Diagnosis:
    """The full explain pipeline over ``text``: every reader, every rule."""
    registry = load()
    scanner = Scanner(registry.instances())
    scanner.scan_text(text)
    return diagnose(scanner.findings(), status, registry.signals())


#: A canned reply: plain stdout (exit 0), or a full CommandResult.
Canned = str | CommandResult


class UnexpectedCommand(AssertionError):
    """A runbook asked for a command the test gave no reply for."""


def drive(
    runbook: type[Runbook],
    params: BaseModel | Mapping[str, object] | None = None,
    replies: Mapping[str | tuple[str, ...], Canned] | None = None,
    *,
    facts: Mapping[str, str] | None = None,
    host: str = "test-host",
) -> list[Finding]:
    """Run ``runbook`` on canned outputs and return its findings.

    ``replies`` maps a command (its argv tuple, or its display text) to what it printed. A command with
    no reply fails the test with the command named. Params given as a mapping are validated by the
    runbook's own ``Params`` model, as the runner does.
    """
    if params is None or isinstance(params, BaseModel):
        model = params
    else:
        model = runbook.Params.model_validate(dict(params))
    instance = runbook(model, facts)
    canned = dict(replies or {})
    asked: list[Command] = []

    def answer(command: Command) -> CommandResult:
        asked.append(command)
        reply = canned.get(command.argv, canned.get(command.display))
        if reply is None:
            raise UnexpectedCommand(f"{runbook.name} ran {command.argv!r}, which the test did not expect")
        if isinstance(reply, CommandResult):
            return reply.model_copy(update={"command": command, "host": host})
        return CommandResult(command=command, host=host, exit_status=0, stdout=reply)

    steps = instance.steps()
    try:
        step: Step = next(steps)
        while True:
            reply: Reply = tuple(answer(c) for c in step) if isinstance(step, tuple) else answer(step)
            step = steps.send(reply)
    except StopIteration as done:
        findings: list[Finding] = done.value or []
    return findings


class FakeSession:
    """A HostSession answering from canned replies; unknown commands exit 127 like a missing program."""

    def __init__(self, host: str, replies: Mapping[str | tuple[str, ...], Canned], delay: float) -> None:
        self._host = host
        self._replies = replies
        self._delay = delay
        self.ran: list[Command] = []

    @property
    def host(self) -> str:
        return self._host

    async def run(self, command: Command) -> CommandResult:
        self.ran.append(command)
        if self._delay:
            await asyncio.sleep(self._delay)
        reply = self._replies.get(command.argv, self._replies.get(command.display))
        if reply is None:
            return CommandResult(
                command=command, host=self._host, exit_status=127, stderr=f"{command.argv[0]}: command not found"
            )
        if isinstance(reply, CommandResult):
            return reply.model_copy(update={"command": command, "host": self._host})
        return CommandResult(command=command, host=self._host, exit_status=0, stdout=reply)


class FakeExecutor:
    """An Executor for tests: per-host canned replies, per-host connection errors and delays."""

    def __init__(
        self,
        replies: Mapping[str, Mapping[str | tuple[str, ...], Canned]] | None = None,
        *,
        fail: Mapping[str, RemoteError] | None = None,
        delay: Mapping[str, float] | None = None,
    ) -> None:
        self.replies = dict(replies or {})
        self.fail = dict(fail or {})
        self.delay = dict(delay or {})
        self.sessions: dict[str, FakeSession] = {}
        self.open = 0

    @asynccontextmanager
    async def session(self, target: Target) -> AsyncIterator[FakeSession]:
        if target.name in self.fail:
            raise self.fail[target.name]
        session = FakeSession(target.name, self.replies.get(target.name, {}), self.delay.get(target.name, 0.0))
        self.sessions[target.name] = session
        self.open += 1
        try:
            yield session
        finally:
            self.open -= 1


@dataclass
class _JobState:
    state: Literal["queued", "running", "done", "failed"] = "queued"
    attempts: int = 0
    worker: str | None = None
    lease_until: datetime | None = None
    finished_at: datetime | None = None


@dataclass
class _MessageState:
    next_attempt_at: datetime
    attempts: int = 0
    delivered_at: datetime | None = None


@dataclass
class _TimerState:
    state: Literal["pending", "claimed", "fired", "cancelled"] = "pending"
    attempts: int = 0
    worker: str | None = None
    lease_until: datetime | None = None
    finished_at: datetime | None = None


class MemoryStore:
    """A Store kept in memory: one lock serialises transactions; a failed transaction changes nothing.

    ``jobs`` and ``messages`` keep everything ever queued, in order; ``job_states`` and
    ``message_states`` (by id) say where each one is. The SQL store (``bot.adapters.db``) behaves the same.
    """

    def __init__(self) -> None:
        self.incidents: dict[str, Incident] = {}
        self.alerts: dict[str, StoredAlert] = {}
        self.events: list[TimelineEvent] = []
        self.jobs: list[Job] = []
        self.messages: list[OutboxMessage] = []
        self.job_states: dict[str, _JobState] = {}
        self.message_states: dict[str, _MessageState] = {}
        #: The audit log as stored: each entry with its hash-chain link (bot/core/audit_chain.py).
        self.audit_records: list[ChainedEntry] = []
        self._audit_lock = threading.Lock()
        #: (incident id, at, body) of every diagnosis saved, in the order saved.
        self.diagnoses: list[tuple[str, datetime, dict[str, Any]]] = []
        #: (incident id, target) → where that incident's thread is on that target.
        self.threads: dict[tuple[str, str], ChatThread] = {}
        #: Paging (issue #7): each incident's paging, every timer ever scheduled (in order) and its state,
        #: and the on-call overrides in the order added.
        self.pagings: dict[str, Paging] = {}
        self.timers: list[EscalationTimer] = []
        self.timer_states: dict[str, _TimerState] = {}
        self.oncall_overrides: list[Override] = []
        #: Requests to run a mutating runbook, by id, in the order made (issue #9).
        self.approval_records: dict[str, Approval] = {}
        self.counter = 0
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[_MemoryTransaction]:
        async with self._lock:
            tx = _MemoryTransaction(self)
            yield tx
            tx.commit()

    async def get_incident(self, incident_id: str) -> Incident | None:
        return self.incidents.get(incident_id)

    async def list_incidents(self, *, limit: int = 50) -> list[Incident]:
        return sorted(self.incidents.values(), key=lambda i: i.opened_at, reverse=True)[:limit]

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        return [e for e in self.events if e.incident_id == incident_id]

    async def pending_messages(self) -> list[OutboxMessage]:
        return [m for m in self.messages if self.message_states[m.id].delivered_at is None]

    async def pending_jobs(self) -> list[Job]:
        return [j for j in self.jobs if self.job_states[j.id].state in ("queued", "running")]

    async def claim_job(self, worker: str, lease: timedelta, now: datetime) -> ClaimedJob | None:
        async with self._lock:
            free = [
                (job.created_at, n, job)
                for n, job in enumerate(self.jobs)
                if (st := self.job_states[job.id]).state == "queued"
                or (st.state == "running" and st.lease_until is not None and st.lease_until <= now)
            ]
            if not free:
                return None
            job = min(free, key=lambda c: (c[0], c[1]))[2]
            st = self.job_states[job.id]
            st.state, st.attempts, st.worker, st.lease_until = "running", st.attempts + 1, worker, now + lease
            return ClaimedJob(**job.model_dump(), attempts=st.attempts, worker=worker, lease_until=now + lease)

    async def finish_job(self, job_id: str, ok: bool, now: datetime, *, worker: str | None = None) -> bool:
        async with self._lock:
            st = self.job_states.get(job_id)
            if st is None or st.state != "running" or (worker is not None and st.worker != worker):
                return False
            st.state, st.finished_at, st.lease_until = ("done" if ok else "failed"), now, None
            return True

    async def claim_messages(
        self, limit: int, now: datetime, *, lease: timedelta = MESSAGE_LEASE
    ) -> list[ClaimedMessage]:
        async with self._lock:
            held: set[tuple[str, str]] = set()
            claimed: list[ClaimedMessage] = []
            for message in self.messages:
                st = self.message_states[message.id]
                queue = (message.incident_id, message.target)
                if st.delivered_at is not None or queue in held:
                    continue
                if st.next_attempt_at > now:
                    held.add(queue)  # later messages of this incident to this target wait for it
                    continue
                if len(claimed) >= limit:
                    break
                st.attempts, st.next_attempt_at = st.attempts + 1, now + lease
                claimed.append(ClaimedMessage(**message.model_dump(), attempts=st.attempts))
            return claimed

    async def mark_delivered(self, message_id: str, now: datetime) -> None:
        async with self._lock:
            st = self.message_states.get(message_id)
            if st is not None and st.delivered_at is None:
                st.delivered_at = now

    async def retry_message(self, message_id: str, at: datetime) -> None:
        async with self._lock:
            st = self.message_states.get(message_id)
            if st is not None and st.delivered_at is None:
                st.next_attempt_at = at

    async def save_diagnosis(self, incident_id: str, diagnosis_json: dict[str, Any], at: datetime) -> None:
        async with self._lock:
            if incident_id not in self.incidents:  # the SQL store's foreign key refuses it too
                raise KeyError(f"no incident {incident_id!r}")
            self.diagnoses.append((incident_id, at, copy.deepcopy(diagnosis_json)))

    async def get_diagnosis(self, incident_id: str) -> dict[str, Any] | None:
        found = [(at, n, body) for n, (iid, at, body) in enumerate(self.diagnoses) if iid == incident_id]
        return copy.deepcopy(max(found, key=lambda f: (f[0], f[1]))[2]) if found else None

    async def get_thread(self, incident_id: str, target: str) -> ChatThread | None:
        return self.threads.get((incident_id, target))

    async def save_thread(self, thread: ChatThread) -> None:
        async with self._lock:
            if thread.incident_id not in self.incidents:  # the SQL store's foreign key refuses it too
                raise KeyError(f"no incident {thread.incident_id!r}")
            self.threads[(thread.incident_id, thread.target)] = thread

    async def find_thread(self, target: str, channel: str, root: str) -> ChatThread | None:
        return next(
            (t for t in self.threads.values() if (t.target, t.channel, t.root) == (target, channel, root)),
            None,
        )

    @property
    def audit(self) -> list[AuditEntry]:
        """The audit entries in the order recorded (their chain links are in :attr:`audit_records`)."""
        return [r.entry for r in self.audit_records if r.entry is not None]

    async def record_audit(self, entry: AuditEntry) -> None:
        """Append ``entry`` to the hash chain; the audit lock (not the transaction lock) keeps it linear."""
        with self._audit_lock:
            prev = next((r.hash for r in reversed(self.audit_records) if r.hash is not None), GENESIS)
            ref = str(len(self.audit_records) + 1)
            self.audit_records.append(ChainedEntry(ref=ref, entry=entry, prev=prev, hash=entry_hash(entry, prev)))

    async def audit_log(self, *, limit: int = 100) -> list[AuditEntry]:
        return list(reversed(self.audit))[:limit]

    async def audit_chain(self) -> AsyncIterator[ChainedEntry]:
        """The chained entries in the order recorded (``ref`` 1, 2, …, unless a test rewrote them)."""
        for record in list(self.audit_records):
            yield record

    # -- escalation timers and on-call overrides (issue #7) ----------------------------------------

    async def claim_timer(self, worker: str, lease: timedelta, now: datetime) -> ClaimedTimer | None:
        async with self._lock:
            free = [
                (timer.due_at, n, timer)
                for n, timer in enumerate(self.timers)
                if ((st := self.timer_states[timer.id]).state == "pending" and timer.due_at <= now)
                or (st.state == "claimed" and st.lease_until is not None and st.lease_until <= now)
            ]
            if not free:
                return None
            timer = min(free, key=lambda c: (c[0], c[1]))[2]
            st = self.timer_states[timer.id]
            st.state, st.attempts, st.worker, st.lease_until = "claimed", st.attempts + 1, worker, now + lease
            return ClaimedTimer(**timer.model_dump(), attempts=st.attempts, worker=worker, lease_until=now + lease)

    async def pending_timers(self, incident_id: str | None = None) -> list[EscalationTimer]:
        found = [
            (t.due_at, n, t)
            for n, t in enumerate(self.timers)
            if self.timer_states[t.id].state in ("pending", "claimed") and incident_id in (None, t.incident_id)
        ]
        return [t for _, _, t in sorted(found, key=lambda c: (c[0], c[1]))]

    async def get_paging(self, incident_id: str) -> Paging | None:
        return self.pagings.get(incident_id)

    async def add_override(self, override: Override) -> None:
        async with self._lock:
            self.oncall_overrides.append(override)

    async def overrides(self, now: datetime) -> list[Override]:
        return sorted((o for o in self.oncall_overrides if o.ends_at > now), key=lambda o: o.created_at)

    # -- approvals of mutating runbooks (issue #9) -------------------------------------------------

    async def get_approval(self, approval_id: str) -> Approval | None:
        return self.approval_records.get(approval_id)

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
        async with self._lock:
            found = self.approval_records.get(approval_id)
            if found is None or found.state not in expect or (unexpired and at >= found.expires_at):
                return None
            changes: dict[str, Any] = {"state": to}
            if decided_by is not None or decider is not None:
                changes.update(decided_by=decided_by, decider=decider, decided_at=at)
            if outcome is not None:
                changes["outcome"] = outcome
            self.approval_records[approval_id] = found = found.model_copy(update=changes)
            return found

    async def due_approvals(self, now: datetime, *, limit: int = 100) -> list[Approval]:
        due = [a for a in self.approval_records.values() if a.state is ApprovalState.PENDING and a.expires_at <= now]
        return sorted(due, key=lambda a: (a.expires_at, a.id))[:limit]

    async def stuck_approvals(self, started_before: datetime) -> list[Approval]:
        stuck = [
            a
            for a in self.approval_records.values()
            if a.state is ApprovalState.RUNNING and a.decided_at is not None and a.decided_at < started_before
        ]
        return sorted(stuck, key=lambda a: (a.decided_at or started_before, a.id))

    async def approvals(self, incident_id: str) -> list[Approval]:
        return sorted(
            (a for a in self.approval_records.values() if a.incident_id == incident_id), key=lambda a: a.created_at
        )


class _MemoryTransaction:
    """Writes are buffered and applied at commit, so an exception inside the transaction loses them."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.incidents: dict[str, Incident] = {}
        self.alerts: dict[str, StoredAlert] = {}
        self.events: list[TimelineEvent] = []
        self.jobs: list[Job] = []
        self.messages: list[OutboxMessage] = []
        self.counter = store.counter
        self.pagings: dict[str, Paging] = {}
        self.timers: list[EscalationTimer] = []
        self.cancelled: dict[str, datetime] = {}  # incident id → when its stored timers were cancelled
        self.fired: dict[str, datetime] = {}  # timer id → when this transaction fired it
        self.approvals: list[Approval] = []
        self.diagnoses: list[tuple[str, datetime, dict[str, Any]]] = []
        self.finished: dict[str, tuple[bool, datetime]] = {}  # job id → (ok, when) ended in this transaction

    def commit(self) -> None:
        self.store.incidents.update(self.incidents)
        self.store.alerts.update(self.alerts)
        self.store.events.extend(self.events)
        self.store.jobs.extend(self.jobs)
        self.store.messages.extend(self.messages)
        for job in self.jobs:
            self.store.job_states[job.id] = _JobState()
        for message in self.messages:
            self.store.message_states[message.id] = _MessageState(next_attempt_at=message.created_at)
        self.store.counter = self.counter
        self.store.pagings.update(self.pagings)
        for timer_id, at in self.fired.items():
            st = self.store.timer_states[timer_id]
            st.state, st.finished_at, st.lease_until = "fired", at, None
        for timer in self.store.timers:
            st = self.store.timer_states[timer.id]
            if timer.incident_id in self.cancelled and st.state in ("pending", "claimed"):
                st.state, st.finished_at, st.lease_until = "cancelled", self.cancelled[timer.incident_id], None
        for timer in self.timers:
            if timer.id not in self.store.timer_states:
                self.store.timers.append(timer)
                self.store.timer_states[timer.id] = _TimerState()
        for job_id, (ok, at) in self.finished.items():
            ended = self.store.job_states[job_id]
            ended.state, ended.finished_at, ended.lease_until = ("done" if ok else "failed"), at, None
        for incident_id, _, _ in self.diagnoses:
            if incident_id not in self.store.incidents:  # the SQL store's foreign key refuses it too
                raise KeyError(f"no incident {incident_id!r}")
        self.store.diagnoses.extend(self.diagnoses)
        for approval in self.approvals:
            if approval.id in self.store.approval_records:
                raise ValueError(f"approval {approval.id} exists already")  # the SQL store's primary key
            self.store.approval_records[approval.id] = approval

    async def lock_group(self, key: str) -> None:
        return None  # the store's single lock already serialises every transaction

    async def add_approval(self, approval: Approval) -> None:
        self.approvals.append(approval)

    async def save_diagnosis(self, incident_id: str, diagnosis_json: dict[str, Any], at: datetime) -> None:
        self.diagnoses.append((incident_id, at, copy.deepcopy(diagnosis_json)))

    async def finish_job(self, job_id: str, ok: bool, now: datetime, *, worker: str | None = None) -> bool:
        st = self.store.job_states.get(job_id)
        if st is None or st.state != "running" or (worker is not None and st.worker != worker):
            return False
        if job_id in self.finished:
            return False
        self.finished[job_id] = (ok, now)
        return True

    async def get_alert(self, fingerprint: str) -> StoredAlert | None:
        return self.alerts.get(fingerprint) or self.store.alerts.get(fingerprint)

    async def save_alert(self, alert: StoredAlert) -> None:
        self.alerts[alert.fingerprint] = alert

    async def firing_alerts(self, incident_id: str) -> list[StoredAlert]:
        merged = {**self.store.alerts, **self.alerts}
        return [a for a in merged.values() if a.incident_id == incident_id and a.state == "firing"]

    async def get_incident(self, incident_id: str) -> Incident | None:
        return self.incidents.get(incident_id) or self.store.incidents.get(incident_id)

    async def open_incident(self, key: str) -> Incident | None:
        merged = {**self.store.incidents, **self.incidents}
        found = [i for i in merged.values() if i.key == key and i.open]
        return found[0] if found else None

    async def last_resolved(self, key: str, since: datetime) -> Incident | None:
        merged = {**self.store.incidents, **self.incidents}
        found = [i for i in merged.values() if i.key == key and not i.open and i.resolved_at and i.resolved_at >= since]
        return max(found, key=lambda i: i.resolved_at or since) if found else None

    async def next_incident_number(self) -> int:
        self.counter += 1
        return self.counter

    async def save_incident(self, incident: Incident) -> None:
        self.incidents[incident.id] = incident

    async def add_event(self, event: TimelineEvent) -> None:
        self.events.append(event)

    async def enqueue_job(self, job: Job) -> None:
        self.jobs.append(job)

    async def enqueue_message(self, message: OutboxMessage) -> None:
        self.messages.append(message)

    # -- paging (issue #7) -------------------------------------------------------------------------

    async def get_paging(self, incident_id: str) -> Paging | None:
        return self.pagings.get(incident_id) or self.store.pagings.get(incident_id)

    async def save_paging(self, paging: Paging) -> None:
        self.pagings[paging.incident_id] = paging

    async def storm_leader(self, service: str, since: datetime) -> Paging | None:
        merged = {**self.store.pagings, **self.pagings}
        found = [
            p
            for p in merged.values()
            if p.service == service
            and p.paged_at is not None
            and p.paged_at >= since
            and p.state in ("paged", "acknowledged")
            and p.storm_of is None
        ]
        by_id = sorted(found, key=lambda p: p.incident_id)  # ties: the smallest id, as the SQL store orders
        return max(by_id, key=lambda p: p.paged_at or since) if by_id else None

    async def storm_followers(self, incident_id: str) -> list[Paging]:
        merged = {**self.store.pagings, **self.pagings}
        found = [p for p in merged.values() if p.storm_of == incident_id and p.state == "folded"]
        return sorted(found, key=lambda p: (p.updated_at, p.incident_id))

    async def schedule_timer(self, timer: EscalationTimer) -> None:
        if timer.id not in self.store.timer_states and all(t.id != timer.id for t in self.timers):
            self.timers.append(timer)

    async def cancel_timers(self, incident_id: str, now: datetime) -> int:
        stored = [
            t
            for t in self.store.timers
            if t.incident_id == incident_id
            and self.store.timer_states[t.id].state in ("pending", "claimed")
            and t.id not in self.fired
            and incident_id not in self.cancelled
        ]
        mine = [t for t in self.timers if t.incident_id == incident_id]
        self.timers = [t for t in self.timers if t.incident_id != incident_id]
        self.cancelled.setdefault(incident_id, now)
        return len(stored) + len(mine)

    async def fire_timer(self, timer_id: str, worker: str, now: datetime) -> bool:
        st = self.store.timer_states.get(timer_id)
        timer = next((t for t in self.store.timers if t.id == timer_id), None)
        if st is None or timer is None or st.state != "claimed" or st.worker != worker or timer_id in self.fired:
            return False
        if timer.incident_id in self.cancelled:
            return False
        self.fired[timer_id] = now
        return True


class RecordingReporter:
    """A diagnosis Reporter for tests: keeps what it is told (``probes``, ``hosts`` in arrival order)."""

    def __init__(self) -> None:
        self.probes: list[list[Finding]] = []
        self.hosts: list[tuple[str, list[Finding]]] = []

    async def probe(self, findings: list[Finding]) -> None:
        self.probes.append(list(findings))

    async def host(self, host: str, findings: list[Finding]) -> None:
        self.hosts.append((host, list(findings)))


@dataclass(frozen=True)
class Sent:
    """One message a :class:`RecordingNotifier` took: when (on its clock), what and about which incident."""

    at: datetime | None
    message: OutboxMessage
    blocks: list[Block]
    incident: Incident

    @property
    def text(self) -> str:
        return plain_text(self.blocks)


class RecordingNotifier:
    """A ChatSender for tests: records every message it is given (``sent``) and every attempt
    (``attempts``: time and message id), timed on ``clock`` when one is given. Told to, it fails the
    next attempts first: ``rate_limit(retry_after, times)``, ``transient(times)``, ``fail(error, ...)``."""

    def __init__(self, clock: Callable[[], datetime] | None = None, *, name: str = "test") -> None:
        self.clock = clock
        self.name = name
        self.sent: list[Sent] = []
        self.attempts: list[tuple[datetime | None, str]] = []
        self._failures: deque[ChatError] = deque()

    def fail(self, *errors: ChatError) -> RecordingNotifier:
        self._failures.extend(errors)
        return self

    def rate_limit(self, retry_after: float, times: int = 1) -> RecordingNotifier:
        return self.fail(*(RateLimited(retry_after, target=self.name) for _ in range(times)))

    def transient(self, times: int = 1) -> RecordingNotifier:
        return self.fail(*(TransientChatError("503 Service Unavailable", target=self.name) for _ in range(times)))

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        at = self.clock() if self.clock is not None else None
        self.attempts.append((at, message.id))
        if self._failures:
            raise self._failures.popleft()
        self.sent.append(Sent(at, message, list(blocks), incident))

    @property
    def ids(self) -> list[str]:
        """The ids of the messages taken, in order."""
        return [s.message.id for s in self.sent]

    @property
    def times(self) -> list[datetime | None]:
        return [s.at for s in self.sent]
