"""The PagerDuty sender against a local fake of the Events API v2 (real HTTP on 127.0.0.1): the fake's
answers (202 with the dedup key, 400 with PagerDuty's error shape, 429 on demand, dedup semantics), and
the sender driven by the real outbox worker with the pager's events: trigger, acknowledge and resolve
arrive in order with one routing key and the incident's dedup key, the summary names the top cause and
the thread link rides along; 429s and 5xx for a while still deliver each event exactly once; a 400 is
written on the timeline and in the thread; a network failure is retried."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from bot.adapters.pagerduty import PagerDutySender
from bot.core.cards import render_message
from bot.core.incidents import Incident, OutboxMessage
from bot.errors import ChatRejected, TransientChatError
from bot.services.outbox import OutboxWorker, Pace
from bot.services.paging import PAGERDUTY, SLACK_DM, TELEGRAM_DM
from bot.testing import RecordingNotifier
from bot.testing.pagerduty_api import FakePagerDuty
from tests.services.test_paging import T0, World

KEY = "R0UT1NGKEY0123456789abcdefABCDEF"
assert len(KEY) == 32


@pytest.fixture(scope="module")
def served() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
def pagerduty(served: FakePagerDuty) -> FakePagerDuty:
    served.reset()
    return served


def trigger(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "shop:5xx",
        "payload": {"summary": "shop HTTP 502: Upstream is not running", "source": "shop.example.com",
                    "severity": "critical"},
    }  # fmt: skip
    body.update(changes)
    return body


# -- the fake answers like PagerDuty -------------------------------------------------------------------


def test_a_valid_event_is_answered_202_with_its_dedup_key(pagerduty: FakePagerDuty) -> None:
    response = httpx.post(pagerduty.events_url, json=trigger())
    assert response.status_code == 202
    assert response.json() == {"status": "success", "message": "Event processed", "dedup_key": "shop:5xx"}
    generated = httpx.post(pagerduty.events_url, json=trigger(dedup_key=None)).json()["dedup_key"]
    assert generated and generated != "shop:5xx"


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (trigger(routing_key="short"), "Length of 'routing_key' is incorrect"),
        (trigger(event_action="page"), "'event_action' is invalid"),
        (trigger(payload={"source": "x", "severity": "critical"}), "'payload.summary' is missing"),
        (trigger(payload={"summary": "s" * 1025, "source": "x", "severity": "info"}), "'payload.summary' is too long"),
        (trigger(payload={"summary": "s", "source": "x", "severity": "fatal"}), "'payload.severity' is invalid"),
        (trigger(payload={"summary": "s", "severity": "info"}), "'payload.source' is missing"),
        (trigger(dedup_key="k" * 256), "'dedup_key' must be a string of at most 255"),
        ({"routing_key": KEY, "event_action": "resolve"}, "'dedup_key' is missing"),
        (trigger(payload={"summary": "s", "source": "x", "severity": "info", "custom_details": "text"}),
         "'payload.custom_details' must be an object"),
        (trigger(payload={"summary": "s", "source": "x", "severity": "info", "custom_details": {"x": "y" * 600_000}}),
         "larger than 512 KB"),
    ],
)  # fmt: skip
def test_an_invalid_event_is_answered_400_with_the_reason(pagerduty: FakePagerDuty, body: Any, error: str) -> None:
    response = httpx.post(pagerduty.events_url, json=body)
    assert response.status_code == 400
    answer = response.json()
    assert answer["status"] == "invalid event" and answer["message"] == "Event object is invalid"
    assert any(error in e for e in answer["errors"]), answer["errors"]
    assert pagerduty.accepted() == []


def test_a_body_that_is_not_json_is_invalid(pagerduty: FakePagerDuty) -> None:
    response = httpx.post(pagerduty.events_url, content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400


def test_429_on_demand_then_accepting_again(pagerduty: FakePagerDuty) -> None:
    pagerduty.rate_limit(2, retry_after=1)
    first = httpx.post(pagerduty.events_url, json=trigger())
    assert first.status_code == 429 and first.headers["Retry-After"] == "1"
    assert first.json()["status"] == "throttle event"
    assert httpx.post(pagerduty.events_url, json=trigger()).status_code == 429
    assert httpx.post(pagerduty.events_url, json=trigger()).status_code == 202
    assert pagerduty.statuses() == [429, 429, 202]


def test_alerts_follow_pagerdutys_dedup_rules(pagerduty: FakePagerDuty) -> None:
    for body in (trigger(), trigger(), {"routing_key": KEY, "event_action": "acknowledge", "dedup_key": "shop:5xx"}):
        assert httpx.post(pagerduty.events_url, json=body).status_code == 202
    alert = pagerduty.alert("shop:5xx")
    assert alert is not None and alert.state == "acknowledged" and len(alert.events) == 3
    httpx.post(pagerduty.events_url, json={"routing_key": KEY, "event_action": "resolve", "dedup_key": "shop:5xx"})
    httpx.post(pagerduty.events_url, json={"routing_key": KEY, "event_action": "resolve", "dedup_key": "nothing"})
    httpx.post(pagerduty.events_url, json=trigger())  # the same key after a resolve: a new alert
    assert [a.state for a in pagerduty.alerts] == ["resolved", "triggered"]


# -- the sender through the outbox --------------------------------------------------------------------


class Setup:
    """A paging world whose outbox delivers ``pagerduty`` messages with the real sender to the fake."""

    def __init__(self, fake: FakePagerDuty, *, thread: str | None = None, key: str = KEY) -> None:
        self.world = World()
        self.chat = RecordingNotifier(self.world.clock)
        self.sender = PagerDutySender(key, events_url=fake.events_url, retry_after=30.0, thread_link=self._link)
        self.thread = thread
        self.outbox = OutboxWorker(
            self.world.store,
            render_message,
            {"": self.chat, PAGERDUTY: self.sender, SLACK_DM: self.chat, TELEGRAM_DM: self.chat},
            self.world.clock,
            {PAGERDUTY: Pace(0.5)},
            sleep=self._sleep,
            on_rejected=self.world.pager.rejected,
        )

    async def _link(self, incident_id: str) -> str | None:
        return self.thread

    async def _sleep(self, seconds: float) -> None:
        self.world.clock.advance(seconds=seconds)

    async def drain(self) -> None:
        for _ in range(500):
            if not await self.world.store.pending_messages():
                return
            if not await self.outbox.run_once():
                self.world.clock.advance(seconds=1)
        raise AssertionError("the outbox never drained")

    async def page_ack_resolve(self) -> Incident:
        incident = await self.world.open()
        await self.world.probe(incident)
        await self.world.pager.diagnosed(incident.id, None)
        await self.drain()
        self.world.clock.advance(minutes=2)
        await self.world.service.acknowledge(incident.id, "alice (slack)")
        await self.drain()
        await self.world.service.resolve(incident.id, "alice (slack)")
        await self.drain()
        return incident


async def test_trigger_acknowledge_and_resolve_reach_pagerduty_with_one_routing_key_and_the_dedup_key(
    pagerduty: FakePagerDuty,
) -> None:
    setup = Setup(pagerduty, thread="https://acme.slack.com/archives/C1/p1700000000000100")
    async with setup.sender:
        incident = await setup.page_ack_resolve()
    events = pagerduty.accepted()
    assert [e["event_action"] for e in events] == ["trigger", "acknowledge", "resolve"]
    assert {e["routing_key"] for e in events} == {KEY} and {e["dedup_key"] for e in events} == {incident.key}
    payload = events[0]["payload"]
    assert "upstream_down" in payload["summary"] and "shop" in payload["summary"] and "502" in payload["summary"]
    assert payload["custom_details"]["evidence"] == [
        "attempt 1/3: connect to 203.0.113.10:443 failed (111: Connection refused)"
    ]
    assert payload["custom_details"]["thread"] == setup.thread
    assert events[0]["links"] == [{"href": setup.thread, "text": f"Incident #{incident.id} thread"}]
    assert events[0]["client"] == "incident-bot" and events[0]["client_url"] == setup.thread
    alert = pagerduty.alert(incident.key)
    assert alert is not None and alert.state == "resolved"


async def test_a_run_of_429s_still_delivers_each_event_exactly_once_in_order(pagerduty: FakePagerDuty) -> None:
    setup = Setup(pagerduty)
    pagerduty.rate_limit(4)  # no Retry-After: the sender waits its default 30 s
    async with setup.sender:
        started = setup.world.clock()
        incident = await setup.page_ack_resolve()
    assert [e["event_action"] for e in pagerduty.accepted()] == ["trigger", "acknowledge", "resolve"]
    assert pagerduty.statuses()[:5] == [429, 429, 429, 429, 202]
    assert setup.world.clock() - started >= timedelta(seconds=4 * 30)
    assert await setup.world.timeline(incident.id, "page_failed") == []


async def test_server_errors_are_retried_and_each_event_arrives_once(pagerduty: FakePagerDuty) -> None:
    setup = Setup(pagerduty)
    pagerduty.fail(503, times=2)
    async with setup.sender:
        await setup.page_ack_resolve()
    assert [e["event_action"] for e in pagerduty.accepted()] == ["trigger", "acknowledge", "resolve"]
    assert pagerduty.statuses()[:3] == [503, 503, 202]


async def test_a_400_is_written_on_the_timeline_and_in_the_thread_and_nothing_is_left_stuck(
    pagerduty: FakePagerDuty,
) -> None:
    setup = Setup(pagerduty, key="not-an-integration-key")  # a misconfigured routing key: PagerDuty says 400
    incident = await setup.world.open()
    await setup.world.probe(incident)
    async with setup.sender:
        await setup.drain()
        await setup.world.service.resolve(incident.id, "alice (slack)")
        await setup.drain()
    refused = await setup.world.timeline(incident.id, "page_failed")
    assert [line.split(":")[0] for line in refused] == [
        "⚠️ PagerDuty refused the trigger event",
        "⚠️ PagerDuty refused the resolve event",
    ]
    assert "HTTP 400 Event object is invalid: Length of 'routing_key' is incorrect" in refused[0]
    assert "not-an-integration-key" not in " ".join(refused)
    assert all(any(sent.text == line for sent in setup.chat.sent) for line in refused)  # said in the thread too
    assert pagerduty.accepted() == [] and pagerduty.statuses() == [400, 400]
    assert await setup.world.store.pending_messages() == []


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_network_failure_is_transient_and_a_message_without_an_event_is_refused() -> None:
    incident = Incident(id="1", key="shop:5xx", service="shop", routed=True, status=502, opened_at=T0)

    def message(payload: dict[str, Any]) -> OutboxMessage:
        return OutboxMessage.model_validate(
            {"id": "m", "incident_id": "1", "kind": "post", "created_at": T0, "payload": payload, "target": PAGERDUTY}
        )

    event = {"pagerduty": {"event_action": "resolve", "dedup_key": "shop:5xx"}}
    async with PagerDutySender(KEY, events_url=f"http://127.0.0.1:{_closed_port()}/v2/enqueue", timeout=2) as sender:
        with pytest.raises(TransientChatError) as transient:
            await sender.send(message(event), [], incident)
        assert KEY not in str(transient.value)
        with pytest.raises(ChatRejected, match="no PagerDuty event"):
            await sender.send(message({"text": "hello"}), [], incident)
