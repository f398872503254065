"""The outbox worker on the in-memory store and a recording sender, on a fake clock that never sleeps:
an incident's messages go out in order; a message is delivered exactly once even when a worker dies
mid-batch; each target is paced (interval and burst window) without making other targets wait, and a
sender that is limited per chat per chat; a 429's Retry-After is obeyed by the whole target (the chat for
a per-chat sender); transient failures back off exponentially up to a cap;
pending card updates are coalesced to the latest state; a finished diagnosis reaches chat as the
cause card."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.core.blocks import Block
from bot.core.cards import render_message
from bot.core.incidents import Incident, IncidentState, Job, OutboxMessage
from bot.core.models import Cause, Diagnosis, Finding, Severity
from bot.core.ports import Reporter
from bot.errors import ChatRejected
from bot.services.diagnosis_jobs import DiagnosisWorker
from bot.services.outbox import DEFAULT_PACE, TELEGRAM_GROUP_PACE, OutboxWorker, Pace
from bot.testing import MemoryStore, RecordingNotifier

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
LINE = "connect() to unix:/run/gunicorn.sock failed (111: Connection refused) while connecting to upstream"
DIAGNOSIS = Diagnosis(
    status=502,
    target="shop",
    findings=(Finding(kind="nginx.upstream_refused", severity=Severity.CRITICAL, summary="refused", evidence=(LINE,)),),
    causes=(
        Cause(id="upstream_down", confidence=0.9, title="The upstream is down", summary="s", evidence=(LINE,)),
        Cause(id="upstream_timeout", confidence=0.1, title="The upstream is slow", summary="s"),
    ),
)


class Clock:
    """A fake clock whose ``sleep`` only moves time on."""

    def __init__(self) -> None:
        self.now = T0
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)

    def at(self, seconds: float) -> datetime:
        return T0 + timedelta(seconds=seconds)


async def incident(store: MemoryStore, n: int, **update: Any) -> Incident:
    found = Incident(
        id=str(n), key=f"shop{n}:5xx", service="shop", routed=True, status=502, title=f"shop {n} 502", opened_at=T0
    ).model_copy(update=update)
    async with store.transaction() as tx:
        await tx.save_incident(found)
    return found


async def enqueue(
    store: MemoryStore, incident_id: int, kind: str, mid: str, *, target: str = "", **payload: Any
) -> str:
    async with store.transaction() as tx:
        await tx.enqueue_message(
            OutboxMessage.model_validate(
                {
                    "id": mid,
                    "incident_id": str(incident_id),
                    "kind": kind,
                    "created_at": T0,
                    "payload": payload,
                    "target": target,
                }
            )
        )
    return mid


def worker(
    store: MemoryStore, clock: Clock, senders: dict[str, Any], pace: Pace | dict[str, Pace] = DEFAULT_PACE, **kw: Any
) -> OutboxWorker:
    return OutboxWorker(store, render_message, senders, clock, pace, sleep=clock.sleep, **kw)


async def drain(outbox: OutboxWorker, store: MemoryStore, clock: Clock, step: float = 0.5, limit: int = 2000) -> None:
    """Run the worker until nothing is pending, moving the clock on by ``step`` whenever nothing is due."""
    for _ in range(limit):
        if not await store.pending_messages():
            return
        if not await outbox.run_once():
            clock.now += timedelta(seconds=step)
    raise AssertionError("the outbox never drained")


async def test_messages_of_an_incident_go_out_in_the_order_queued_once_each_paced_per_target() -> None:
    store, clock = MemoryStore(), Clock()
    for n in (1, 2):
        await incident(store, n)
    order = [
        await enqueue(store, 1, "opened", "o1"),
        await enqueue(store, 2, "opened", "o2"),
        await enqueue(store, 1, "post", "p1", text="first reply"),
        await enqueue(store, 2, "post", "p2", text="a reply"),
        await enqueue(store, 1, "post", "p1b", text="second reply"),
    ]
    chat = RecordingNotifier(clock)
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    assert chat.ids == order
    assert chat.times == [clock.at(s) for s in range(5)]  # 1 message/s on the one target
    assert all(store.message_states[m].delivered_at is not None for m in order)
    assert await store.pending_messages() == []


async def test_a_message_held_for_retry_holds_back_its_incidents_later_messages_not_others() -> None:
    store, clock = MemoryStore(), Clock()
    for n in (1, 2):
        await incident(store, n)
    await enqueue(store, 1, "opened", "a1")
    await enqueue(store, 1, "post", "a2", text="later")
    await enqueue(store, 2, "opened", "b1")
    chat = RecordingNotifier(clock).transient(1)
    await drain(worker(store, clock, {"chat": chat}, Pace(0.0)), store, clock)
    assert chat.ids == ["b1", "a1", "a2"]  # incident 2 did not wait; a2 never overtook a1
    assert chat.times == [T0, clock.at(1), clock.at(1)]


async def test_exactly_once_when_a_worker_dies_mid_batch_and_another_takes_over_after_the_lease() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    ids = [await enqueue(store, 1, "post", f"m{i}", text=f"reply {i}") for i in range(5)]

    class Crash(BaseException):
        """The process dies (kill -9): nothing after it runs."""

    class Dying(RecordingNotifier):
        async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
            if len(self.sent) == 2:
                raise Crash
            await super().send(message, blocks, incident)

    first = Dying(clock)
    lease = timedelta(seconds=30)
    with pytest.raises(Crash):
        await worker(store, clock, {"chat": first}, Pace(0.0), lease=lease).run_once()
    assert first.ids == ["m0", "m1"]

    second = RecordingNotifier(clock)
    restarted = worker(store, clock, {"chat": second}, Pace(0.0), lease=lease)
    assert await restarted.run_once() == 0  # the dead worker's lease still holds the rest
    clock.now += lease
    await drain(restarted, store, clock)
    assert second.ids == ["m2", "m3", "m4"]
    assert first.ids + second.ids == ids  # nothing lost, nothing doubled, still in order
    assert second.times == [clock.at(30)] * 3


async def test_a_batch_stops_before_its_lease_runs_out_and_gives_the_rest_back() -> None:
    store, clock = MemoryStore(), Clock()
    for n in range(5):
        await incident(store, n)
        await enqueue(store, n, "opened", f"o{n}")
    chat = RecordingNotifier(clock)
    outbox = worker(store, clock, {"chat": chat}, Pace(10.0), lease=timedelta(seconds=30))
    assert await outbox.run_once() == 5
    assert chat.times == [T0, clock.at(10), clock.at(20)]  # the next one would be due after 80% of the lease
    pending = await store.pending_messages()
    assert [m.id for m in pending] == ["o3", "o4"]
    assert all(store.message_states[m.id].next_attempt_at == clock.at(30) for m in pending)
    other = RecordingNotifier(clock)
    assert await worker(store, clock, {"chat": other}).run_once() == 0  # nobody takes them early
    await drain(outbox, store, clock)
    assert chat.ids == ["o0", "o1", "o2", "o3", "o4"] and other.ids == []
    assert chat.times[3:] == [clock.at(30), clock.at(40)]


async def test_each_target_is_paced_on_its_own_interval_and_burst_window() -> None:
    store, clock = MemoryStore(), Clock()
    for n in range(6):
        await incident(store, n)
        await enqueue(store, n, "opened", f"m{n}", target="slack" if n % 2 == 0 else "telegram")
    slack, telegram = RecordingNotifier(clock), RecordingNotifier(clock)
    pace = {"slack": Pace(1.0), "telegram": Pace(1.0, burst=2, window=10.0)}
    await drain(worker(store, clock, {"slack": slack, "telegram": telegram}, pace), store, clock)
    assert slack.ids == ["m0", "m2", "m4"]
    assert telegram.ids == ["m1", "m3", "m5"]
    assert slack.times == [T0, clock.at(1), clock.at(2)]
    assert telegram.times == [T0, clock.at(1), clock.at(10)]  # two in the window, then wait for it
    assert clock.slept and all(s > 0 for s in clock.slept)


class PerChatNotifier(RecordingNotifier):
    """A recording sender whose platform limits each chat on its own (as Slack channels and Telegram chats
    are): an incident's chat is its service."""

    def lane(self, incident: Incident) -> str | None:
        return incident.service


