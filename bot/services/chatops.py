"""Chat operations: what the ``/incident`` commands and the card's buttons do, the same for Slack and
Telegram (the grammar and the types adapters use are in :mod:`bot.core.chat_commands`).

A ``diagnose`` or ``runbook`` from chat only reaches hosts of the configuration.

Who may do what (:class:`Policy`) follows the asker's role in the channel or chat where they ask
(``viewer`` < ``responder`` < ``operator``, :class:`~bot.config.RoleGrant`): reading (list, show,
explain, oncall, help) needs viewer; acknowledging, resolving, escalating and re-running need responder;
diagnose, runbook, and asking for, approving or denying a runbook that changes hosts need operator
(:mod:`bot.services.approvals`). A refused request is answered and recorded (on the incident's timeline
when it concerns one, and in the log); every decision beyond reading is appended to the audit chain
(``kind="role"``).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime
from typing import Literal

from bot.config import ROLES, AllowList, ChatPermissions, Role, RoleGrant
from bot.core.approvals import APPROVE, DENY
from bot.core.blocks import Actions, Block, Code, Context, Fields, Header, Section, diagnosis_blocks
from bot.core.cards import ACKNOWLEDGE, ESCALATE, RERUN, RESOLVE, read_diagnosis, status_card, when
from bot.core.chat_commands import (
    USAGE,
    Actor,
    ChatReply,
    ChatUsageError,
    ParsedCommand,
    approval_id,
    incident_id,
    request_params,
)
from bot.core.delivery import degraded_targets
from bot.core.incidents import Incident, Job, TimelineEvent
from bot.core.models import Diagnosis
from bot.core.store import Store
from bot.errors import BotError
from bot.services.announce import Announcer
from bot.services.approvals import Approvals, actor_id, audit_decision
from bot.services.incidents import ActionResult, IncidentService

log = logging.getLogger(__name__)

Permission = Literal["read", "respond", "operate"]

#: What each command needs beyond reading.
_NEEDS: dict[str, Permission] = {
    "ack": "respond",
    "resolve": "respond",
    "diagnose": "operate",
    "runbook": "operate",
    "request": "operate",
    "approve": "operate",
    "deny": "operate",
}
#: The role each permission needs.
_ROLE_FOR: dict[Permission, Role] = {"read": "viewer", "respond": "responder", "operate": "operator"}


def grants_of(allow: ChatPermissions) -> list[RoleGrant]:
    """The role grants of ``allow``: its ``roles`` and the short forms ``respond`` and ``operate``."""
    grants = list(allow.roles)
    short: tuple[tuple[Role, AllowList | None], ...] = (("responder", allow.respond), ("operator", allow.operate))
    for role, listed in short:
        if listed is None:
            continue
        if listed.users or listed.groups:
            grants.append(RoleGrant(role=role, users=listed.users, groups=listed.groups))
        if listed.channels:
            grants.append(RoleGrant(role=role, everyone=True, channels=listed.channels))
    return grants


class Policy:
    """Who has which role on one chat platform, per channel (see :class:`~bot.config.ChatPermissions`).
    ``served`` are the channels the bot posts incidents to: with no responder granted, anyone there is one."""

    def __init__(self, allow: ChatPermissions, served: Collection[str]) -> None:
        self.allow = allow
        self.served = frozenset(served)
        self.grants = grants_of(allow)
        granted = {grant.role for grant in self.grants}
        self._open_viewing = "viewer" not in granted
        self._open_responding = "responder" not in granted

    def role(self, actor: Actor) -> Role | None:
        """The highest role ``actor`` has where they are asking (None: not even viewer)."""
        best = -1
        for grant in self.grants:
            if grant.channels and actor.channel not in grant.channels:
                continue
            if grant.everyone or actor.user in grant.users or bool(actor.groups & set(grant.groups)):
                best = max(best, ROLES.index(grant.role))
        if self._open_responding and actor.channel in self.served:
            best = max(best, ROLES.index("responder"))
        if self._open_viewing:
            best = max(best, ROLES.index("viewer"))
        return ROLES[best] if best >= 0 else None

    def may(self, actor: Actor, permission: Permission) -> bool:
        role = self.role(actor)
        return role is not None and ROLES.index(role) >= ROLES.index(_ROLE_FOR[permission])


#: ``diagnose(target, status, runbooks, trigger)``: runs runbooks over SSH on a host or service of the
#: configuration (never an ad-hoc address), as the CLI's ``diagnose`` does.
Diagnose = Callable[[str, int | None, tuple[str, ...], str], Awaitable[Diagnosis]]
Explain = Callable[[str], Diagnosis]
#: ``oncall(actor, args)``: who is on call now and when that changes, or an override (``override @user 2h``).
OnCall = Callable[[Actor, tuple[str, ...]], Awaitable[list[Block]]]
#: Escalate an incident (page the next level); returns what was done, for the thread.
Escalate = Callable[[Incident, Actor], Awaitable[str]]


class ChatOps:
    def __init__(
        self,
        store: Store,
        incidents: IncidentService,
        *,
        policies: Mapping[str, Policy],
        explain: Explain,
        diagnose: Diagnose,
        clock: Callable[[], datetime],
        announce: Announcer | None = None,
        oncall: OnCall | None = None,
        escalate: Escalate | None = None,
        approvals: Approvals | None = None,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self.policies = dict(policies)
        self.explain = explain
        self.diagnose = diagnose
        self.clock = clock
        self.announce = announce or Announcer()
        self.oncall = oncall
        self.escalate = escalate
        self.approvals = approvals

    # -- entry points ------------------------------------------------------------------------------

    async def run(self, actor: Actor, command: ParsedCommand) -> ChatReply:
        """Run a parsed command for ``actor``; every failure becomes a reply, never an exception."""
        permission = _NEEDS.get(command.name, "read")
        if command.name == "oncall" and command.args[:1] == ("override",):
            permission = "respond"  # it changes who gets paged
        concerning = command.args[0] if command.name in ("ack", "resolve", "request") else None
        if command.name in ("approve", "deny"):
            concerning = await self._incident_of(command.args[0])
        if not await self._allowed(actor, permission, command.name, concerning):
            return _refused(actor, permission)
        try:
            return await self._run(actor, command)
        except BotError as exc:
            return ChatReply([Section(f"{command.name}: {exc.user_message()}")], private=True)
        except Exception:
            ref = uuid.uuid4().hex[:8]
            log.exception("chat command %s by %s failed (ref %s)", command.name, actor.label, ref)
            return ChatReply([Section(f"{command.name} failed unexpectedly (reference {ref}, in the bot's log)")])

    async def act(self, actor: Actor, action: str, incident: str) -> ChatReply:
        """A click on a card button (``acknowledge``, ``rerun``, ``escalate``, ``resolve``), or on a
        request's ``approve``/``deny`` (whose value is the request id, not an incident)."""
        if action in (APPROVE, DENY):
            try:
                return await self.run(actor, ParsedCommand(action, (approval_id(incident),)))
            except ChatUsageError as exc:
                return ChatReply([Section(exc.user_message())], private=True)
        try:
            incident = incident_id(incident)
        except ChatUsageError as exc:
            return ChatReply([Section(exc.user_message())], private=True)
        if action not in (ACKNOWLEDGE, RERUN, ESCALATE, RESOLVE):
            return ChatReply([Section(f"unknown action {action[:40]!r}")], private=True)
        if not await self._allowed(actor, "respond", action, incident):
            return _refused(actor, "respond")
        if action == ACKNOWLEDGE:
            return _action_reply(await self.incidents.acknowledge(incident, actor.label), incident)
        if action == RESOLVE:
            return _action_reply(await self.incidents.resolve(incident, actor.label), incident)
        if action == RERUN:
            return await self.rerun(actor, incident)
        return await self._escalate(actor, incident)

    # -- commands ----------------------------------------------------------------------------------

    async def _run(self, actor: Actor, command: ParsedCommand) -> ChatReply:
        match command.name:
            case "help":
                return ChatReply([Code(tuple(USAGE.splitlines()))], private=True)
            case "list":
                return await self._list()
            case "show":
                return await self._show(command.args[0])
            case "ack":
                result = await self.incidents.acknowledge(command.args[0], actor.label)
                return _action_reply(result, command.args[0])
            case "resolve":
                result = await self.incidents.resolve(command.args[0], actor.label)
                return _action_reply(result, command.args[0])
            case "explain":  # reading is CPU work: off the event loop
                return ChatReply(diagnosis_blocks(await asyncio.to_thread(self.explain, command.text)))
            case "diagnose":
                status = int(command.args[1]) if len(command.args) == 2 else None
                diagnosis = await self.diagnose(command.args[0], status, (), f"{actor.platform}:{actor.user}")
                return ChatReply([Header(f"diagnose {command.args[0]}"), *diagnosis_blocks(diagnosis)])
            case "runbook":
                name, target = command.args
                diagnosis = await self.diagnose(target, None, (name,), f"{actor.platform}:{actor.user}")
                return ChatReply([Header(f"runbook {name} on {target}"), *diagnosis_blocks(diagnosis)])
            case "request" | "approve" | "deny" if self.approvals is None:
                return ChatReply([Section("Runbooks that change hosts are not enabled on this bot.")], private=True)
            case "request" if self.approvals is not None:
                number, name, host = command.args[:3]
                return await self.approvals.request(actor, number, name, host, request_params(command.args))
            case "approve" if self.approvals is not None:
                return await self.approvals.approve(actor, command.args[0])
            case "deny" if self.approvals is not None:
                return await self.approvals.deny(actor, command.args[0])
            case "oncall":
                if self.oncall is None:
                    return ChatReply([Section("No on-call rotation is configured (see `oncall:` in the config).")])
                return ChatReply(await self.oncall(actor, command.args))
        raise ChatUsageError(f"unknown command {command.name!r}")  # parse() lets no other name through

    async def _list(self) -> ChatReply:
        found = await self.store.list_incidents(limit=15)
        if not found:
            return ChatReply([Section("No incidents.")])
        lines = [
            f"#{i.id} {i.state.value:<12} {i.status or '-'} {i.service or 'unrouted'}: {i.title or i.key}"
            f" (since {when(i.opened_at)})"
            for i in found
        ]
        return ChatReply([Header("Incidents"), Code(tuple(lines))])

    async def _show(self, number: str) -> ChatReply:
        incident = await self.store.get_incident(number)
        if incident is None:
            return ChatReply([Section(f"No incident #{number}.")], private=True)
        diagnosis = read_diagnosis(await self.store.get_diagnosis(number))
        timeline = list(await self.store.timeline(number))
        delivery = list(degraded_targets(timeline).values())  # a chat that keeps failing, said on the card
        card = status_card(incident, diagnosis, delivery)
        blocks: list[Block] = [block for block in card if not isinstance(block, Actions)]
        if diagnosis is not None and diagnosis.top is not None and diagnosis.evidence_found:
            blocks.extend(diagnosis_blocks(diagnosis)[:4])
        events = timeline[-10:]
        if events:
            blocks.append(Fields(tuple((when(e.at), e.text) for e in events)))
        blocks.append(Context(f"Everything, with the full output: incident-bot incidents show {number}"))
        return ChatReply(blocks, incident_id=number)

    async def rerun(self, actor: Actor, number: str) -> ChatReply:
        """Queue a new diagnosis of the incident; the thread hears only what changed."""
        found = await self.store.get_incident(number)
        if found is None:
            return ChatReply([Section(f"No incident #{number}.")], private=True)
        if not found.routed:
            return ChatReply([Section(f"Incident #{number} is unrouted: it has no hosts to diagnose.")], private=True)
        now = self.clock()
        async with self.store.transaction() as tx:
            await tx.lock_group(found.key)
            await tx.enqueue_job(Job(id=uuid.uuid4().hex, incident_id=number, created_at=now))
            await tx.add_event(_event(number, now, "diagnosis_queued", f"re-run asked by {actor.label}", actor))
            await self.announce.say(
                tx, found, "post", now, {"text": f"Re-running the diagnosis (asked by {actor.label})"}
            )
        return ChatReply([Section(f"Re-running the diagnosis of #{number}.")], private=True, incident_id=number)

    async def _escalate(self, actor: Actor, number: str) -> ChatReply:
        found = await self.store.get_incident(number)
        if found is None:
            return ChatReply([Section(f"No incident #{number}.")], private=True)
        if not found.open:
            return ChatReply([Section(f"Incident #{number} is resolved.")], private=True)
        done = await self.escalate(found, actor) if self.escalate is not None else "no escalation policy is configured"
        now = self.clock()
        async with self.store.transaction() as tx:
            await tx.lock_group(found.key)
            await tx.add_event(_event(number, now, "escalated", f"escalated by {actor.label}: {done}", actor))
            await self.announce.say(tx, found, "post", now, {"text": f"⏫ Escalated by {actor.label}: {done}"})
        return ChatReply([Section(f"Escalated #{number}: {done}")], private=True, incident_id=number)

    # -- permissions -------------------------------------------------------------------------------

    async def _incident_of(self, request: str) -> str | None:
        found = await self.store.get_approval(request)
        return found.incident_id if found is not None else None

    async def _allowed(self, actor: Actor, permission: Permission, what: str, concerning: str | None) -> bool:
        """Whether ``actor`` may; every decision beyond reading is audited (``kind="role"``)."""
        policy = self.policies.get(actor.platform)
        role = policy.role(actor) if policy is not None else "viewer"
        allowed = policy.may(actor, permission) if policy is not None else permission == "read"
        if permission != "read":
            decision = ("allow" if allowed else "refuse", what, f"role={role or 'none'}", f"in={actor.channel}")
            where = (f"incident={concerning}",) if concerning is not None else ()
            await audit_decision(self.store, "role", actor_id(actor), (*decision, *where), at=self.clock())
        if allowed:
            return True
        log.warning("refused %s to %s (%s:%s in %s)", what, actor.label, actor.platform, actor.user, actor.channel)
        found = await self.store.get_incident(concerning) if concerning is not None else None
        if found is not None:
            now = self.clock()
            async with self.store.transaction() as tx:
                await tx.add_event(_event(found.id, now, "refused", f"{what} refused to {actor.label}", actor))
        return False


