"""The incident use case: alerts in, one incident per service and status class, a timeline, and the
jobs and messages an opening or a resolution causes — all decided inside one store transaction.

Rules (DESIGN §2, serve issue item 3):

- an alert's first ``firing`` joins the group's open incident, or reopens the group's incident
  resolved within the flapping window, or opens a new one (which queues a diagnosis and an
  "opened" message);
- the same firing alert again (repeat notifications, retries, HA peers) changes nothing visible;
- a ``resolved`` for an alert never seen firing opens nothing;
- when the last firing alert of an incident resolves, the incident resolves (and says so).

A person acts on an incident too: :meth:`IncidentService.acknowledge` (triggered → acknowledged; again
is a no-op answer) and :meth:`IncidentService.resolve` (a manual resolution; an alert still firing
reopens or re-opens the group as any new firing would). Each takes the group's lock, records the actor
on the timeline and queues the message in the same transaction.

Routing is injected: ``route(alert)`` names the service (or None: unrouted), ``group(alert, service)``
the incident group key.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol

from bot.core.incidents import (
    AlertResult,
    Incident,
    IncidentState,
    IngestReport,
    Job,
    Outcome,
    StoredAlert,
    TimelineEvent,
)
from bot.core.models import Alert
from bot.core.store import Store, Transaction
from bot.services.announce import Announcer

log = logging.getLogger(__name__)


def _new_id() -> str:
    return uuid.uuid4().hex


ActionOutcome = Literal["acknowledged", "already_acknowledged", "resolved", "already_resolved", "not_found"]


@dataclass(frozen=True)
class ActionResult:
    """What a person's action did: ``incident`` is the incident after it (None when not found)."""

    outcome: ActionOutcome
    incident: Incident | None

    @property
    def changed(self) -> bool:
        return self.outcome in ("acknowledged", "resolved")


class IncidentHooks(Protocol):
    """What else happens, inside the same transaction, when an incident opens, reopens, is acknowledged
    or resolves (paging: ``bot.services.paging.Pager``)."""

    async def opened(self, tx: Transaction, incident: Incident, now: datetime) -> None: ...

    async def reopened(self, tx: Transaction, incident: Incident, now: datetime) -> None: ...

    async def acknowledged(self, tx: Transaction, incident: Incident, actor: str, now: datetime) -> None: ...

    async def resolved(self, tx: Transaction, incident: Incident, now: datetime) -> None: ...