async def test_a_per_chat_sender_is_paced_per_chat_and_a_429_holds_only_that_chat() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await incident(store, 2)
    await incident(store, 3, service="blog", key="blog3:5xx")
    await enqueue(store, 1, "opened", "s1")
    await enqueue(store, 2, "opened", "s2")
    await enqueue(store, 3, "opened", "b1")
    await enqueue(store, 3, "post", "b2", text="reply")
    await enqueue(store, 1, "post", "s1b", text="reply")
    chat = PerChatNotifier(clock)
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    sent = {s.message.id: s.at for s in chat.sent}
    assert sent == {"s1": T0, "b1": T0, "s2": clock.at(1), "b2": clock.at(1), "s1b": clock.at(2)}

    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await incident(store, 3, service="blog", key="blog3:5xx")
    await enqueue(store, 1, "opened", "s1")
    await enqueue(store, 3, "opened", "b1")
    await enqueue(store, 3, "post", "b2", text="reply")
    chat = PerChatNotifier(clock).rate_limit(7.5)  # the first send (to shop's chat) gets a 429
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    sent = {s.message.id: s.at for s in chat.sent}
    assert sent == {"b1": T0, "b2": clock.at(1), "s1": clock.at(7.5)}  # blog's chat did not wait


async def test_the_telegram_group_pace_allows_twenty_a_minute() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    for i in range(22):
        await enqueue(store, 1, "post", f"m{i:02d}", text=str(i))
    chat = RecordingNotifier(clock)
    await drain(worker(store, clock, {"chat": chat}, TELEGRAM_GROUP_PACE, lease=timedelta(minutes=5)), store, clock)
    assert chat.times[:20] == [clock.at(s) for s in range(20)]
    assert chat.times[20:] == [clock.at(60), clock.at(61)]