def _event(incident: str, at: datetime, kind: str, text: str, actor: Actor) -> TimelineEvent:
    return TimelineEvent.model_validate(
        {"incident_id": incident, "at": at, "kind": kind, "text": text, "actor": actor.label}
    )


_WHAT = {
    "read": "read incidents",
    "respond": "acknowledge, resolve, escalate or re-run",
    "operate": "run diagnoses, runbooks or changes",
}


def _refused(actor: Actor, permission: Permission) -> ChatReply:
    """Short enough for a Telegram button's answer (200 characters)."""
    text = (
        f"Sorry {actor.name[:40]}, you may not {_WHAT[permission]} here: that needs the {_ROLE_FOR[permission]} "
        f"role. Ask an admin for it (`{actor.platform}.allow.roles`)."
    )
    return ChatReply([Section(text)], private=True)


_SAID = {
    "acknowledged": "Acknowledged #{id}.",
    "already_acknowledged": "#{id} was already acknowledged.",
    "resolved": "Resolved #{id}.",
    "already_resolved": "#{id} is already resolved.",
    "not_found": "No incident #{id}.",
}


def _action_reply(result: ActionResult, number: str) -> ChatReply:
    return ChatReply([Section(_SAID[result.outcome].format(id=number))], private=True, incident_id=number)


def served_channels(*groups: Sequence[str | None]) -> list[str]:
    """The distinct channels named (a default channel and every service's), for :class:`Policy`."""
    return sorted({c for group in groups for c in group if c})
