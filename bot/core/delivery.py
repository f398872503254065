"""Delivery health: whether what the bot says about an incident is reaching each chat target.

A chat target (``slack``, ``telegram``, ``pagerduty``, ``slack_dm``…) whose messages about an incident keep
failing with a retryable error (5xx, network, 429) is **degraded** for that incident: the outbox worker
writes one ``delivery_degraded`` event on the incident's timeline once the head message first failed at
least :attr:`DegradedAfter.seconds` ago and the target has failed at least :attr:`DegradedAfter.failures`
times since (both, so a blip the backoff rides out in a few seconds is not an event), and one
``delivery_restored`` event when a message of that incident reaches that target again
(``services/delivery_health``). Nothing else stores the state:
it is read back from the timeline, the last of the two events per target winning
(:func:`delivery_report`), with the messages still waiting counted from the outbox. The status card shows
the other targets' trouble (:func:`degraded_line`), the HTTP API and ``incidents show`` the whole report.

Event data, as written and read here: ``target``, ``since`` (ISO time the failing began), ``error`` (the
failure, redacted and clipped), ``code`` (its error code), ``failures``, ``waiting`` (messages waiting);
a restored event has ``target``, ``since`` (of the degradation), ``lasted`` (seconds) and ``waiting``
(messages that were held back and now go out).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.core.incidents import OutboxMessage, TimelineEvent

DEGRADED, RESTORED = "delivery_degraded", "delivery_restored"

#: How chat targets are named to people (a target not listed shows its own name).
TARGET_LABELS: Mapping[str, str] = {
    "slack": "Slack",
    "telegram": "Telegram",
    "pagerduty": "PagerDuty",
    "slack_dm": "Slack DM",
    "telegram_dm": "Telegram DM",
    "console": "Console",
}

#: The key of messages queued for the outbox's default target (``target`` empty).
DEFAULT_TARGET = "default"


@dataclass(frozen=True)
class DegradedAfter:
    """When a target counts as degraded for an incident: the incident's head message first failed at least
    ``seconds`` ago, and the target has failed ``failures`` times since, with nothing delivered to it."""

    failures: int = 3
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.failures < 1 or self.seconds < 0:
            raise ValueError(f"invalid degraded-delivery threshold {self!r}")

    def reached(self, failures: int, failing_for: timedelta) -> bool:
        return failures >= self.failures and failing_for.total_seconds() >= self.seconds


#: The threshold ``serve`` uses: three failures over at least thirty seconds.
DEGRADED_AFTER = DegradedAfter()


class TargetDelivery(BaseModel):
    """How delivery to one chat target stands for one incident.

    ``state`` is ``degraded`` from a ``delivery_degraded`` event until a ``delivery_restored`` one;
    ``since`` is when the failing began (degraded) or when it was restored (ok; None if it never failed);
    ``waiting`` counts the incident's messages to the target not delivered yet; ``last_error`` is the
    failure the last ``delivery_degraded`` event recorded (kept after a restore, as history).
    """

    model_config = ConfigDict(frozen=True)

    target: str
    label: str
    state: Literal["ok", "degraded"] = "ok"
    since: datetime | None = None
    waiting: int = 0
    last_error: str | None = None


def label(target: str) -> str:
    return TARGET_LABELS.get(target, target or "chat")


def _time(value: object, default: datetime) -> datetime:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return default
        return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=default.tzinfo)
    return default


def _target_of(event: TimelineEvent) -> str | None:
    target = event.data.get("target")
    return target if isinstance(target, str) and target else None


def delivery_report(
    incident_id: str, events: Iterable[TimelineEvent], pending: Iterable[OutboxMessage] = ()
) -> dict[str, TargetDelivery]:
    """Per target, how delivery stands for the incident: every target with a delivery event, and every
    target with messages of the incident still waiting (``pending``: undelivered outbox messages, of any
    incident; ``target`` empty counts as :data:`DEFAULT_TARGET`). Targets with neither are left out."""
    report: dict[str, TargetDelivery] = {}
    for event in events:
        target = _target_of(event) if event.kind in (DEGRADED, RESTORED) else None
        if target is None:
            continue
        if event.kind == DEGRADED:
            error = event.data.get("error")
            report[target] = TargetDelivery(
                target=target,
                label=label(target),
                state="degraded",
                since=_time(event.data.get("since"), event.at),
                last_error=error if isinstance(error, str) else None,
            )
        else:
            before = report.get(target)
            report[target] = TargetDelivery(
                target=target, label=label(target), since=event.at, last_error=before.last_error if before else None
            )
    waiting: dict[str, int] = {}
    for message in pending:
        if message.incident_id == incident_id:
            key = message.target or DEFAULT_TARGET
            waiting[key] = waiting.get(key, 0) + 1
    for target, count in waiting.items():
        known = report.get(target) or TargetDelivery(target=target, label=label(target))
        report[target] = known.model_copy(update={"waiting": count})
    return dict(sorted(report.items()))


def degraded_targets(events: Iterable[TimelineEvent]) -> dict[str, TargetDelivery]:
    """The targets the timeline says are degraded now (no outbox counts)."""
    return {t: d for t, d in delivery_report("", events).items() if d.state == "degraded"}


def clock_time(at: datetime) -> str:
    """``10:02 UTC``: the time of day a card or event names (in the time's own zone)."""
    return at.strftime("%H:%M %Z").strip()


def degraded_line(delivery: TargetDelivery) -> str:
    """The status card's line for a degraded target: ``⚠ Slack delivery delayed since 10:02 UTC``."""
    since = f" since {clock_time(delivery.since)}" if delivery.since is not None else ""
    return f"⚠ {delivery.label} delivery delayed{since}"


def _messages(count: int) -> str:
    return f"{count} message{'s' if count != 1 else ''}"


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{seconds:02d}s" if minutes else f"{seconds}s"


def degraded_event(
    incident_id: str, *, at: datetime, target: str, since: datetime, error: str, code: str, failures: int, waiting: int
) -> TimelineEvent:
    """``Slack delivery delayed since 10:02 UTC: Slack chat.postMessage: HTTP 503; 7 messages waiting``."""
    text = f"{label(target)} delivery delayed since {clock_time(since)}: {error}; {_messages(waiting)} waiting"
    data = {"target": target, "since": since.isoformat(), "error": error, "code": code, "failures": failures,
            "waiting": waiting}  # fmt: skip
    return TimelineEvent(incident_id=incident_id, at=at, kind="delivery_degraded", text=text, data=data)


def restored_event(incident_id: str, *, at: datetime, target: str, since: datetime, waiting: int) -> TimelineEvent:
    """``Slack delivery restored after 10m05s; 7 messages held back go out now, in order``."""
    held = f"; {_messages(waiting)} held back go out now, in order" if waiting else ""
    text = f"{label(target)} delivery restored after {_duration(at - since)}{held}"
    data = {"target": target, "since": since.isoformat(), "lasted": round((at - since).total_seconds(), 3),
            "waiting": waiting}  # fmt: skip
    return TimelineEvent(incident_id=incident_id, at=at, kind="delivery_restored", text=text, data=data)
