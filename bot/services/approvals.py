"""Approvals: a runbook that changes a host runs only after a second authorised person says yes.

``request ID NAME HOST [KEY=VALUE…]`` (an operator, in chat) names a mutating runbook, one host of the
incident's service and the runbook's parameters (validated by its ``Params`` now, so a typo is answered
at once). The request goes to the incident's thread with Approve and Deny buttons and waits until
``approvals.expire_after``. Another operator's Approve runs it (the asker cannot approve their own);
Deny, from any operator or the asker, drops it; when time runs out :class:`ApprovalWorker` marks it
expired. Every step is a timeline event naming the asker and the approver, a post in the thread and an
audit entry (``kind="approval"``); each state change is conditional in the store, so two clicks, two
replicas or a click racing the expiry run it at most once.

Who may ask, approve or deny (the operator role in the chat where it is done) is checked by
:class:`bot.services.chatops.ChatOps` before it calls in here.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta

from pydantic import ValidationError

from bot.core.approvals import Approval, ApprovalState
from bot.core.blocks import Block, Section
from bot.core.chat_commands import Actor, ChatReply
from bot.core.incidents import EventKind, Incident, TimelineEvent
from bot.core.models import Diagnosis, Finding, Severity
from bot.core.ports import AuditEntry, AuditKind
from bot.core.store import Store
from bot.errors import BotError
from bot.runbook.base import Runbook
from bot.services.announce import Announcer

log = logging.getLogger(__name__)

#: ``run(approval)``: the approved runbook on its host over SSH, audited with ``approval:<id>`` as trigger.
RunApproved = Callable[[Approval], Awaitable[Diagnosis]]
_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def actor_id(actor: Actor) -> str:
    """``slack:U123``: who someone is, as approvals and the audit log compare them."""
    return f"{actor.platform}:{actor.user}"


async def audit_decision(
    store: Store, kind: AuditKind, who: str, argv: Sequence[str], *, at: datetime, host: str = ""
) -> None:
    """Append an approval or role decision to the audit chain (``who`` acted; ``argv`` the decision)."""
    entry = AuditEntry(
        at=at, trigger=who, host=host, argv=tuple(argv), exit_status=None, duration=0.0,
        output_sha256=_EMPTY_SHA256, kind=kind,
    )  # fmt: skip
    await store.record_audit(entry)


def outcome_of(findings: Sequence[Finding]) -> tuple[bool, str]:
    """(it worked, one line saying what happened) from the findings of the runbook's run."""
    if not findings:
        return False, "it reported nothing"
    worst = max(findings, key=lambda f: f.severity.rank)
    ok = worst.severity.rank <= Severity.INFO.rank
    shown = worst if not ok else next((f for f in findings if f.kind.startswith("action.")), findings[0])
    return ok, shown.summary


