"""Delivery health read back from the timeline: the last degraded/restored event per target wins, waiting
messages are counted from the outbox per target, the threshold needs both the failures and the time, and
the events and the card line read as a person expects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.core.delivery import (
    DEGRADED_AFTER,
    DegradedAfter,
    TargetDelivery,
    degraded_event,
    degraded_line,
    degraded_targets,
    delivery_report,
    restored_event,
)
from bot.core.incidents import OutboxMessage, TimelineEvent

T0 = datetime(2026, 11, 30, 10, 2, 13, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def degraded(
    target: str, seconds: float, *, since: float = 0.0, error: str = "Slack chat.postMessage: HTTP 503"
) -> TimelineEvent:
    return degraded_event(
        "1", at=at(seconds), target=target, since=at(since), error=error, code="chat_transient", failures=3, waiting=7
    )


def restored(target: str, seconds: float, *, since: float = 0.0) -> TimelineEvent:
    return restored_event("1", at=at(seconds), target=target, since=at(since), waiting=7)


def pending(incident_id: str, target: str, n: int) -> OutboxMessage:
    body: dict[str, Any] = {"id": f"{incident_id}-{target}-{n}", "incident_id": incident_id, "kind": "post",
                            "created_at": T0, "target": target}  # fmt: skip
    return OutboxMessage.model_validate(body)


def test_a_degraded_event_makes_the_target_degraded_since_the_first_failure_with_its_error() -> None:
    report = delivery_report("1", [degraded("slack", 31)])
    assert report == {
        "slack": TargetDelivery(
            target="slack", label="Slack", state="degraded", since=T0, waiting=0,
            last_error="Slack chat.postMessage: HTTP 503",
        )
    }  # fmt: skip


def test_the_last_event_per_target_wins_and_targets_do_not_mix() -> None:
    events = [degraded("slack", 31), degraded("telegram", 40, since=5), restored("slack", 600)]
    report = delivery_report("1", events)
    assert report["slack"].state == "ok" and report["slack"].since == at(600)
    assert report["slack"].last_error == "Slack chat.postMessage: HTTP 503"  # kept as history
    assert report["telegram"].state == "degraded" and report["telegram"].since == at(5)
    again = delivery_report("1", [*events, degraded("slack", 900, since=870)])
    assert again["slack"].state == "degraded" and again["slack"].since == at(870)
    assert set(degraded_targets([*events, degraded("slack", 900, since=870)])) == {"slack", "telegram"}


def test_waiting_messages_are_counted_per_target_for_this_incident_only() -> None:
    queue = [pending("1", "slack", n) for n in range(3)] + [pending("2", "slack", 9), pending("1", "telegram", 0)]
    report = delivery_report("1", [degraded("slack", 31)], queue)
    assert report["slack"].waiting == 3 and report["slack"].state == "degraded"
    assert report["telegram"] == TargetDelivery(target="telegram", label="Telegram", waiting=1)
    assert delivery_report("3", [], queue) == {}
    assert delivery_report("1", [], [pending("1", "", 0)])["default"].waiting == 1


def test_other_events_and_delivery_events_without_a_target_are_ignored() -> None:
    note = TimelineEvent(incident_id="1", at=T0, kind="note", text="hello", data={"target": "slack"})
    broken = TimelineEvent(incident_id="1", at=at(5), kind="delivery_degraded", text="?", data={"since": "not a time"})
    odd = TimelineEvent(incident_id="1", at=at(9), kind="delivery_degraded", text="?",
                        data={"target": "pagerduty", "since": "yesterday", "error": 503})  # fmt: skip
    report = delivery_report("1", [note, broken, odd])
    assert list(report) == ["pagerduty"]
    assert report["pagerduty"].since == at(9) and report["pagerduty"].last_error is None  # unreadable: event time


def test_the_threshold_needs_both_the_failures_and_the_time() -> None:
    assert DegradedAfter(failures=3, seconds=30.0) == DEGRADED_AFTER
    assert not DEGRADED_AFTER.reached(3, timedelta(seconds=3))  # the backoff's first retries: a blip
    assert not DEGRADED_AFTER.reached(2, timedelta(seconds=60))  # one 429 with a long Retry-After
    assert DEGRADED_AFTER.reached(3, timedelta(seconds=30))
    with pytest.raises(ValueError):
        DegradedAfter(failures=0)


def test_the_events_and_the_card_line_read_as_a_person_expects() -> None:
    event = degraded("slack", 31)
    assert event.kind == "delivery_degraded"
    assert event.text == "Slack delivery delayed since 10:02 UTC: Slack chat.postMessage: HTTP 503; 7 messages waiting"
    assert event.data["since"] == T0.isoformat() and event.data["failures"] == 3
    back = restored("slack", 605)
    assert back.kind == "delivery_restored"
    assert back.text == "Slack delivery restored after 10m05s; 7 messages held back go out now, in order"
    assert back.data["lasted"] == 605.0
    assert restored_event("1", at=at(40), target="pagerduty", since=T0, waiting=0).text == (
        "PagerDuty delivery restored after 40s"
    )
    assert degraded_line(delivery_report("1", [event])["slack"]) == "⚠ Slack delivery delayed since 10:02 UTC"
