"""Degraded delivery through the real outbox worker on the in-memory store, recording senders and a fake
clock that never sleeps: a target failing with 503s for ten minutes gets one ``delivery_degraded`` event
(after three failures over at least thirty seconds), the other target's card shows the warning line and
loses it when one ``delivery_restored`` event is written on recovery; every message still goes out once, in
order, paced. A blip the backoff rides out, a refused message, and a worker restarted mid-outage write no
extra event; repeated 429s count as failures; a store that cannot record the state does not stop delivery."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

from bot.core.blocks import Block
from bot.core.delivery import DegradedAfter, delivery_report
from bot.core.incidents import ChatThread, Incident, OutboxMessage, TimelineEvent
from bot.errors import ChatRejected, TransientChatError
from bot.services.outbox import OutboxWorker, Pace
from bot.testing import MemoryStore, RecordingNotifier
from tests.services.test_outbox import T0, Clock, enqueue, incident, worker

TARGETS = ("slack", "telegram")
WARNING = "⚠ Slack delivery delayed since 03:25 UTC"


class Outage(RecordingNotifier):
    """A recording sender that answers every attempt with a 503 while the clock is in ``[start, end)``."""

    def __init__(self, clock: Clock, name: str, start: float = 0.0, end: float = 0.0) -> None:
        super().__init__(clock, name=name)
        self.window = (T0 + timedelta(seconds=start), T0 + timedelta(seconds=end))

    async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
        now = self.clock() if self.clock is not None else T0
        if self.window[0] <= now < self.window[1]:
            self.attempts.append((now, message.id))
            raise TransientChatError(f"{self.name.title()} chat.postMessage: HTTP 503", target=self.name)
        await super().send(message, blocks, incident)


async def say(store: MemoryStore, incident_id: int, kind: str, mid: str, **payload: Any) -> list[str]:
    """The message to both targets (as the Announcer queues it): its ids, ``<mid>-slack``, ``<mid>-telegram``."""
    return [await enqueue(store, incident_id, kind, f"{mid}-{t}", target=t, **payload) for t in TARGETS]


async def threads(store: MemoryStore, incident_id: int) -> None:
    """The incident's thread on both targets, as their senders record it once the card is posted."""
    for target in TARGETS:
        thread = {"incident_id": str(incident_id), "target": target, "channel": "C1", "root": "1", "created_at": T0}
        await store.save_thread(ChatThread.model_validate(thread))


async def run_until(outbox: OutboxWorker, clock: Clock, seconds: float, step: float = 0.5) -> None:
    """Run the worker until the clock reaches ``seconds``, moving it on by ``step`` whenever nothing is due."""
    end = T0 + timedelta(seconds=seconds)
    while clock.now < end:
        if not await outbox.run_once():
            clock.now += timedelta(seconds=step)


async def events(store: MemoryStore, incident_id: int = 1) -> list[TimelineEvent]:
    return [e for e in await store.timeline(str(incident_id)) if e.kind.startswith("delivery_")]


async def test_ten_minutes_of_503s_one_degraded_event_the_other_card_warns_then_one_restored() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    slack, telegram = Outage(clock, "slack", start=5, end=605), Outage(clock, "telegram")
    outbox = worker(store, clock, {"slack": slack, "telegram": telegram}, Pace(1.0))
    expected = await say(store, 1, "opened", "card")
    await run_until(outbox, clock, 5)
    await threads(store, 1)
    for n in range(7):  # the findings and the cause arrive while Slack is down
        expected += await say(store, 1, "post", f"p{n}", text=f"finding {n}")

    await run_until(outbox, clock, 120)
    [degraded] = await events(store)
    first_failure = slack.attempts[1][0]
    assert degraded.kind == "delivery_degraded" and degraded.data["target"] == "slack"
    assert degraded.at - first_failure >= timedelta(seconds=30) and degraded.data["failures"] >= 3
    assert degraded.text == (
        "Slack delivery delayed since 03:25 UTC: Slack chat.postMessage: HTTP 503; 7 messages waiting"
    )
    report = delivery_report("1", await store.timeline("1"), await store.pending_messages())
    assert report["slack"].state == "degraded" and report["slack"].since == first_failure
    assert report["slack"].waiting == 7 and report["slack"].last_error == "Slack chat.postMessage: HTTP 503"
    refreshed = [s for s in telegram.sent if s.message.kind == "updated"]
    assert len(refreshed) == 1 and WARNING in refreshed[0].text  # Telegram's card shows Slack's trouble

    await run_until(outbox, clock, 700)
    assert [e.kind for e in await events(store)] == ["delivery_degraded", "delivery_restored"]
    restored = (await events(store))[1]
    assert restored.at >= T0 + timedelta(seconds=605)
    assert restored.text.startswith("Slack delivery restored after 10m") and "6 messages held back" in restored.text
    assert delivery_report("1", await store.timeline("1"))["slack"].state == "ok"
    cards = [s for s in telegram.sent if s.message.kind == "updated"]
    assert len(cards) == 2 and WARNING not in cards[1].text  # and loses the line again
    assert not any("⚠" in s.text for s in slack.sent)  # a card never shows its own target's trouble

    assert slack.ids == [m for m in expected if m.endswith("-slack")]  # every message once, in order
    assert [i for i in telegram.ids if i in expected] == [m for m in expected if m.endswith("-telegram")]
    times = [at for at, _ in slack.attempts]
    assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(times))  # paced, failures included