class Approvals:
    def __init__(
        self,
        store: Store,
        *,
        runbooks: Mapping[str, type[Runbook]],
        hosts: Mapping[str, Sequence[str]],
        run: RunApproved,
        clock: Callable[[], datetime],
        expire_after: timedelta,
        run_limit: timedelta = timedelta(minutes=5),
        announce: Announcer | None = None,
        new_id: Callable[[], str] = lambda: secrets.token_hex(5),
    ) -> None:
        """``runbooks``: the mutating runbooks by name; ``hosts``: each service's hosts (a request may
        name only a host of its incident's service); ``run_limit``: past it, a run still marked running
        was cut short (the bot stopped) and is reported as such."""
        self.store = store
        self.runbooks = {name: rb for name, rb in runbooks.items() if rb.mutating}
        self.hosts = hosts
        self.run = run
        self.clock = clock
        self.expire_after = expire_after
        self.run_limit = run_limit
        self.announce = announce or Announcer()
        self.new_id = new_id

    # -- asking ------------------------------------------------------------------------------------

    async def request(self, actor: Actor, number: str, runbook: str, host: str, params: Mapping[str, str]) -> ChatReply:
        incident = await self.store.get_incident(number)
        if incident is None:
            return _private(f"No incident #{number}.")
        if not incident.open:
            return _private(f"Incident #{number} is resolved; a runbook that changes hosts needs an open incident.")
        cls = self.runbooks.get(runbook)
        if cls is None:
            known = ", ".join(sorted(self.runbooks)) or "none are installed"
            return _private(
                f"{runbook!r} is not a runbook that changes hosts (those are: {known}). "
                "Read-only runbooks run at once: runbook NAME TARGET."
            )
        hosts = list(self.hosts.get(incident.service or "", ()))
        if host not in hosts:
            listed = ", ".join(hosts) or "none: the incident has no service of the configuration"
            return _private(f"{host!r} is not a host of incident #{number}'s service (its hosts: {listed}).")
        try:
            cls.Params.model_validate(dict(params))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "parameters"
            return _private(f"{runbook}: {where}: {first['msg']} (usage: request {number} {runbook} {host} KEY=VALUE…)")
        now = self.clock()
        approval = Approval(
            id=self.new_id(), incident_id=number, runbook=runbook, host=host, params=dict(params),
            asked_by=actor.label, asker=actor_id(actor), channel=actor.channel,
            created_at=now, expires_at=now + self.expire_after,
        )  # fmt: skip
        until = approval.expires_at.strftime("%H:%M UTC")
        async with self.store.transaction() as tx:
            await tx.lock_group(incident.key)
            await tx.add_approval(approval)
            await tx.add_event(
                _event(
                    approval, now, "approval_requested",
                    f"{actor.label} asked to run {approval.what}; waiting for another operator until {until}",
                    actor.label,
                )
            )  # fmt: skip
            payload = {"approval": approval.model_dump(mode="json"), "title": cls.title}
            await self.announce.say(tx, incident, "post", now, payload)
        await audit_decision(self.store, "approval", approval.asker, _argv("request", approval), at=now, host=host)
        return ChatReply(
            [
                Section(
                    f"Asked for {approval.what} (request {approval.id}); another operator must approve it by {until}."
                )
            ],
            private=True,
            incident_id=number,
        )

    # -- deciding ----------------------------------------------------------------------------------

    async def approve(self, actor: Actor, approval_id: str) -> ChatReply:
        """Approve and run it; refused to the asker, and once it is no longer pending."""
        found = await self.store.get_approval(approval_id)
        if found is None:
            return _private(f"No request {approval_id}.")
        who, now = actor_id(actor), self.clock()
        if found.state is not ApprovalState.PENDING:
            return await self._not_pending(found.id, now)
        if found.asker == who:
            await audit_decision(self.store, "approval", who, _argv("refuse-own", found), at=now, host=found.host)
            await self._note(found, now, "refused", f"{actor.label} may not approve their own request {found.id}")
            return _private(f"You asked for {found.what}: another operator must approve it.")
        won = await self.store.transition_approval(
            found.id, (ApprovalState.PENDING,), ApprovalState.RUNNING, now, decided_by=actor.label, decider=who,
            unexpired=True,
        )  # fmt: skip
        if won is None:
            return await self._not_pending(found.id, now)
        text = f"{actor.label} approved {won.asked_by}'s request: {won.what}. Running it now."
        await self._tell(won, now, "approved", f"✅ {text}", actor.label)
        await audit_decision(self.store, "approval", who, _argv("approve", won), at=now, host=won.host)
        done = await self._run(won)
        return _private(f"Approved {won.what}: {done.outcome}")

    async def deny(self, actor: Actor, approval_id: str) -> ChatReply:
        """Drop a pending request (the asker withdrawing it, or another operator turning it down)."""
        found = await self.store.get_approval(approval_id)
        if found is None:
            return _private(f"No request {approval_id}.")
        who, now = actor_id(actor), self.clock()
        won = await self.store.transition_approval(
            found.id, (ApprovalState.PENDING,), ApprovalState.DENIED, now, decided_by=actor.label, decider=who
        )
        if won is None:
            return await self._not_pending(found.id, now)
        said = "withdrew their request" if who == found.asker else f"denied {found.asked_by}'s request"
        await self._tell(won, now, "denied", f"❌ {actor.label} {said}: {won.what}.", actor.label)
        await audit_decision(self.store, "approval", who, _argv("deny", won), at=now, host=won.host)
        return _private(f"Request {won.id} dropped: {won.what} will not run.")

    async def expire_due(self) -> int:
        """Mark every pending request whose time ran out as expired, and every run cut short (still
        running past ``run_limit``: the bot stopped while it ran) as failed, saying so; how many were."""
        now = self.clock()
        changed = 0
        for due in await self.store.due_approvals(now):
            if await self._expire(due.id, now) is not None:
                changed += 1
        for stuck in await self.store.stuck_approvals(now - self.run_limit):
            outcome = "cut short: the bot stopped while it ran, so what it did is unknown; check the host"
            won = await self.store.transition_approval(
                stuck.id, (ApprovalState.RUNNING,), ApprovalState.FAILED, now, outcome=outcome
            )
            if won is not None:
                changed += 1
                credit = f"asked by {won.asked_by}, approved by {won.decided_by}"
                await self._tell(won, now, "action_failed", f"✖ {won.what}: {outcome} ({credit})", None)
                await audit_decision(self.store, "approval", "bot", _argv("interrupted", won), at=now, host=won.host)
        return changed

    # -- helpers -----------------------------------------------------------------------------------

    async def _expire(self, approval_id: str, now: datetime) -> Approval | None:
        won = await self.store.transition_approval(approval_id, (ApprovalState.PENDING,), ApprovalState.EXPIRED, now)
        if won is None:
            return None
        minutes = int((won.expires_at - won.created_at).total_seconds() // 60)
        text = f"⌛ {won.asked_by}'s request expired unapproved after {minutes} min: {won.what} did not run."
        await self._tell(won, now, "approval_expired", text, None)
        await audit_decision(self.store, "approval", "bot", _argv("expire", won), at=now, host=won.host)
        return won

    async def _not_pending(self, approval_id: str, now: datetime) -> ChatReply:
        """The answer to a click on a request that is no longer pending (expiring it if it just ran out)."""
        found = await self.store.get_approval(approval_id)
        if found is not None and found.state is ApprovalState.PENDING and found.expires_at <= now:
            found = await self._expire(found.id, now) or await self.store.get_approval(approval_id)
        if found is None:
            return _private(f"No request {approval_id}.")
        if found.state is ApprovalState.EXPIRED:
            return _private(
                f"Request {found.id} expired at {found.expires_at:%H:%M UTC}; ask again if it is still needed."
            )
        by = f" by {found.decided_by}" if found.decided_by else ""
        return _private(f"Request {found.id} is already {found.state.value}{by}.")

    async def _run(self, approval: Approval) -> Approval:
        try:
            diagnosis = await self.run(approval)
            findings = [f for f in diagnosis.findings if f.runbook == approval.runbook] or list(diagnosis.findings)
            ok, outcome = outcome_of(findings)
        except BotError as exc:
            ok, outcome = False, f"could not run: {exc.user_message()}"
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("approved request %s (%s) failed (ref %s)", approval.id, approval.what, ref)
            ok, outcome = False, f"failed unexpectedly (reference {ref}, in the bot's log)"
        now = self.clock()
        state = ApprovalState.DONE if ok else ApprovalState.FAILED
        finished = await self.store.transition_approval(
            approval.id, (ApprovalState.RUNNING,), state, now, outcome=outcome[:1000]
        )
        kind: EventKind = "action_done" if ok else "action_failed"
        mark = "✔" if ok else "✖"
        credit = f"asked by {approval.asked_by}, approved by {approval.decided_by}"
        await self._tell(approval, now, kind, f"{mark} {approval.what}: {outcome} ({credit})", None)
        return finished or approval.model_copy(update={"state": state, "outcome": outcome})

    async def _tell(self, approval: Approval, at: datetime, kind: EventKind, text: str, actor: str | None) -> None:
        """A timeline event and the same words in the incident's thread."""
        incident = await self.store.get_incident(approval.incident_id)
        if incident is None:
            return
        async with self.store.transaction() as tx:
            await tx.lock_group(incident.key)
            await tx.add_event(_event(approval, at, kind, text, actor))
            await self.announce.say(tx, incident, "post", at, {"text": text})

    async def _note(self, approval: Approval, at: datetime, kind: EventKind, text: str) -> None:
        """A timeline event only (nothing posted)."""
        incident: Incident | None = await self.store.get_incident(approval.incident_id)
        if incident is None:
            return
        async with self.store.transaction() as tx:
            await tx.add_event(_event(approval, at, kind, text, None))


class ApprovalWorker:
    """Expires requests whose time ran out, every ``idle`` seconds, until stopped."""

    def __init__(self, approvals: Approvals) -> None:
        self.approvals = approvals

    async def run_forever(self, stop: asyncio.Event, idle: float = 5.0) -> None:
        while not stop.is_set():
            try:
                await self.approvals.expire_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the store failed: the requests stay pending and are looked at again
                log.exception("expiring approval requests failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), idle)


def _argv(decision: str, approval: Approval) -> tuple[str, ...]:
    params = tuple(f"{k}={v}" for k, v in sorted(approval.params.items()))
    return (decision, approval.runbook, *params, f"incident={approval.incident_id}", f"request={approval.id}")


def _event(approval: Approval, at: datetime, kind: EventKind, text: str, actor: str | None) -> TimelineEvent:
    data = {"request": approval.id, "runbook": approval.runbook, "host": approval.host, "asked_by": approval.asked_by}
    if approval.decided_by:
        data["approved_by" if kind != "denied" else "denied_by"] = approval.decided_by
    return TimelineEvent(incident_id=approval.incident_id, at=at, kind=kind, text=text, actor=actor, data=data)


def _private(text: str) -> ChatReply:
    blocks: list[Block] = [Section(text)]
    return ChatReply(blocks, private=True)
