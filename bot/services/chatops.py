"""Chat operations: the ``/incident`` grammar and the card's buttons, the same for Slack and Telegram.

A chat adapter turns what a person typed or clicked into :func:`parse` + :meth:`ChatOps.run`, or
:meth:`ChatOps.act`, with an :class:`Actor` saying who asked and where, and shows the
:class:`ChatReply` (chat-neutral blocks). Nothing typed reaches a shell: arguments are validated here
(incident ids, status codes, names) and a ``diagnose`` from chat only reaches hosts of the
configuration. Grammar (``help`` prints it)::

    list | show ID | ack ID | resolve ID | diagnose TARGET [STATUS] | runbook NAME TARGET
    explain TEXT… | oncall | help

Who may do what (:class:`Policy`): anyone may read (list, show, explain, oncall, help);
acknowledging, resolving, escalating and re-running need ``respond``; diagnose and runbook need
``operate``. A refused request is answered and recorded (on the incident's timeline when it concerns
one, else in the log).
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from bot.config import AllowList, ChatPermissions
from bot.core.blocks import Actions, Block, Code, Context, Fields, Header, Section, diagnosis_blocks
from bot.core.cards import ACKNOWLEDGE, ESCALATE, RERUN, RESOLVE, read_diagnosis, status_card, when
from bot.core.incidents import Incident, Job, TimelineEvent
from bot.core.models import Diagnosis, parse_status
from bot.core.store import Store
from bot.errors import BotError, UsageError
from bot.services.announce import Announcer
from bot.services.incidents import ActionResult, IncidentService

log = logging.getLogger(__name__)

Permission = Literal["read", "respond", "operate"]

USAGE = """\
/incident list                       open and recent incidents
/incident show ID                    one incident: card, cause, timeline
/incident ack ID                     acknowledge
/incident resolve ID                 resolve by hand
/incident diagnose TARGET [STATUS]   run the 5xx checklist on a host or service of the configuration
/incident runbook NAME TARGET        run one runbook on a host or service of the configuration
/incident explain TEXT…              read pasted logs or command output and name the cause
/incident oncall                     who is on call
/incident help                       this text"""


@dataclass(frozen=True)
class Actor:
    """Who asked, and where: ``user`` is the platform's id (Slack ``U…``, a Telegram user id), ``name``
    what people call them, ``channel`` the Slack channel or Telegram chat of the request, ``groups`` the
    Slack user groups the adapter found them in."""

    platform: str
    user: str
    name: str
    channel: str
    groups: frozenset[str] = frozenset()

    @property
    def label(self) -> str:
        """How the timeline and the card name them: ``@alice (slack)``."""
        return f"{self.name} ({self.platform})"


@dataclass(frozen=True)
class ChatReply:
    """An answer: ``private`` only for the asker (Slack ephemeral; Telegram a reply to them);
    ``incident_id`` when it belongs in that incident's thread."""

    blocks: list[Block]
    private: bool = False
    incident_id: str | None = None


@dataclass(frozen=True)
class ParsedCommand:
    """A valid command: ``slow`` ones (SSH, heavy reading) are acknowledged at once and answered later."""

    name: str
    args: tuple[str, ...] = ()
    text: str = ""

    @property
    def slow(self) -> bool:
        return self.name in ("diagnose", "runbook", "explain")


_ALIASES = {"incidents": "list", "ls": "list", "acknowledge": "ack", "close": "resolve", "who": "oncall"}
#: name → (fewest, most) arguments and the usage line.
_ARITY: dict[str, tuple[int, int, str]] = {
    "list": (0, 0, "list"),
    "show": (1, 1, "show ID"),
    "ack": (1, 1, "ack ID"),
    "resolve": (1, 1, "resolve ID"),
    "diagnose": (1, 2, "diagnose TARGET [STATUS]"),
    "runbook": (2, 2, "runbook NAME TARGET"),
    "oncall": (0, 8, "oncall"),
    "help": (0, 8, "help"),
}
#: What each command needs beyond reading.
_NEEDS: dict[str, Permission] = {"ack": "respond", "resolve": "respond", "diagnose": "operate", "runbook": "operate"}
_ID = re.compile(r"#?(\d{1,12})")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@\[\]-]{0,254}")


class ChatUsageError(UsageError):
    """A command that cannot be run as typed; its message is the usage line to show."""

    code = "chat_usage"


def incident_id(value: str) -> str:
    found = _ID.fullmatch(value.strip())
    if found is None:
        raise ChatUsageError(f"{value!r} is not an incident id (a number, like 12 or #12)")
    return str(int(found.group(1)))