class IncidentService:
    def __init__(
        self,
        store: Store,
        *,
        route: Callable[[Alert], str | None],
        group: Callable[[Alert, str | None], str],
        clock: Callable[[], datetime],
        flap_window: timedelta = timedelta(minutes=5),
        announce: Announcer | None = None,
        hooks: IncidentHooks | None = None,
    ) -> None:
        self.store = store
        self.announce = announce or Announcer()
        self.hooks = hooks
        self.route = route
        self.group = group
        self.clock = clock
        self.flap_window = flap_window

    async def ingest(self, alerts: Sequence[Alert]) -> IngestReport:
        """Record every alert: one transaction per incident group of the delivery, which takes the group's
        lock once and applies the group's alerts in the order given; results come back in that order.

        Groups are stored one after the other, each transaction holding one group lock only, so they never
        wait for each other (nor deadlock with another delivery). When a group's transaction fails, its
        alerts are tried again one transaction each, in order, stopping at the first that fails again: an
        alert the store refuses costs only itself and the alerts after it in its group (as when every alert
        had its own transaction), and a transient failure, such as a connection the database dropped, is
        retried once. The other groups are stored all the same. If an alert is left unstored, the first
        error is raised once every group has been tried: the caller answers 503 and the sender's retry finds
        the stored alerts as duplicates."""
        by_group: dict[str, list[tuple[int, Alert, str | None]]] = {}
        for index, alert in enumerate(alerts):
            service = self.route(alert)
            by_group.setdefault(self.group(alert, service), []).append((index, alert, service))
        results: dict[int, AlertResult] = {}
        failure: Exception | None = None
        for key, members in by_group.items():
            try:
                results.update(await self._store_group(key, members))
                continue
            except Exception:
                log.warning("storing %d alert(s) of group %s failed; trying them one by one", len(members), key,
                            exc_info=True)  # fmt: skip
            for member in members:
                try:
                    results.update(await self._store_group(key, [member]))
                except Exception as exc:
                    failure = failure or exc
                    break
        if failure is not None:
            raise failure
        return IngestReport(results=[results[index] for index in range(len(alerts))])

    async def _store_group(
        self, key: str, members: Sequence[tuple[int, Alert, str | None]]
    ) -> list[tuple[int, AlertResult]]:
        """Apply ``members`` (index, alert, service), alerts of group ``key``, in one transaction that holds
        the group's lock; their results by index once it has committed."""
        done: list[tuple[int, AlertResult]] = []
        async with self.store.transaction() as tx:
            await tx.lock_group(key)
            for index, alert, service in members:
                if alert.state == "resolved":
                    result = await self._resolved(tx, alert)
                else:
                    result = await self._firing(tx, alert, service, key)
                done.append((index, result))
        return done

    async def _firing(self, tx: Transaction, alert: Alert, service: str | None, key: str) -> AlertResult:
        now = self.clock()
        stored = await tx.get_alert(alert.fingerprint)
        incident = await tx.open_incident(key)
        if (
            stored is not None
            and stored.state == "firing"
            and incident is not None
            and stored.incident_id == incident.id
        ):
            await tx.save_alert(stored.model_copy(update={"last_seen": now, "repeats": stored.repeats + 1}))
            return AlertResult(alert.fingerprint, "duplicate", incident.id)
        outcome: Outcome
        if incident is not None:
            outcome = "joined"
            incident = incident.model_copy(update={"alert_count": incident.alert_count + 1})
            await tx.add_event(self._event(incident.id, now, "alert_firing", f"alert {self._name(alert)} firing"))
        else:
            recent = await tx.last_resolved(key, now - self.flap_window)
            if recent is not None:
                outcome = "reopened"
                incident = recent.model_copy(
                    update={
                        "state": IncidentState.TRIGGERED,
                        "resolved_at": None,
                        "alert_count": recent.alert_count + 1,
                    }
                )
                text = f"reopened: {self._name(alert)} fires again"
                await tx.add_event(self._event(incident.id, now, "reopened", text))
                await self.announce.say(tx, incident, "updated", now)
                await self.announce.say(
                    tx, incident, "post", now, {"text": f"Reopened: {self._name(alert)} fires again"}
                )
                if self.hooks is not None:
                    await self.hooks.reopened(tx, incident, now)
            else:
                outcome = "opened"
                number = await tx.next_incident_number()
                incident = Incident(
                    id=str(number),
                    key=key,
                    service=service,
                    routed=service is not None,
                    status=alert.status,
                    title=alert.summary or self._name(alert),
                    url=alert.url,
                    opened_at=now,
                    alert_count=1,
                )
                routed = f"service {service}" if service else "no service (unrouted: not diagnosed on any host)"
                await tx.add_event(self._event(incident.id, now, "opened", f"opened by {self._name(alert)}; {routed}"))
                if service is not None:
                    await tx.enqueue_job(Job(id=_new_id(), incident_id=incident.id, created_at=now))
                    await tx.add_event(self._event(incident.id, now, "diagnosis_queued", "diagnosis queued"))
                await self.announce.say(tx, incident, "opened", now)
                if self.hooks is not None:
                    await self.hooks.opened(tx, incident, now)
        await tx.save_incident(incident)
        first_seen = stored.first_seen if stored is not None else now
        await tx.save_alert(
            StoredAlert(
                fingerprint=alert.fingerprint,
                source=alert.source,
                state="firing",
                incident_id=incident.id,
                status=alert.status,
                first_seen=first_seen,
                last_seen=now,
            )
        )
        return AlertResult(alert.fingerprint, outcome, incident.id)

    async def _resolved(self, tx: Transaction, alert: Alert) -> AlertResult:
        now = self.clock()
        stored = await tx.get_alert(alert.fingerprint)
        if stored is None or stored.state == "resolved" or stored.incident_id is None:
            return AlertResult(alert.fingerprint, "ignored", stored.incident_id if stored else None)
        await tx.save_alert(stored.model_copy(update={"state": "resolved", "last_seen": now}))
        incident_id = stored.incident_id
        await tx.add_event(self._event(incident_id, now, "alert_resolved", f"alert {self._name(alert)} resolved"))
        still = [a for a in await tx.firing_alerts(incident_id) if a.fingerprint != alert.fingerprint]
        if still:
            return AlertResult(alert.fingerprint, "resolved_alert", incident_id)
        incident = await tx.get_incident(incident_id)
        if incident is None or not incident.open:
            return AlertResult(alert.fingerprint, "resolved_alert", incident_id)
        incident = incident.model_copy(update={"state": IncidentState.RESOLVED, "resolved_at": now})
        await tx.save_incident(incident)
        lasted = _duration(now - incident.opened_at)
        await tx.add_event(self._event(incident_id, now, "resolved", f"resolved: every alert cleared after {lasted}"))
        await self.announce.say(tx, incident, "resolved", now)
        await self.announce.say(tx, incident, "post", now, {"text": f"✅ Resolved: every alert cleared after {lasted}"})
        if self.hooks is not None:
            await self.hooks.resolved(tx, incident, now)
        return AlertResult(alert.fingerprint, "resolved_incident", incident_id)

    async def acknowledge(self, incident_id: str, actor: str) -> ActionResult:
        """triggered → acknowledged (by ``actor``); already acknowledged or resolved changes nothing."""

        async def ack(tx: Transaction, incident: Incident) -> ActionResult:
            if incident.state is IncidentState.ACKNOWLEDGED:
                return ActionResult("already_acknowledged", incident)
            now = self.clock()
            incident = incident.model_copy(
                update={"state": IncidentState.ACKNOWLEDGED, "acknowledged_at": now, "acknowledged_by": actor}
            )
            await tx.save_incident(incident)
            await tx.add_event(self._event(incident_id, now, "acknowledged", f"acknowledged by {actor}", actor))
            await self.announce.say(tx, incident, "updated", now)
            await self.announce.say(tx, incident, "post", now, {"text": f"Acknowledged by {actor}"})
            if self.hooks is not None:
                await self.hooks.acknowledged(tx, incident, actor, now)
            return ActionResult("acknowledged", incident)

        return await self._act(incident_id, ack)

    async def resolve(self, incident_id: str, actor: str) -> ActionResult:
        """Resolve an open incident by hand (``actor``); an already resolved one is left as it is."""

        async def close(tx: Transaction, incident: Incident) -> ActionResult:
            now = self.clock()
            incident = incident.model_copy(update={"state": IncidentState.RESOLVED, "resolved_at": now})
            await tx.save_incident(incident)
            lasted = _duration(now - incident.opened_at)
            await tx.add_event(self._event(incident_id, now, "resolved", f"resolved by {actor} after {lasted}", actor))
            await self.announce.say(tx, incident, "resolved", now)
            await self.announce.say(tx, incident, "post", now, {"text": f"✅ Resolved by {actor} after {lasted}"})
            if self.hooks is not None:
                await self.hooks.resolved(tx, incident, now)
            return ActionResult("resolved", incident)

        return await self._act(incident_id, close)

    async def _act(
        self, incident_id: str, change: Callable[[Transaction, Incident], Awaitable[ActionResult]]
    ) -> ActionResult:
        """Run ``change`` on an open incident inside a transaction holding its group's lock."""
        found = await self.store.get_incident(incident_id)
        if found is None:
            return ActionResult("not_found", None)
        async with self.store.transaction() as tx:
            await tx.lock_group(found.key)
            incident = await tx.get_incident(incident_id)
            if incident is None:
                return ActionResult("not_found", None)
            if incident.state is IncidentState.RESOLVED:
                return ActionResult("already_resolved", incident)
            return await change(tx, incident)

    @staticmethod
    def _name(alert: Alert) -> str:
        return alert.labels.get("alertname") or alert.fingerprint[:12]

    @staticmethod
    def _event(incident_id: str, at: datetime, kind: str, text: str, actor: str | None = None) -> TimelineEvent:
        return TimelineEvent.model_validate(
            {"incident_id": incident_id, "at": at, "kind": kind, "text": text, "actor": actor}
        )


def _duration(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"
