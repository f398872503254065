"""The real outbox worker delivering through the Slack sender, the real slack_sdk client and the fake Slack,
on one fake clock shared by the worker and the fake (so a minute of outage takes milliseconds): through
429s with Retry-After and a minute of 503s every message arrives exactly once, in order, never faster than
one a second per channel; a message Slack took whose answer was lost is not posted again."""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import timedelta

from bot.adapters.slack.sender import SlackSender, channel_by_service, slack_client
from bot.core.cards import render_message
from bot.core.incidents import Incident, IncidentState, OutboxMessage
from bot.services.outbox import SLACK_PACE, OutboxWorker
from bot.testing import MemoryStore
from bot.testing.slack_api import FakeMessage, FakeSlack
from tests.adapters.slack.helpers import T0, Clock, make_incident, stored

CHANNELS = {"shop": "C0SHOP", "api": "C0API"}


async def enqueue(store: MemoryStore, incident: Incident, kind: str, mid: str, **payload: object) -> str:
    async with store.transaction() as tx:
        await tx.enqueue_message(
            OutboxMessage.model_validate(
                {"id": mid, "incident_id": incident.id, "kind": kind, "created_at": T0, "payload": payload}
            )
        )
    return mid


def worker(slack: FakeSlack, store: MemoryStore, clock: Clock) -> OutboxWorker:
    chat = SlackSender(slack_client(slack.token, slack.api_url), store, channel_by_service(CHANNELS, None), clock)
    return OutboxWorker(store, render_message, {"slack": chat}, clock, SLACK_PACE, sleep=clock.sleep)


async def drain(outbox: OutboxWorker, store: MemoryStore, clock: Clock, limit: int = 500) -> None:
    """Run the worker until nothing is pending, moving the clock on a second whenever nothing is due."""
    for _ in range(limit):
        if not await store.pending_messages():
            return
        if not await outbox.run_once():
            clock.now += timedelta(seconds=1)
    raise AssertionError("the outbox never drained")


def posted(slack: FakeSlack, channel: str) -> list[FakeMessage]:
    """Every message in the channel: each root, then its replies, oldest first."""
    return [m for root in slack.history(channel) for m in slack.thread(channel, root.ts)]


async def test_through_429s_and_a_minute_of_503s_each_message_arrives_once_in_order_and_paced(
    slack: FakeSlack,
) -> None:
    clock = Clock()
    slack.clock = clock.timestamp
    slack.strict_rate(1.0, burst=1)  # Slack's special tier, as strict as it gets
    store = MemoryStore()
    shop = await stored(store, make_incident(1))
    api = await stored(store, make_incident(2, service="api", key="api:5xx", state=IncidentState.RESOLVED))
    expected = {
        "C0SHOP": [await enqueue(store, shop, "opened", "s0")],
        "C0API": [await enqueue(store, api, "opened", "a0")],
    }
    for n in range(1, 4):
        expected["C0SHOP"].append(await enqueue(store, shop, "post", f"s{n}", text=f"shop reply {n}"))
        if n < 3:
            expected["C0API"].append(await enqueue(store, api, "post", f"a{n}", text=f"api reply {n}"))
    await enqueue(store, shop, "updated", "s-card")
    await enqueue(store, api, "resolved", "a-card")
    slack.fail(429, retry_after=5, times=2).fail(503, for_seconds=60)

    await drain(worker(slack, store, clock), store, clock)

    for channel, ids in expected.items():
        messages = posted(slack, channel)
        assert [m.outbox_id for m in messages] == ids  # each once, in the order queued
        assert all(m.thread_ts == messages[0].ts for m in messages[1:])  # one thread
        assert len(messages[0].edits) >= 1  # the card was edited in place
    calls = slack.calls
    limited = [c for c in calls if c.status == 429]
    assert len(limited) == 2  # only the scripted ones: the strict rate never had to say no
    for call in limited:
        assert all(later.at >= call.at + 5 for later in calls if later.at > call.at)
    outage = [c for c in calls if c.status == 503]
    assert outage and next(c for c in calls if c.at > outage[0].at and c.ok).at >= outage[0].at + 60
    by_channel: dict[str, list[float]] = defaultdict(list)
    for call in calls:
        if call.method == "chat.postMessage" and call.ok:
            by_channel[call.response["channel"]].append(call.at)
    for times in by_channel.values():
        assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))


async def test_a_reply_slack_took_whose_answer_was_lost_is_not_posted_again(slack: FakeSlack) -> None:
    clock = Clock()
    slack.clock = clock.timestamp
    store = MemoryStore()
    shop = await stored(store, make_incident(1))
    outbox = worker(slack, store, clock)
    await enqueue(store, shop, "opened", "s0")
    await drain(outbox, store, clock)
    slack.fail(503, after_applying=True, methods=["chat.postMessage"])  # posted, then the answer is lost
    await enqueue(store, shop, "post", "s1", text="web-1: runbooks done")
    await enqueue(store, shop, "post", "s2", text="Acknowledged by alice")
    await drain(outbox, store, clock)
    assert [m.outbox_id for m in posted(slack, "C0SHOP")] == ["s0", "s1", "s2"]
    assert [c.status for c in slack.calls_to("chat.postMessage")] == [200, 503, 200]
    assert slack.calls_to("conversations.replies", ok=True)  # offered again, it looked before posting


async def test_a_card_slack_took_whose_answer_was_lost_is_found_and_its_thread_kept(slack: FakeSlack) -> None:
    clock = Clock()
    slack.clock = clock.timestamp
    store = MemoryStore()
    shop = await stored(store, make_incident(1))
    slack.fail(503, after_applying=True, methods=["chat.postMessage"])
    await enqueue(store, shop, "opened", "s0")
    await enqueue(store, shop, "post", "s1", text="web-1: runbooks done")
    await drain(worker(slack, store, clock), store, clock)
    messages = posted(slack, "C0SHOP")
    assert [m.outbox_id for m in messages] == ["s0", "s1"] and messages[1].thread_ts == messages[0].ts
    thread = await store.get_thread("1", "slack")
    assert thread is not None and thread.root == messages[0].ts
