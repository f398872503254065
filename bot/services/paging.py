"""Paging and escalation: who hears about an incident beyond its thread, when, and what they are told.

When (issue #7):

- **Opened**: the opening transaction records a ``waiting`` paging and a level-0 timer
  (:meth:`Pager.opened`, a hook of the incident service). A routed incident is paged as soon as the
  confirmation probe reports (:meth:`Pager.probed`); when its service has no URL to probe, when its
  diagnosis is done or has failed (:meth:`Pager.diagnosed`); and if neither came within
  ``probe_wait``, when the timer fires (a diagnosis worker that is down never keeps a page back). An
  unrouted incident has nothing to probe: its timer is due at once.
- **Blips**: a probe that found the site answering (``probe.ok``, ``probe.recovered``) pages nobody yet.
  The level-0 timer moves ``blip_grace`` ahead and the thread says so; if the incident is still open
  and unacknowledged then, it is paged (PagerDuty severity ``warning``).
- **A page** (level *n* of the incident's escalation policy): the level's people (its schedule's on-call
  person, overrides included, then its named people) are mentioned in the thread (a post whose payload
  carries ``mentions``), get a direct message on Slack and Telegram where the config has their ids, and
  PagerDuty is triggered (once per round) when one of them has ``pagerduty: true``. The page says what
  the diagnosis found so far: the stored diagnosis's top cause and evidence, else the probe's reading.
  The status card's "On call" line names them. A timer for level *n + 1* is stored, due after the
  level's ``after``. A level with nobody on call is skipped (and said).
- **Escalation**: a timer fires (:meth:`Pager.fire`, from the escalation worker) in one transaction that
  holds the incident's group lock and marks the timer fired only if this worker still holds its lease:
  one escalation, once, whatever the number of replicas; it is posted in the thread and on the
  timeline. The Escalate button (:meth:`Pager.escalate`) pages the next level at once.
- **Acknowledged / resolved**: every pending timer of the incident is cancelled in the acknowledging
  (resolving) transaction, and PagerDuty gets ``acknowledge`` (``resolve``) when it was triggered.
- **Quiet**: one paging per incident, so repeat notifications, duplicates and re-runs never page again;
  a reopened incident starts a new round from level 0. The first page of an incident whose service
  already paged for another incident within ``storm_window`` (still open) is folded into that page:
  both threads say so, the paged incident's escalations carry the count, nobody is paged twice. When
  the paged incident resolves while folded ones are still open, they are paged again (the first of
  them becomes the storm's page, the rest fold into it).

What goes to the outbox (all ``post`` messages, so retried, paced and said once like any other):
thread posts through the :class:`~bot.services.announce.Announcer`, ``{"page": {...}, "mentions":
[{"name", "slack", "telegram", "telegram_username"}]}``; direct messages to the targets
:data:`SLACK_DM` and :data:`TELEGRAM_DM` with ``{"dm": {"user": <platform user id>, "person": <name>},
"page": {...}}``; PagerDuty events to :data:`PAGERDUTY` with ``{"pagerduty": <Events API v2 event
without routing_key>}``. A page target that refuses a message for good (PagerDuty 400, a refused DM)
is written on the timeline and in the thread by :meth:`Pager.rejected` (the outbox's ``on_rejected``).
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from bot.config import Settings
from bot.core.blocks import Block, Context, Header, Section
from bot.core.cards import cause_line, quoted_evidence, read_diagnosis
from bot.core.chat_commands import Actor, ChatUsageError
from bot.core.incidents import EscalationTimer, Incident, IncidentState, OutboxMessage, Paging, TimelineEvent
from bot.core.models import Diagnosis, Finding, Severity
from bot.core.oncall import (
    WEEKDAYS,
    Layer,
    Level,
    OnCallNow,
    Override,
    Person,
    Rota,
    Schedule,
    Window,
    format_duration,
    parse_clock,
    parse_duration,
    zone,
)
from bot.core.ports import Reporter
from bot.core.probe import PROBE_SIGNALS
from bot.core.redact import redact
from bot.core.store import ClaimedTimer, Store, Transaction
from bot.diagnosis.engine import diagnose
from bot.errors import ChatError, UsageError
from bot.services.announce import Announcer

log = logging.getLogger(__name__)

#: Outbox targets of pages (their senders are registered by the composition root).
PAGERDUTY, SLACK_DM, TELEGRAM_DM = "pagerduty", "slack_dm", "telegram_dm"
PAGE_TARGETS = frozenset({PAGERDUTY, SLACK_DM, TELEGRAM_DM})
#: Probe findings that say the site answered: a blip, not (yet) an outage.
BLIP_KINDS = frozenset({"probe.ok", "probe.recovered"})
#: PagerDuty's limits (platforms.md §3.4).
MAX_SUMMARY = 1024
MAX_DEDUP_KEY = 255
#: Evidence lines a page quotes, and their length.
MAX_EVIDENCE = 6
MAX_LINE = 300
#: The longest override one command may set.
MAX_OVERRIDE = timedelta(days=31)

Clock = Callable[[], datetime]
#: ``thread_link(incident_id)``: a URL of the incident's chat thread, when one can be made.
ThreadLink = Callable[[str], Awaitable[str | None]]


@dataclass(frozen=True)
class PagingOptions:
    """How paging behaves (from ``oncall:`` and the composition root): the quiet windows, whether
    PagerDuty is set up (``PAGERDUTY_ROUTING_KEY``) and at which severity, and which direct-message
    targets have a sender (:data:`SLACK_DM`, :data:`TELEGRAM_DM`)."""

    storm_window: timedelta = timedelta(minutes=10)
    blip_grace: timedelta = timedelta(minutes=5)
    probe_wait: timedelta = timedelta(minutes=2)
    pagerduty: bool = False
    severity: str = "critical"
    direct: frozenset[str] = frozenset()


# ---------------------------------------------------------------------------------------- from config


def rota_from_settings(settings: Settings) -> Rota | None:
    """The people, schedules and escalation policies of ``oncall:`` (None when there is no such section)."""
    oncall = settings.oncall
    if oncall is None:
        return None
    people = {
        name: Person(
            name,
            slack=p.slack,
            telegram=p.telegram,
            telegram_username=p.telegram_username,
            pagerduty=p.pagerduty,
            display=p.name or "",
        )
        for name, p in oncall.people.items()
    }
    schedules: dict[str, Schedule] = {}
    for name, config in oncall.schedules.items():
        home = config.time_zone or "UTC"
        rotations = config.rotations()
        layers = []
        for n, rotation in enumerate(rotations, 1):
            window = None
            if rotation.days is not None or rotation.hours is not None:
                days = frozenset(WEEKDAYS.index(day) for day in (rotation.days or WEEKDAYS))
                start, end = time(0, 0), time(0, 0)
                if rotation.hours is not None:
                    first, _, last = rotation.hours.partition("-")
                    start, end = parse_clock(first), parse_clock(last)
                window = Window(days, start, end)
            label = rotation.name or ("rotation" if len(rotations) == 1 else f"layer {n}")
            layers.append(
                Layer(
                    members=tuple(rotation.members),
                    zone=zone(rotation.time_zone or home),
                    handoff=parse_clock(rotation.handoff),
                    length_days=rotation.length_days,
                    start=rotation.start,
                    window=window,
                    name=label,
                )
            )
        schedules[name] = Schedule(name, tuple(layers), zone(home))

    def levels(configs: Sequence[Any]) -> tuple[Level, ...]:
        return tuple(Level(schedule=c.schedule, people=tuple(c.people), after=c.after) for c in configs)

    policies = {name: levels(s.escalation) for name, s in settings.services.items() if s.escalation is not None}
    return Rota(people=people, schedules=schedules, policies=policies, default=levels(oncall.escalation))


def paging_options(settings: Settings, *, slack_dm: bool, telegram_dm: bool) -> PagingOptions:
    """Options from the settings; ``slack_dm``/``telegram_dm``: whether those senders are registered."""
    oncall = settings.oncall
    direct: set[str] = set()
    if oncall is not None and oncall.direct_messages:
        if slack_dm:
            direct.add(SLACK_DM)
        if telegram_dm:
            direct.add(TELEGRAM_DM)
    base = PagingOptions()
    return PagingOptions(
        storm_window=oncall.storm_window if oncall else base.storm_window,
        blip_grace=oncall.blip_grace if oncall else base.blip_grace,
        probe_wait=oncall.probe_wait if oncall else base.probe_wait,
        pagerduty=settings.secrets.pagerduty_routing_key is not None,
        severity=settings.pagerduty.severity,
        direct=frozenset(direct),
    )


# ------------------------------------------------------------------------------------ what was found


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _worst(finding: Finding) -> int:
    return -finding.severity.rank


def found_so_far(diagnosis: Diagnosis | None, source: str) -> dict[str, Any]:
    """What a page says the diagnosis found: the top cause (when there is evidence for one), up to
    :data:`MAX_EVIDENCE` evidence lines (redacted, clipped), the worst findings' summaries, and where it
    comes from (``diagnosis``, ``probe``; ``none`` when nothing is known yet)."""
    if diagnosis is None:
        return {"source": "none", "cause": None, "evidence": [], "findings": []}
    top = diagnosis.top if diagnosis.evidence_found else None
    bad = sorted((f for f in diagnosis.findings if f.severity.rank > Severity.INFO.rank), key=_worst)
    if top is not None and top.evidence:
        evidence = [_clip(redact(line), MAX_LINE) for line in top.evidence[:MAX_EVIDENCE]]
    else:
        evidence = quoted_evidence(bad)[:MAX_EVIDENCE]
    cause = {"id": top.id, "title": top.title, "confidence": round(top.confidence, 3)} if top is not None else None
    return {"source": source, "cause": cause, "evidence": evidence, "findings": [f.summary for f in bad[:4]]}


def probe_reading(incident: Incident, findings: Sequence[Finding]) -> dict[str, Any]:
    """What the confirmation probe alone says (the catalog's probe signals), as :func:`found_so_far`."""
    return found_so_far(diagnose(findings, incident.status, PROBE_SIGNALS), "probe")


# ---------------------------------------------------------------------------------------- PagerDuty


def dedup_key(incident: Incident) -> str:
    """The PagerDuty dedup key: the incident's key (hashed when longer than PagerDuty's 255)."""
    if len(incident.key) <= MAX_DEDUP_KEY:
        return incident.key
    return "incident-bot:" + hashlib.sha256(incident.key.encode()).hexdigest()


def pagerduty_summary(incident: Incident, found: dict[str, Any], count: int = 1) -> str:
    """``shop HTTP 502: Upstream is not running (upstream_down, 93%) — #12 Site502``, within 1024."""
    where = incident.service or "unrouted"
    status = f"HTTP {incident.status}" if incident.status is not None else "HTTP error"
    cause = found.get("cause")
    what = (
        f"{cause['title']} ({cause['id']}, {float(cause['confidence']):.0%})"
        if isinstance(cause, dict)
        else "cause not known yet"
    )
    storm = f" [{count} incidents on {where}]" if count > 1 else ""
    return _clip(f"{where} {status}: {what}{storm} — #{incident.id} {incident.title}".strip(), MAX_SUMMARY)


def pagerduty_event(
    action: str,
    incident: Incident,
    *,
    at: datetime,
    found: dict[str, Any] | None = None,
    severity: str = "critical",
    count: int = 1,
    thread: str | None = None,
) -> dict[str, Any]:
    """An Events API v2 event without its ``routing_key`` (the sender adds it): ``trigger`` with the
    summary, the service, the evidence and the thread link in ``custom_details``; ``acknowledge`` and
    ``resolve`` with the dedup key only."""
    event: dict[str, Any] = {"event_action": action, "dedup_key": dedup_key(incident)}
    if action != "trigger":
        return event
    found = found or found_so_far(None, "none")
    cause = found.get("cause")
    where = incident.service or "unrouted"
    host = urlsplit(incident.url).hostname if incident.url else None
    details: dict[str, Any] = {
        "incident": incident.id,
        "service": where,
        "status": incident.status,
        "title": incident.title,
        "url": incident.url,
        "cause": cause,
        "evidence": list(found.get("evidence") or []),
        "findings": list(found.get("findings") or []),
        "found_by": found.get("source", "none"),
        "thread": thread,
    }
    if count > 1:
        details["incidents_in_storm"] = count
    event["payload"] = {
        "summary": pagerduty_summary(incident, found, count),
        "source": host or where,
        "severity": severity,
        "timestamp": at.isoformat(),
        "component": where,
        "group": where,
        "class": cause["id"] if isinstance(cause, dict) else f"http_{incident.status or 'error'}",
        "custom_details": details,
    }
    return event


# ------------------------------------------------------------------------------------------ links


class ThreadLinks:
    """Links to an incident's thread from what the chat senders stored: Slack (with the workspace URL,
    ``https://acme.slack.com``) and Telegram supergroups (``t.me/c/…``)."""

    def __init__(self, store: Store, slack_url: str | None = None) -> None:
        self.store = store
        self.slack_url = slack_url.rstrip("/") if slack_url else None

    async def __call__(self, incident_id: str) -> str | None:
        slack = await self.store.get_thread(incident_id, "slack")
        if slack is not None and self.slack_url:
            return f"{self.slack_url}/archives/{slack.channel}/p{slack.root.replace('.', '')}"
        telegram = await self.store.get_thread(incident_id, "telegram")
        if telegram is not None and telegram.channel.startswith("-100"):
            topic = f"{telegram.topic}/" if telegram.topic else ""
            return f"https://t.me/c/{telegram.channel[4:]}/{topic}{telegram.root}"
        return None


async def _no_link(incident_id: str) -> str | None:
    return None


# ------------------------------------------------------------------------------------------ pager


def _event(incident_id: str, at: datetime, kind: str, text: str, **data: Any) -> TimelineEvent:
    body = {"incident_id": incident_id, "at": at, "kind": kind, "text": text, "data": data}
    return TimelineEvent.model_validate(body)


def _mention(person: Person) -> dict[str, str | None]:
    return {
        "name": person.label,
        "slack": person.slack,
        "telegram": person.telegram,
        "telegram_username": person.telegram_username,
    }


@dataclass(frozen=True)
class _Moment:
    """What a page is made of: the incident and its paging as the transaction sees them, the time, the
    overrides in force, what the diagnosis found so far and the link to the thread."""

    incident: Incident
    paging: Paging
    now: datetime
    overrides: Sequence[Override]
    found: dict[str, Any]
    thread: str | None
    #: Incidents about to fold into this page besides those already folded (a storm's new page).
    joining: int = 0


class Pager:
    """Pages and escalates incidents on the store (see the module docstring); time is ``clock``."""

    def __init__(
        self,
        store: Store,
        rota: Rota,
        clock: Clock,
        *,
        options: PagingOptions | None = None,
        announce: Announcer | None = None,
        thread_link: ThreadLink | None = None,
    ) -> None:
        self.store = store
        self.rota = rota
        self.clock = clock
        self.options = options or PagingOptions()
        self.announce = announce or Announcer()
        self.thread_link = thread_link or _no_link

    # -- hooks inside the caller's transaction (the incident's group is locked) ---------------------

    async def opened(self, tx: Transaction, incident: Incident, now: datetime) -> None:
        """A new incident: wait for the probe (routed) or page at once (unrouted), through a timer."""
        paging = Paging(
            incident_id=incident.id, service=incident.service, found=found_so_far(None, "none"), updated_at=now
        )
        await tx.save_paging(paging)
        due = now + self.options.probe_wait if incident.routed else now
        await tx.schedule_timer(self._timer(incident.id, 0, due, now))

    async def reopened(self, tx: Transaction, incident: Incident, now: datetime) -> None:
        """The incident fires again after resolving: a new round, paged from level 0 at once."""
        paging = await tx.get_paging(incident.id)
        if paging is None:
            return
        await tx.cancel_timers(incident.id, now)
        await tx.save_paging(
            paging.model_copy(
                update={
                    "state": "waiting",
                    "round": paging.round + 1,
                    "level": -1,
                    "paged_at": None,
                    "storm_of": None,
                    "pagerduty": False,
                    "updated_at": now,
                }
            )
        )
        await tx.schedule_timer(self._timer(incident.id, 0, now, now))

    async def acknowledged(self, tx: Transaction, incident: Incident, actor: str, now: datetime) -> None:
        """Stop the escalation (cancel the timers) and acknowledge on PagerDuty."""
        cancelled = await tx.cancel_timers(incident.id, now)
        paging = await tx.get_paging(incident.id)
        if paging is None:
            return
        if paging.state in ("waiting", "paged", "unpaged"):
            await tx.save_paging(paging.model_copy(update={"state": "acknowledged", "updated_at": now}))
        if paging.pagerduty:
            event = pagerduty_event("acknowledge", incident, at=now)
            await tx.enqueue_message(self._message(incident, PAGERDUTY, now, {"pagerduty": event}))
        if cancelled:
            await tx.add_event(
                _event(incident.id, now, "note", f"escalation stopped: acknowledged by {actor}", cancelled=cancelled)
            )

    async def resolved(self, tx: Transaction, incident: Incident, now: datetime) -> None:
        """Stop the escalation, resolve on PagerDuty, and page again the storm's incidents still open."""
        await tx.cancel_timers(incident.id, now)
        paging = await tx.get_paging(incident.id)
        if paging is None:
            return
        await tx.save_paging(paging.model_copy(update={"state": "resolved", "updated_at": now}))
        if paging.pagerduty:
            event = pagerduty_event("resolve", incident, at=now)
            await tx.enqueue_message(self._message(incident, PAGERDUTY, now, {"pagerduty": event}))
        if paging.storm_of is None:
            for follower in await tx.storm_followers(incident.id):
                await tx.schedule_timer(self._timer(follower.incident_id, 0, now, now))

    # -- hooks with their own transaction ----------------------------------------------------------

    def reporter(self, incident: Incident, inner: Reporter) -> Reporter:
        """The diagnosis job's reporter, which also tells this pager when the probe reports."""
        return PagingReporter(inner, self, incident)

    async def probed(self, incident: Incident, findings: Sequence[Finding]) -> None:
        """The confirmation probe reported: page now, or (a blip) defer the page by ``blip_grace``."""
        if not findings:
            return
        now = self.clock()
        found = probe_reading(incident, findings)
        blip = any(f.kind in BLIP_KINDS for f in findings)
        overrides = await self.store.overrides(now)
        thread = await self.thread_link(incident.id)
        async with self.store.transaction() as tx:
            await tx.lock_group(incident.key)
            paging = await tx.get_paging(incident.id)
            current = await tx.get_incident(incident.id)
            if paging is None or current is None or paging.state != "waiting":
                return
            if current.state is not IncidentState.TRIGGERED:
                return
            await tx.cancel_timers(incident.id, now)
            if not blip:
                await self._first_page(tx, _Moment(current, paging, now, overrides, found, thread), "opened")
                return
            due = now + self.options.blip_grace
            await tx.schedule_timer(self._timer(incident.id, 0, due, now))
            await tx.save_paging(paging.model_copy(update={"found": {**found, "blip": True}, "updated_at": now}))
            text = (
                "🔕 Not paging yet: the confirmation probe found the site answering (a blip?). If the incident "
                f"is still open and unacknowledged at {due:%H:%M} UTC (in {format_duration(self.options.blip_grace)}), "
                "the on-call person is paged."
            )
            await tx.add_event(_event(incident.id, now, "page_deferred", text, until=due.isoformat()))
            await self.announce.say(tx, current, "post", now, {"text": text})

    async def diagnosed(self, incident_id: str, diagnosis: Diagnosis | None) -> None:
        """The diagnosis is done (None: it failed). A waiting incident (no probe, or none reported) is
        paged now; a paged one's escalations carry the new finding, and PagerDuty hears of a new top
        cause (the same dedup key: PagerDuty adds it to the alert, nobody is notified again)."""
        now = self.clock()
        incident = await self.store.get_incident(incident_id)
        if incident is None:
            return
        overrides = await self.store.overrides(now)
        thread = await self.thread_link(incident.id)
        async with self.store.transaction() as tx:
            await tx.lock_group(incident.key)
            paging = await tx.get_paging(incident.id)
            current = await tx.get_incident(incident.id)
            if paging is None or current is None:
                return
            found = found_so_far(diagnosis, "diagnosis") if diagnosis is not None else paging.found
            found = found or found_so_far(None, "none")
            if paging.found.get("blip"):
                found = {**found, "blip": True}
            waiting = paging.state == "waiting" and not paging.found.get("blip")
            if waiting and current.state is IncidentState.TRIGGERED:
                await tx.cancel_timers(incident.id, now)
                await self._first_page(tx, _Moment(current, paging, now, overrides, found, thread), "opened")
                return
            await tx.save_paging(paging.model_copy(update={"found": found, "updated_at": now}))
            before = (paging.found.get("cause") or {}).get("id")
            after = (found.get("cause") or {}).get("id")
            if (
                paging.state == "paged"
                and paging.pagerduty
                and current.state is IncidentState.TRIGGERED
                and after is not None
                and after != before
            ):
                count = 1 + len(await tx.storm_followers(incident.id))
                event = pagerduty_event(
                    "trigger", current, at=now, found=found, severity=self.options.severity, count=count, thread=thread
                )
                await tx.enqueue_message(self._message(current, PAGERDUTY, now, {"pagerduty": event}))

    async def fire(self, timer: ClaimedTimer) -> str:
        """Page what a due timer says, if this worker still holds it and the incident still needs it:
        ``paged`` (a first page), ``escalated``, ``folded`` (into a storm's page), or ``lost``
        (cancelled, or taken by another worker), ``stale`` (acknowledged, resolved, superseded), ``gone``."""
        now = self.clock()
        incident = await self.store.get_incident(timer.incident_id)
        if incident is None:
            async with self.store.transaction() as tx:
                fired = await tx.fire_timer(timer.id, timer.worker, now)
            return "gone" if fired else "lost"
        overrides = await self.store.overrides(now)
        diagnosis = await self.store.get_diagnosis(incident.id)
        thread = await self.thread_link(incident.id)
        async with self.store.transaction() as tx:
            await tx.lock_group(incident.key)
            if not await tx.fire_timer(timer.id, timer.worker, now):
                return "lost"
            current = await tx.get_incident(incident.id)
            paging = await tx.get_paging(incident.id)
            if current is None or paging is None or current.state is not IncidentState.TRIGGERED:
                return "stale"
            found = paging.found or found_so_far(None, "none")
            read = read_diagnosis(diagnosis)
            if read is not None:
                found = {**found_so_far(read, "diagnosis"), **({"blip": True} if paging.found.get("blip") else {})}
            if timer.level == 0 and paging.state in ("waiting", "folded", "unpaged"):
                if paging.state == "folded" and await self._storm_open(tx, paging):
                    return "stale"
                moment = _Moment(current, paging, now, overrides, found, thread)
                if paging.state == "folded" and paging.storm_of is not None:
                    siblings = [f for f in await tx.storm_followers(paging.storm_of) if f.incident_id != current.id]
                    moment = _Moment(current, paging, now, overrides, found, thread, joining=len(siblings))
                if paging.found.get("blip"):
                    reason = "blip"
                elif paging.state == "folded":
                    reason = "promoted"
                elif paging.round > 1:
                    reason = "reopened"
                else:
                    reason = "fallback" if current.routed else "opened"
                return await self._first_page(tx, moment, reason)
            if paging.state == "paged" and timer.level == paging.level + 1:
                await self._page(tx, _Moment(current, paging, now, overrides, found, thread), timer.level, "timeout")
                return "escalated"
            return "stale"

    async def escalate(self, incident: Incident, actor: Actor) -> str:
        """The Escalate button: page the next level now (level 0 when nobody was paged yet); returns
        what was done, for the thread (ChatOps records the escalation itself)."""
        now = self.clock()
        overrides = await self.store.overrides(now)
        diagnosis = await self.store.get_diagnosis(incident.id)
        thread = await self.thread_link(incident.id)
        levels = self.rota.policy(incident.service)
        if not levels:
            return f"no escalation policy for {incident.service or 'unrouted incidents'}"
        async with self.store.transaction() as tx:
            await tx.lock_group(incident.key)
            current = await tx.get_incident(incident.id)
            if current is None or not current.open:
                return "the incident is resolved"
            paging = await tx.get_paging(incident.id) or Paging(
                incident_id=incident.id, service=incident.service, updated_at=now
            )
            read = read_diagnosis(diagnosis)
            found = found_so_far(read, "diagnosis") if read is not None else paging.found or found_so_far(None, "none")
            paged = paging.state in ("paged", "acknowledged") and paging.level >= 0
            level = paging.level + 1 if paged else 0
            if level >= len(levels):
                last = levels[-1]
                return f"no further level: level {len(levels)} of {len(levels)} ({last.label}) was the last"
            await tx.cancel_timers(incident.id, now)
            moment = _Moment(current, paging, now, overrides, found, thread)
            triggered = current.state is IncidentState.TRIGGERED
            return await self._page(tx, moment, level, "manual", by=actor.label, schedule_next=triggered)

    async def rejected(self, message: OutboxMessage, incident: Incident, error: ChatError) -> None:
        """A page target refused a message for good: say so on the timeline and in the thread."""
        if message.target not in PAGE_TARGETS:
            return
        now = self.clock()
        if message.target == PAGERDUTY:
            action = (message.payload.get("pagerduty") or {}).get("event_action", "an")
            what = f"PagerDuty refused the {action} event"
        else:
            person = (message.payload.get("dm") or {}).get("person", "?")
            platform = "Slack" if message.target == SLACK_DM else "Telegram"
            what = f"{platform} refused the direct message to {person}"
        text = f"⚠️ {what}: {_clip(error.detail, 400)}"
        async with self.store.transaction() as tx:
            data = {"target": message.target, "code": error.code, "message": message.id}
            await tx.add_event(_event(incident.id, now, "page_failed", text, **data))
            await self.announce.say(tx, incident, "post", now, {"text": text})

    # -- on call: who, and overrides ----------------------------------------------------------------

    async def oncall(self, actor: Actor, args: tuple[str, ...]) -> list[Block]:
        """``oncall``: who is on call now and until when; ``oncall override @user 2h [SCHEDULE]``: put
        someone on call (only people of ``oncall.people`` may)."""
        now = self.clock()
        if not args or args[0].lower() in ("now", "who"):
            return oncall_blocks(self.rota, await self.store.overrides(now), now)
        if args[0].lower() != "override":
            raise ChatUsageError("usage: oncall | oncall override @user DURATION [SCHEDULE]")
        if len(args) not in (3, 4):
            raise ChatUsageError("usage: oncall override @user DURATION [SCHEDULE] (e.g. oncall override @ana 2h)")
        asker = self.rota.person_of(actor.platform, actor.user)
        if asker is None:
            refusal = f"Sorry {actor.name}, only people of the on-call rotation (oncall.people) may set overrides."
            return [Section(refusal)]
        override = await add_override(
            self.store, self.rota, args[1], args[2], schedule=args[3] if len(args) == 4 else None, start=now,
            by=f"{asker.name} ({actor.platform})", now=now,
        )  # fmt: skip
        schedule = self.rota.schedules[override.schedule]
        return [
            Section(
                f"✅ {self.rota.people[override.person].label} is on call for {override.schedule} from "
                f"{local(override.starts_at, schedule)} until {local(override.ends_at, schedule)}."
            ),
            Context(f"Set by {override.created_by}. Everyone sees it: it is kept in the bot's store."),
        ]

    # -- paging --------------------------------------------------------------------------------------

    async def _storm_open(self, tx: Transaction, paging: Paging) -> bool:
        """Whether the page a folded incident belongs to still stands (its incident open and paged)."""
        if paging.storm_of is None:
            return False
        leader = await tx.get_paging(paging.storm_of)
        leader_incident = await tx.get_incident(paging.storm_of)
        return (
            leader is not None
            and leader_incident is not None
            and leader_incident.open
            and leader.state in ("paged", "acknowledged")
        )

    async def _first_page(self, tx: Transaction, moment: _Moment, reason: str) -> str:
        """Page level 0, unless another incident of the service was paged within the storm window."""
        service = moment.incident.service
        if service is not None:
            leader = await tx.storm_leader(service, moment.now - self.options.storm_window)
            if leader is not None and leader.incident_id != moment.incident.id:
                leader_incident = await tx.get_incident(leader.incident_id)
                if leader_incident is not None and leader_incident.open:
                    await self._fold(tx, moment, leader_incident)
                    return "folded"
        await self._page(tx, moment, 0, reason)
        return "paged"

    async def _fold(self, tx: Transaction, moment: _Moment, leader: Incident) -> None:
        """Fold the incident's first page into the storm's page (``leader``): both threads say so."""
        incident, paging, now, found = moment.incident, moment.paging, moment.now, moment.found
        others = [f for f in await tx.storm_followers(leader.id) if f.incident_id != incident.id]
        count = 2 + len(others)
        window = format_duration(self.options.storm_window)
        where = incident.service or "?"
        await tx.save_paging(
            paging.model_copy(update={"state": "folded", "storm_of": leader.id, "found": found, "updated_at": now})
        )
        who = leader.oncall or "the on-call person"
        here = (
            f"🔕 Not paging: part of a storm on {where}: #{leader.id} already paged {who} "
            f"({count} incidents within {window})."
        )
        await tx.add_event(_event(incident.id, now, "note", here, storm_of=leader.id, count=count))
        await self.announce.say(tx, incident, "post", now, {"text": here})
        status = f"HTTP {incident.status}" if incident.status is not None else "an error"
        there = f"🌩 #{incident.id} ({status}) opened on {where} too: {count} incidents within {window}; no new page."
        await tx.add_event(_event(leader.id, now, "note", there, follower=incident.id, count=count))
        await self.announce.say(tx, leader, "post", now, {"text": there})

    async def _page(
        self, tx: Transaction, moment: _Moment, index: int, reason: str, *, by: str | None = None,
        schedule_next: bool = True,
    ) -> str:  # fmt: skip
        """Page level ``index`` (or the next one with someone on call) and store the next level's timer."""
        incident, paging, now, found, thread = moment.incident, moment.paging, moment.now, moment.found, moment.thread
        overrides = moment.overrides
        levels = self.rota.policy(incident.service)
        if not levels:
            text = f"Nobody paged: no escalation policy for {incident.service or 'unrouted incidents'}"
            await tx.save_paging(paging.model_copy(update={"state": "unpaged", "found": found, "updated_at": now}))
            await tx.add_event(_event(incident.id, now, "note", text))
            return text
        skipped: list[str] = []
        people: list[Person] = []
        while index < len(levels):
            people = self.rota.targets(levels[index], now, overrides)
            if people:
                break
            skipped.append(f"level {index + 1} ({levels[index].label})")
            index += 1
        if not people:
            text = f"⚠️ Nobody to page: nobody is on call at {', '.join(skipped)}"
            if paging.level < 0:
                await tx.save_paging(paging.model_copy(update={"state": "unpaged", "found": found, "updated_at": now}))
            await tx.add_event(_event(incident.id, now, "page_failed", text))
            await self.announce.say(tx, incident, "post", now, {"text": text})
            return text
        level = levels[index]
        count = 1 + len(await tx.storm_followers(incident.id)) + moment.joining
        following = levels[index + 1] if index + 1 < len(levels) and schedule_next else None
        via = {p.name: self._ways(p) for p in people}
        page: dict[str, Any] = {
            "incident": incident.id,
            "service": incident.service,
            "status": incident.status,
            "title": incident.title,
            "reason": reason,
            "by": by,
            "level": index + 1,
            "levels": len(levels),
            "level_label": level.label,
            "skipped": skipped,
            "people": [p.label for p in people],
            "via": sorted({way for ways in via.values() for way in ways}),
            "found": found,
            "count": count,
            "next": (
                {"level": index + 2, "label": following.label, "after": level.after.total_seconds()}
                if following is not None
                else None
            ),
            "thread": thread,
        }
        await self.announce.say(tx, incident, "post", now, {"page": page, "mentions": [_mention(p) for p in people]})
        for person in people:
            for target, user in ((SLACK_DM, person.slack), (TELEGRAM_DM, person.telegram)):
                if user and target in self.options.direct:
                    payload = {"dm": {"user": user, "person": person.label}, "page": page}
                    await tx.enqueue_message(self._message(incident, target, now, payload))
        pagerduty = paging.pagerduty
        if self.options.pagerduty and not pagerduty and any(p.pagerduty for p in people):
            severity = "warning" if reason == "blip" else self.options.severity
            event = pagerduty_event(
                "trigger", incident, at=now, found=found, severity=severity, count=count, thread=thread
            )
            await tx.enqueue_message(self._message(incident, PAGERDUTY, now, {"pagerduty": event}))
            pagerduty = True
        names = ", ".join(p.label for p in people)
        shown = incident.model_copy(update={"oncall": names})
        await tx.save_incident(shown)
        await self.announce.say(tx, shown, "updated", now)
        summary = f"level {index + 1} of {len(levels)} ({level.label}): {names}"
        if reason != "manual":  # ChatOps writes the manual escalation on the timeline itself
            ways = "; ".join(f"{name} via {', '.join(w) or 'the thread only'}" for name, w in via.items())
            if reason == "timeout":
                waited = levels[paging.level].after if 0 <= paging.level < len(levels) else levels[index - 1].after
                text = f"escalated to {summary}: not acknowledged after {format_duration(waited)}"
            else:
                text = f"paged {summary}"
            text += f" ({ways}); {cause_line(found)}"
            await tx.add_event(
                _event(incident.id, now, "escalated" if reason == "timeout" else "paged", text, level=index + 1,
                       people=[p.name for p in people], reason=reason, count=count)
            )  # fmt: skip
        if following is not None:
            await tx.schedule_timer(self._timer(incident.id, index + 1, now + level.after, now))
        still = paging.state in ("paged", "acknowledged") and paging.paged_at is not None
        state = "acknowledged" if incident.state is IncidentState.ACKNOWLEDGED else "paged"
        await tx.save_paging(
            paging.model_copy(
                update={
                    "state": state,
                    "level": index,
                    "paged_at": paging.paged_at if still else now,
                    "storm_of": None,
                    "pagerduty": pagerduty,
                    "found": found,
                    "updated_at": now,
                }
            )
        )
        return f"paged {summary}"

    def _ways(self, person: Person) -> list[str]:
        ways = []
        if person.slack and SLACK_DM in self.options.direct:
            ways.append("Slack DM")
        if person.telegram and TELEGRAM_DM in self.options.direct:
            ways.append("Telegram DM")
        if person.pagerduty and self.options.pagerduty:
            ways.append("PagerDuty")
        return ways

    @staticmethod
    def _timer(incident_id: str, level: int, due: datetime, now: datetime) -> EscalationTimer:
        return EscalationTimer(id=uuid.uuid4().hex, incident_id=incident_id, level=level, due_at=due, created_at=now)

    @staticmethod
    def _message(incident: Incident, target: str, at: datetime, payload: dict[str, Any]) -> OutboxMessage:
        return OutboxMessage.model_validate(
            {
                "id": uuid.uuid4().hex,
                "incident_id": incident.id,
                "kind": "post",
                "created_at": at,
                "payload": payload,
                "target": target,
            }
        )


class PagingReporter:
    """Passes the probe's and each host's findings on to the thread's reporter, then tells the pager the
    probe reported (a paging failure is logged: the incident's level-0 timer pages it later anyway)."""

    def __init__(self, inner: Reporter, pager: Pager, incident: Incident) -> None:
        self.inner = inner
        self.pager = pager
        self.incident = incident

    async def probe(self, findings: list[Finding]) -> None:
        await self.inner.probe(findings)
        try:
            await self.pager.probed(self.incident, findings)
        except Exception:
            log.exception("paging incident %s after its probe failed; its timer pages it later", self.incident.id)

    async def host(self, host: str, findings: list[Finding]) -> None:
        await self.inner.host(host, findings)


# ------------------------------------------------------------------------------- who is on call


def local(at: datetime, schedule: Schedule) -> str:
    """``Mon 2026-03-30 09:00 CEST`` in the schedule's time zone."""
    return f"{at.astimezone(schedule.zone):%a %Y-%m-%d %H:%M %Z}"


def oncall_now(rota: Rota, overrides: Sequence[Override], at: datetime) -> list[OnCallNow]:
    """Who is on call for every schedule at ``at``, and when that changes."""
    return [schedule.now(at, overrides) for schedule in rota.schedules.values()]


def _label(rota: Rota, name: str | None) -> str:
    if name is None:
        return "nobody"
    person = rota.people.get(name)
    return person.label if person is not None else name


def oncall_blocks(rota: Rota, overrides: Sequence[Override], at: datetime) -> list[Block]:
    """The chat answer to ``oncall``: each schedule's person now, until when, and who comes next."""
    blocks: list[Block] = [Header("On call")]
    if not rota.schedules:
        blocks.append(Section("No schedules are configured (oncall.schedules)."))
    for now in oncall_now(rota, overrides, at):
        schedule = rota.schedules[now.schedule]
        who = _label(rota, now.person)
        line = f"{now.schedule}: {who}" + (" (override)" if now.by == "override" else "")
        if now.until is not None:
            then = _label(rota, now.then)
            line += f" until {local(now.until, schedule)}, then {then}"
        blocks.append(Section(line))
    upcoming = [o for o in overrides if o.ends_at > at and o.schedule in rota.schedules]
    if upcoming:
        blocks.append(
            Context(
                "Overrides: "
                + "; ".join(
                    f"{o.person} on {o.schedule} {local(o.starts_at, rota.schedules[o.schedule])} → "
                    f"{local(o.ends_at, rota.schedules[o.schedule])}"
                    for o in upcoming
                )
            )
        )
    return blocks


async def add_override(
    store: Store,
    rota: Rota,
    who: str,
    duration: str,
    *,
    schedule: str | None,
    start: datetime,
    by: str,
    now: datetime,
) -> Override:
    """Store an override: ``who`` (a name, ``@name``, a Slack mention) on call for ``duration`` from
    ``start`` on ``schedule`` (unless named: the only schedule, or the only one they belong to).
    UsageError, saying why, for an unknown person or schedule or a bad duration."""
    person = rota.find(who)
    if person is None:
        raise UsageError(f"{who[:60]!r} is not a person of oncall.people")
    try:
        length = parse_duration(duration)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if length > MAX_OVERRIDE:
        raise UsageError(f"an override lasts at most {MAX_OVERRIDE.days} days")
    if schedule is None:
        mine = [name for name, s in rota.schedules.items() if any(person.name in layer.members for layer in s.layers)]
        if len(rota.schedules) == 1:
            schedule = next(iter(rota.schedules))
        elif len(mine) == 1:
            schedule = mine[0]
        else:
            raise UsageError(f"say which schedule: one of {', '.join(sorted(rota.schedules)) or '(none configured)'}")
    if schedule not in rota.schedules:
        raise UsageError(f"no schedule {schedule[:60]!r}; schedules: {', '.join(sorted(rota.schedules))}")
    override = Override(
        id=uuid.uuid4().hex,
        schedule=schedule,
        person=person.name,
        starts_at=start,
        ends_at=start + length,
        created_at=now,
        created_by=by,
    )
    await store.add_override(override)
    log.info("on-call override: %s on %s until %s (by %s)", person.name, schedule, override.ends_at, by)
    return override