async def test_a_blip_the_backoff_rides_out_writes_no_event_and_refreshes_no_card() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await threads(store, 1)
    slack, telegram = RecordingNotifier(clock, name="slack").transient(3), RecordingNotifier(clock, name="telegram")
    outbox = worker(store, clock, {"slack": slack, "telegram": telegram}, Pace(1.0))
    await say(store, 1, "post", "p", text="finding")
    await run_until(outbox, clock, 60)
    assert len(slack.attempts) == 4 and slack.ids == ["p-slack"]  # three failures within 3 s, then through
    assert await events(store) == []
    assert telegram.ids == ["p-telegram"]


async def test_a_worker_restarted_mid_outage_adds_no_second_degraded_event_and_restores() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await threads(store, 1)
    slack = Outage(clock, "slack", end=300)
    senders = {"slack": slack, "telegram": RecordingNotifier(clock, name="telegram")}
    await say(store, 1, "post", "p", text="finding")
    await run_until(worker(store, clock, senders, Pace(1.0), lease=timedelta(seconds=20)), clock, 120)
    assert [e.kind for e in await events(store)] == ["delivery_degraded"]
    clock.now += timedelta(seconds=20)  # the dead worker's lease runs out
    await run_until(worker(store, clock, senders, Pace(1.0)), clock, 400)
    assert [e.kind for e in await events(store)] == ["delivery_degraded", "delivery_restored"]
    assert slack.ids == ["p-slack"]


async def test_repeated_429s_count_as_failures_and_the_threshold_can_be_set() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    chat = RecordingNotifier(clock, name="slack").rate_limit(20.0, times=3)
    outbox = worker(store, clock, {"slack": chat}, degraded_after=DegradedAfter(failures=2, seconds=15))
    await enqueue(store, 1, "post", "p", target="slack", text="finding")
    await run_until(outbox, clock, 120)
    degraded, restored = await events(store)
    assert degraded.at == T0 + timedelta(seconds=20) and degraded.data["code"] == "chat_rate_limited"
    assert restored.at == T0 + timedelta(seconds=60) and chat.ids == ["p"]


async def test_a_message_refused_for_good_is_not_a_degradation() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    refused = [ChatRejected("channel_not_found", target="slack") for _ in range(5)]
    chat = RecordingNotifier(clock, name="slack").fail(*refused)
    outbox = worker(store, clock, {"slack": chat}, degraded_after=DegradedAfter(failures=1, seconds=0))
    for n in range(5):
        await enqueue(store, 1, "post", f"p{n}", target="slack", text="finding")
    await run_until(outbox, clock, 60)
    assert await events(store) == [] and chat.ids == []


class Unreadable(MemoryStore):
    """A store whose timeline cannot be read (the database hiccups on that one query)."""

    async def timeline(self, incident_id: str) -> list[TimelineEvent]:
        raise RuntimeError("the timeline query failed")


async def test_a_store_that_cannot_record_the_state_does_not_stop_delivery() -> None:
    store, clock = Unreadable(), Clock()
    await incident(store, 1)
    slack = Outage(clock, "slack", end=100)
    outbox = worker(store, clock, {"slack": slack}, Pace(1.0))
    ids = [await enqueue(store, 1, kind, f"m{n}", target="slack") for n, kind in enumerate(("opened", "post"))]
    await run_until(outbox, clock, 300)
    assert slack.ids == ids
    assert await store.pending_messages() == []