def parse(text: str) -> ParsedCommand:
    """``text`` after the command (``/incident``): a valid command, or :class:`ChatUsageError`."""
    stripped = text.strip()
    if not stripped:
        return ParsedCommand("help")
    head, _, rest = stripped.partition(" ")
    name = _ALIASES.get(head.lower(), head.lower())
    if name == "explain":
        if not rest.strip():
            raise ChatUsageError("usage: explain TEXT… (paste the log lines or command output after it)")
        return ParsedCommand("explain", text=rest.strip())
    if name not in _ARITY:
        raise ChatUsageError(f"unknown command {head!r}; try: help")
    args = tuple(rest.split())
    fewest, most, usage = _ARITY[name]
    if not fewest <= len(args) <= most:
        raise ChatUsageError(f"usage: {usage}")
    if name in ("show", "ack", "resolve"):
        args = (incident_id(args[0]),)
    elif name == "diagnose":
        for arg in args[:1]:
            _name_arg(arg, "TARGET")
        if len(args) == 2:
            status = parse_status(args[1])  # InvalidStatus (a UsageError) says why
            args = (args[0], str(status))
    elif name == "runbook":
        _name_arg(args[0], "NAME")
        _name_arg(args[1], "TARGET")
    return ParsedCommand(name, args)


def _name_arg(value: str, what: str) -> None:
    if _NAME.fullmatch(value) is None:
        raise ChatUsageError(f"{what} {value[:40]!r} is not a host, service or runbook name")


class Policy:
    """Who may respond and operate on one chat platform (see :class:`~bot.config.ChatPermissions`).
    ``served`` are the channels the bot posts incidents to: with ``respond`` unset, anyone there may."""

    def __init__(self, allow: ChatPermissions, served: Collection[str]) -> None:
        self.allow = allow
        self.served = frozenset(served)

    @staticmethod
    def _listed(allow: AllowList, actor: Actor) -> bool:
        return actor.user in allow.users or actor.channel in allow.channels or bool(actor.groups & set(allow.groups))

    def may(self, actor: Actor, permission: Permission) -> bool:
        if permission == "read":
            return True
        if permission == "respond":
            if self.allow.respond is None:
                return actor.channel in self.served
            return self._listed(self.allow.respond, actor)
        return self._listed(self.allow.operate, actor)


#: ``diagnose(target, status, runbooks, trigger)``: runs runbooks over SSH on a host or service of the
#: configuration (never an ad-hoc address), as the CLI's ``diagnose`` does.
Diagnose = Callable[[str, int | None, tuple[str, ...], str], Awaitable[Diagnosis]]
Explain = Callable[[str], Diagnosis]
#: Who is on call now (blocks), when paging is configured.
OnCall = Callable[[], Awaitable[list[Block]]]
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

    # -- entry points ------------------------------------------------------------------------------

    async def run(self, actor: Actor, command: ParsedCommand) -> ChatReply:
        """Run a parsed command for ``actor``; every failure becomes a reply, never an exception."""
        permission = _NEEDS.get(command.name, "read")
        concerning = command.args[0] if command.name in ("ack", "resolve") else None
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
        """A click on a card button (``acknowledge``, ``rerun``, ``escalate``, ``resolve``)."""
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
            case "explain":
                return ChatReply(diagnosis_blocks(self.explain(command.text)))
            case "diagnose":
                status = int(command.args[1]) if len(command.args) == 2 else None
                diagnosis = await self.diagnose(command.args[0], status, (), f"{actor.platform}:{actor.user}")
                return ChatReply([Header(f"diagnose {command.args[0]}"), *diagnosis_blocks(diagnosis)])
            case "runbook":
                name, target = command.args
                diagnosis = await self.diagnose(target, None, (name,), f"{actor.platform}:{actor.user}")
                return ChatReply([Header(f"runbook {name} on {target}"), *diagnosis_blocks(diagnosis)])
            case "oncall":
                if self.oncall is None:
                    return ChatReply([Section("No on-call rotation is configured (see `oncall:` in the config).")])
                return ChatReply(await self.oncall())
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
        blocks: list[Block] = [block for block in status_card(incident, diagnosis) if not isinstance(block, Actions)]
        if diagnosis is not None and diagnosis.top is not None and diagnosis.evidence_found:
            blocks.extend(diagnosis_blocks(diagnosis)[:4])
        events = list(await self.store.timeline(number))[-10:]
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

    async def _allowed(self, actor: Actor, permission: Permission, what: str, concerning: str | None) -> bool:
        policy = self.policies.get(actor.platform)
        if policy is not None and policy.may(actor, permission):
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


def _refused(actor: Actor, permission: Permission) -> ChatReply:
    what = "acknowledge, resolve, escalate or re-run" if permission == "respond" else "run diagnoses and runbooks"
    key = f"{actor.platform}.allow.{permission}"
    return ChatReply(
        [Section(f"Sorry {actor.name}, you may not {what} here. Ask an admin to add you to `{key}` in the config.")],
        private=True,
    )


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
