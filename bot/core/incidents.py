"""Incidents and what happens to them: the records the store keeps and the service works on.

An incident groups the alerts of one service and status class for as long as any of them fires
(``key``). Its life: triggered → acknowledged → resolved; every change is a timeline event. Alerts are
remembered by fingerprint so repeats and HA duplicates are recognised; diagnosis jobs and chat messages
are queued in the same transaction as the change that causes them (the outbox), so nothing said about
an incident is lost or said twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from bot.core.models import Alert


class IncidentState(StrEnum):
    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Incident(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    key: str
    service: str | None
    routed: bool
    status: int | None
    state: IncidentState = IncidentState.TRIGGERED
    title: str = ""
    url: str | None = None
    opened_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    resolved_at: datetime | None = None
    alert_count: int = 0
    #: Who was paged last (names, for the status card); None until someone is paged.
    oncall: str | None = None

    @property
    def open(self) -> bool:
        return self.state is not IncidentState.RESOLVED


EventKind = Literal[
    "opened",
    "reopened",
    "alert_firing",
    "alert_repeated",
    "alert_resolved",
    "acknowledged",
    "resolved",
    "diagnosis_queued",
    "diagnosis_done",
    "diagnosis_failed",
    "escalated",
    "refused",
    "note",
    "paged",
    "page_deferred",
    "page_failed",
    "delivery_degraded",  # a chat target keeps failing for this incident (bot/core/delivery.py)
    "delivery_restored",
    "approval_requested",
    "approved",
    "denied",
    "approval_expired",
    "action_done",
    "action_failed",
]


class TimelineEvent(BaseModel):
    model_config = ConfigDict(frozen=True)

    incident_id: str
    at: datetime
    kind: EventKind
    text: str
    actor: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class StoredAlert(BaseModel):
    """What the store remembers of an alert: enough to recognise repeats and resolutions."""

    model_config = ConfigDict(frozen=True)

    fingerprint: str
    source: str
    state: Literal["firing", "resolved"]
    incident_id: str | None
    status: int | None
    first_seen: datetime
    last_seen: datetime
    repeats: int = 0


class Job(BaseModel):
    """A diagnosis to run for an incident; claimed by one worker at a time under a lease."""

    model_config = ConfigDict(frozen=True)

    id: str
    incident_id: str
    kind: Literal["diagnose"] = "diagnose"
    created_at: datetime


class OutboxMessage(BaseModel):
    """Something to say about an incident, delivered later by the sender of its chat target.

    ``target`` names the sender (``slack``, ``telegram``, ``console``; empty: the outbox's default).
    Messages of one incident to one target are delivered in the order queued.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    incident_id: str
    kind: Literal["opened", "updated", "resolved", "post"]
    created_at: datetime
    payload: dict[str, Any] = Field(default_factory=dict)
    target: str = ""


class ChatThread(BaseModel):
    """Where an incident's thread lives on one chat target, written by that target's sender.

    ``channel`` is the Slack channel id (as the API returned it) or the Telegram chat id; ``root`` the
    Slack ``ts`` of the status card or the Telegram ``message_id`` of the status message (as text);
    ``topic`` the Telegram forum topic (``message_thread_id``) when the incident has one.
    """

    model_config = ConfigDict(frozen=True)

    incident_id: str
    target: str
    channel: str
    root: str
    topic: str | None = None
    created_at: datetime


PagingState = Literal["waiting", "paged", "acknowledged", "resolved", "folded", "unpaged"]


class Paging(BaseModel):
    """Where paging an incident stands (one per incident; ``services/paging``).

    ``waiting``: opened, not paged yet (the confirmation probe, or a blip's grace, comes first);
    ``paged``: ``level`` (0-based, of ``policy``) was paged at ``paged_at`` and escalation timers run;
    ``acknowledged``/``resolved``: timers stopped; ``folded``: part of a storm, covered by the page of
    incident ``storm_of``; ``unpaged``: there was nobody to page. ``round`` counts the times the incident
    was paged from the first level (a reopened incident starts a new round); ``pagerduty`` says PagerDuty
    was triggered in this round (so an acknowledgement or resolution is sent there too); ``found`` is what
    the diagnosis had found when it was last paged (what escalations repeat while no diagnosis is stored).
    """

    model_config = ConfigDict(frozen=True)

    incident_id: str
    service: str | None
    state: PagingState = "waiting"
    round: int = 1
    level: int = -1
    paged_at: datetime | None = None
    storm_of: str | None = None
    pagerduty: bool = False
    found: dict[str, Any] = Field(default_factory=dict)
    updated_at: datetime


class EscalationTimer(BaseModel):
    """Page ``level`` of the incident's escalation policy at ``due_at`` unless the timer is cancelled first
    (an acknowledgement or a resolution cancels every pending timer of the incident). Stored, so timers
    survive restarts; claimed under a lease like jobs, so one fires once whatever the number of replicas."""

    model_config = ConfigDict(frozen=True)

    id: str
    incident_id: str
    level: int
    due_at: datetime
    created_at: datetime


Outcome = Literal["opened", "reopened", "joined", "duplicate", "resolved_alert", "resolved_incident", "ignored"]


@dataclass(frozen=True)
class AlertResult:
    fingerprint: str
    outcome: Outcome
    incident_id: str | None


@dataclass
class IngestReport:
    results: list[AlertResult] = field(default_factory=list)

    @property
    def opened(self) -> list[str]:
        return [r.incident_id for r in self.results if r.outcome == "opened" and r.incident_id]


class Intake(Protocol):
    """Where the HTTP adapter hands decoded alerts: answers only after they are committed."""

    async def ingest(self, alerts: Sequence[Alert]) -> IngestReport: ...