async def test_retry_after_is_obeyed_by_the_whole_target() -> None:
    store, clock = MemoryStore(), Clock()
    for n in (1, 2):
        await incident(store, n)
    await enqueue(store, 1, "opened", "a1")
    await enqueue(store, 1, "post", "a2", text="reply")
    await enqueue(store, 2, "opened", "b1")
    chat = RecordingNotifier(clock).rate_limit(7.5)
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    assert chat.attempts[0] == (T0, "a1")
    assert chat.ids == ["a1", "a2", "b1"]
    assert chat.times == [clock.at(7.5), clock.at(8.5), clock.at(9.5)]  # nothing to the target before 7.5 s


async def test_transient_failures_back_off_exponentially_up_to_the_cap() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await enqueue(store, 1, "opened", "o1")
    chat = RecordingNotifier(clock).transient(5)
    outbox = worker(store, clock, {"chat": chat}, backoff=1.0, backoff_cap=4.0)
    await drain(outbox, store, clock)
    assert [at for at, _ in chat.attempts] == [clock.at(s) for s in (0, 1, 3, 7, 11, 15)]  # +1 +2 +4 +4 +4
    assert chat.ids == ["o1"]
    assert store.message_states["o1"].delivered_at == clock.at(15)
    default = worker(store, clock, {"chat": chat})
    assert [default.backoff_delay(n) for n in (1, 2, 3, 6, 7, 20)] == [1, 2, 4, 32, 60, 60]


async def test_a_permanently_rejected_message_is_dropped_and_does_not_block_its_incident() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await enqueue(store, 1, "opened", "o1")
    await enqueue(store, 1, "post", "p1", text="next")
    chat = RecordingNotifier(clock).fail(ChatRejected("channel_not_found", target="chat"))
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    assert chat.ids == ["p1"]
    assert [mid for _, mid in chat.attempts] == ["o1", "p1"]
    assert store.message_states["o1"].delivered_at is not None


async def test_pending_card_updates_are_coalesced_to_the_latest_state() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await enqueue(store, 1, "opened", "o1")
    for i in range(3):
        await enqueue(store, 1, "updated", f"u{i}")
    await incident(store, 1, state=IncidentState.ACKNOWLEDGED, acknowledged_at=T0, acknowledged_by="ana")
    chat = RecordingNotifier(clock)
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    assert chat.ids == ["o1", "u2"]
    assert "State: acknowledged" in chat.sent[1].text and "ana" in chat.sent[1].text
    assert all(store.message_states[f"u{i}"].delivered_at is not None for i in range(3))
    assert await store.pending_messages() == []


async def test_an_update_followed_by_the_resolution_sends_only_the_resolution() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1, state=IncidentState.RESOLVED, resolved_at=T0 + timedelta(minutes=3))
    await enqueue(store, 1, "updated", "u1")
    await enqueue(store, 1, "resolved", "r1")
    chat = RecordingNotifier(clock)
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    assert chat.ids == ["r1"]
    assert "State: resolved" in chat.sent[0].text and "Duration: 3m00s" in chat.sent[0].text


async def test_the_status_card_shows_the_incident_and_its_top_cause_once_diagnosed() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1, url="https://shop.example/")
    await enqueue(store, 1, "opened", "o1")
    chat = RecordingNotifier(clock)
    outbox = worker(store, clock, {"chat": chat})
    await drain(outbox, store, clock)
    card = chat.sent[0].text
    assert "Incident #1: shop 1 502" in card and "HTTP status: 502" in card and "https://shop.example/" in card
    assert "Suspected cause" not in card and "[Acknowledge]" in card
    await store.save_diagnosis("1", DIAGNOSIS.to_json(), T0)
    await enqueue(store, 1, "updated", "u1")
    await drain(outbox, store, clock)
    assert "Suspected cause: The upstream is down (upstream_down, 90%)" in chat.sent[1].text


async def test_a_finished_diagnosis_reaches_chat_as_the_cause_card() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    async with store.transaction() as tx:
        await tx.enqueue_job(Job(id="j1", incident_id="1", created_at=T0))

    async def diagnose(found: Incident, reporter: Reporter) -> Diagnosis:
        return DIAGNOSIS

    assert await DiagnosisWorker(store, diagnose, clock, "w1", timedelta(seconds=90)).run_once()
    post, card = await store.pending_messages()
    assert post.kind == "post" and post.payload["diagnosis"] == DIAGNOSIS.to_json()
    assert card.kind == "updated"  # the card shows the cause too
    chat = RecordingNotifier(clock)
    await drain(worker(store, clock, {"chat": chat}), store, clock)
    text = chat.sent[0].text
    assert "Suspected cause: The upstream is down" in text
    assert "> " + LINE in text


async def test_run_forever_stops_when_asked_and_gives_back_what_it_has_not_sent() -> None:
    store, clock = MemoryStore(), Clock()
    await incident(store, 1)
    await enqueue(store, 1, "opened", "o1")
    await enqueue(store, 1, "post", "p1", text="reply")
    stop = asyncio.Event()

    class Stopping(RecordingNotifier):
        async def send(self, message: OutboxMessage, blocks: list[Block], incident: Incident) -> None:
            await super().send(message, blocks, incident)
            stop.set()  # shutdown arrives while the worker waits for the pace

    chat = Stopping(clock)
    await asyncio.wait_for(worker(store, clock, {"chat": chat}, Pace(5.0)).run_forever(stop, idle=0.01), 5)
    assert chat.ids == ["o1"]
    assert [m.id for m in await store.pending_messages()] == ["p1"]
    assert store.message_states["p1"].next_attempt_at <= clock.now  # offered again at once, not after the lease


def test_settings_are_checked() -> None:
    store, clock = MemoryStore(), Clock()
    with pytest.raises(ValueError):
        worker(store, clock, {})
    with pytest.raises(ValueError):
        Pace(interval=-1)
    with pytest.raises(ValueError):
        Pace(burst=0)
