"""The Telegram sender with the real python-telegram-bot against the fake Bot API: one forum topic or
one root message per incident, the card edited in place, posts in the thread, the topic closed on
resolution; 429s through the real outbox worker (exactly once, in order, no second topic); plain text
when Telegram refuses the markup; "not modified" as success; a huge ``<&>`` finding arriving intact.

Time is a fake clock shared by the outbox, the sender's flood gate and (where it matters) the fake's
strict limiter, so nothing here sleeps."""

from __future__ import annotations

import asyncio
import re
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from telegram import Bot
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TimedOut
from telegram.warnings import PTBDeprecationWarning

from bot.adapters.telegram.errors import MarkupRefused, MessageGone, NotModified, retry_after_seconds, translate
from bot.adapters.telegram.sender import (
    GROUP_BURST,
    GROUP_WINDOW,
    PER_CHAT_INTERVAL,
    FloodGate,
    TelegramSender,
    api_base_url,
    telegram_bot,
    topic_name,
)
from bot.core.cards import read_diagnosis, render_message
from bot.core.incidents import Incident, IncidentState, OutboxMessage
from bot.core.models import Cause, Diagnosis, Finding, Severity
from bot.errors import ChatRejected, ConfigError, RateLimited, TransientChatError
from bot.services.outbox import OutboxWorker, Pace
from bot.testing import MemoryStore
from bot.testing.telegram_api import (
    FORUM_CHAT_ID,
    GROUP_CHAT_ID,
    NOT_MODIFIED,
    PRIVATE_CHAT_ID,
    SUPERGROUP_CHAT_ID,
    FakeTelegram,
    Limits,
)

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
LINE = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to upstream"
)
CAUSE = Cause(
    id="upstream_down",
    confidence=0.93,
    title="Upstream is not running",
    summary="nothing listens on 127.0.0.1:8000",
    evidence=(LINE,),
    next_steps=("systemctl status gunicorn",),
)
DIAGNOSIS = Diagnosis(status=502, target="shop", causes=(CAUSE,))


class Clock:
    """A fake clock: ``now`` for the store and outbox, ``seconds`` for the flood gate and the fake."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def seconds(self) -> float:
        return self.now.timestamp()

    async def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def sender(bot: Bot, store: MemoryStore, clock: Clock, chat: int | None, *, burst: int = 1) -> TelegramSender:
    gate = FloodGate(now=clock.seconds, sleep=clock.sleep, per_chat_burst=burst)
    return TelegramSender(bot, store, lambda incident: str(chat) if chat else None, clock, gate=gate)


async def saved(store: MemoryStore, **update: Any) -> Incident:
    found = Incident(
        id="1",
        key="shop:5xx",
        service="shop",
        routed=True,
        status=502,
        title="shop 502",
        url="https://shop.example.com/",
        opened_at=T0,
        alert_count=1,
    ).model_copy(update=update)
    async with store.transaction() as tx:
        await tx.save_incident(found)
    return found


def outbox_message(kind: str, mid: str, **payload: Any) -> OutboxMessage:
    return OutboxMessage.model_validate(
        {"id": mid, "incident_id": "1", "kind": kind, "created_at": T0, "payload": payload, "target": "telegram"}
    )


async def deliver(chat: TelegramSender, store: MemoryStore, message: OutboxMessage) -> None:
    """What the outbox does for one message: render it from the incident as it is now, then send."""
    incident = await store.get_incident(message.incident_id)
    assert incident is not None
    diagnosis = read_diagnosis(await store.get_diagnosis(incident.id))
    await chat.send(message, render_message(message, incident, diagnosis), incident)


def findings(host: str, *found: Finding) -> dict[str, Any]:
    return {"findings": [f.model_dump(mode="json") for f in found], "host": host}


REFUSED = Finding(
    kind="nginx.upstream_refused",
    severity=Severity.CRITICAL,
    summary="3× connection refused by upstream 127.0.0.1:8000",
    host="web-1",
    evidence=(LINE,),
)


# ------------------------------------------------------------------------------- the thread


async def test_a_forum_incident_gets_a_topic_with_the_card_posts_edits_and_a_closed_topic_at_the_end(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, FORUM_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    (topic,) = fake.topics(FORUM_CHAT_ID)
    assert topic.name == "shop 502 #1"
    thread = await store.get_thread("1", "telegram")
    assert thread is not None and (thread.channel, thread.topic) == (str(FORUM_CHAT_ID), str(topic.thread_id))
    card = fake.message(FORUM_CHAT_ID, int(thread.root))
    assert (card.thread_id, card.is_topic_message) == (topic.thread_id, True)
    assert card.bold()[0] == "🔴 Incident #1: shop 502"
    assert card.buttons == [
        ("Acknowledge", "acknowledge:1"),
        ("Re-run diagnosis", "rerun:1"),
        ("Escalate", "escalate:1"),
        ("Resolve", "resolve:1"),
    ]

    await deliver(chat, store, outbox_message("post", "m2", **findings("web-1", REFUSED)))
    await store.save_diagnosis("1", DIAGNOSIS.model_dump(mode="json"), T0)
    await deliver(chat, store, outbox_message("post", "m3", diagnosis=DIAGNOSIS.model_dump(mode="json")))
    acked = {"acknowledged_at": T0 + timedelta(minutes=3), "acknowledged_by": "alice"}
    await saved(store, state=IncidentState.ACKNOWLEDGED, **acked)
    await deliver(chat, store, outbox_message("updated", "m4"))
    assert "Acknowledge" not in [label for label, _ in fake.message(FORUM_CHAT_ID, card.message_id).buttons]
    await saved(store, state=IncidentState.RESOLVED, resolved_at=T0 + timedelta(minutes=12), **acked)
    await deliver(chat, store, outbox_message("resolved", "m5"))
    await deliver(chat, store, outbox_message("post", "m6", text="✅ Resolved by alice after 12m00s"))  # the service's

    in_topic = fake.bot_messages(FORUM_CHAT_ID, thread_id=topic.thread_id)
    assert [m.text.splitlines()[0] for m in in_topic if m.text] == [
        "✅ Incident #1: shop 502",  # the card, edited in place
        "web-1: runbooks done, 1 finding",
        "Suspected cause: Upstream is not running",
        "✅ Resolved by alice after 12m00s",  # posted in the closed topic: the bot manages topics
    ]
    assert all(m.reply_to is None for m in in_topic)  # a topic is the thread: no reply chains
    assert fake.bot_messages(FORUM_CHAT_ID, thread_id=None) == in_topic  # nothing outside the topic
    card = fake.message(FORUM_CHAT_ID, card.message_id)
    assert len(card.edits) == 2 and card.buttons == []
    assert "State: resolved" in (card.text or "") and "Acknowledged: 2026-11-30 03:28:00 UTC by alice" in (
        card.text or ""
    )
    assert "Suspected cause: Upstream is not running (upstream_down, 93%)" in (card.text or "")
    assert (fake.topic(FORUM_CHAT_ID, topic.thread_id).name, fake.topic(FORUM_CHAT_ID, topic.thread_id).closed) == (
        "✅ shop 502 #1",
        True,
    )
    assert len(fake.calls_to("createForumTopic")) == 1


@pytest.mark.parametrize("chat_id", [GROUP_CHAT_ID, SUPERGROUP_CHAT_ID, PRIVATE_CHAT_ID])
async def test_a_plain_chat_gets_a_root_card_edited_in_place_and_replies_to_it(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock, chat_id: int
) -> None:
    chat = sender(bot, store, clock, chat_id)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    await deliver(chat, store, outbox_message("post", "m2", **findings("web-1", REFUSED)))
    await deliver(chat, store, outbox_message("post", "m3", text="Acknowledged by alice"))
    await saved(store, state=IncidentState.RESOLVED, resolved_at=T0 + timedelta(seconds=75))
    await deliver(chat, store, outbox_message("resolved", "m4"))
    await deliver(chat, store, outbox_message("post", "m5", text="✅ Resolved: every alert cleared after 1m15s"))

    thread = await store.get_thread("1", "telegram")
    assert thread is not None and thread.topic is None and thread.channel == str(chat_id)
    root = int(thread.root)
    replies = fake.replies_to(chat_id, root)
    assert [m.text.splitlines()[0] for m in replies if m.text] == [
        "web-1: runbooks done, 1 finding",
        "Acknowledged by alice",
        "✅ Resolved: every alert cleared after 1m15s",
    ]
    assert [m.message_id for m in fake.bot_messages(chat_id)] == [root, *(m.message_id for m in replies)]
    sent_replies = [c for c in fake.calls_to("sendMessage") if c.params.get("reply_parameters")]
    assert {c.params["reply_parameters"]["message_id"] for c in sent_replies} == {root}
    card = fake.message(chat_id, root)
    assert card.edits and (card.text or "").startswith("✅ Incident #1") and card.buttons == []
    assert fake.calls_to("createForumTopic") == [] and fake.topics(chat_id) == []


async def test_an_incident_that_fires_again_after_resolution_reopens_its_topic_under_its_plain_name(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, FORUM_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    await saved(store, state=IncidentState.RESOLVED, resolved_at=T0 + timedelta(minutes=5))
    await deliver(chat, store, outbox_message("resolved", "m2"))
    (topic,) = fake.topics(FORUM_CHAT_ID)
    assert (fake.topic(FORUM_CHAT_ID, topic.thread_id).closed, topic.name) == (True, "✅ shop 502 #1")
    await saved(store)  # fires again: triggered, not resolved
    await deliver(chat, store, outbox_message("updated", "m3"))
    assert (topic.closed, topic.name, topic.names) == (
        False,
        "shop 502 #1",
        ["shop 502 #1", "✅ shop 502 #1", "shop 502 #1"],
    )
    await deliver(chat, store, outbox_message("updated", "m4"))  # an open topic stays as it is: no extra request
    assert [c.method for c in fake.calls[-1:]] == ["editMessageText"]
    fresh = sender(bot, store, clock, FORUM_CHAT_ID)  # after a restart the topic's state is checked once
    await deliver(fresh, store, outbox_message("updated", "m5"))
    assert [c.description for c in fake.calls if c.method in ("editForumTopic", "reopenForumTopic")][-2:] == [
        "Bad Request: TOPIC_NOT_MODIFIED",
        "Bad Request: TOPIC_NOT_MODIFIED",
    ]


async def test_each_incident_has_its_own_topic_and_a_repeated_opened_edits_rather_than_reopens(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, FORUM_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    await deliver(chat, store, outbox_message("opened", "m1-again"))  # the outbox's crash window
    second = await saved(store, id="2", key="api:5xx", service="api", status=504)
    await deliver(chat, store, outbox_message("opened", "n1").model_copy(update={"incident_id": second.id}))
    assert [t.name for t in fake.topics(FORUM_CHAT_ID)] == ["shop 502 #1", "api 504 #2"]


async def test_a_post_before_the_thread_exists_starts_it_with_the_card(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, GROUP_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("post", "m1", text="first words"))
    card, reply = fake.bot_messages(GROUP_CHAT_ID)
    assert (card.text or "").startswith("🔴 Incident #1") and (reply.text, reply.reply_to) == (
        "first words",
        card.message_id,
    )


def test_a_topic_is_named_after_service_status_and_id_within_128_characters() -> None:
    long = Incident(id="123", key="k", service="s" * 300, routed=True, status=None, opened_at=T0)
    name = topic_name(long)
    assert len(name) == 128 and name.endswith(" 5xx #123")
    assert topic_name(long, "✅ ").startswith("✅ s") and len(topic_name(long, "✅ ")) <= 128


async def test_a_forum_where_the_bot_may_not_open_topics_gets_a_root_message_instead(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    fake.chat(FORUM_CHAT_ID).can_manage_topics = False
    chat = sender(bot, store, clock, FORUM_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    await deliver(chat, store, outbox_message("post", "m2", text="reply"))
    thread = await store.get_thread("1", "telegram")
    assert thread is not None and thread.topic is None
    assert [m.text for m in fake.replies_to(FORUM_CHAT_ID, int(thread.root))] == ["reply"]


async def test_a_deleted_card_is_posted_again_and_becomes_the_new_root(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, GROUP_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    first = await store.get_thread("1", "telegram")
    assert first is not None
    fake.delete(GROUP_CHAT_ID, int(first.root))
    await saved(store, state=IncidentState.ACKNOWLEDGED)
    await deliver(chat, store, outbox_message("updated", "m2"))
    again = await store.get_thread("1", "telegram")
    assert again is not None and again.root != first.root
    assert "State: acknowledged" in (fake.message(GROUP_CHAT_ID, int(again.root)).text or "")


async def test_an_incident_without_a_telegram_chat_is_rejected_with_a_clear_reason(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    await saved(store)
    with pytest.raises(ChatRejected, match=r"set chat\.telegram_chat or TELEGRAM_CHAT_ID"):
        await deliver(sender(bot, store, clock, None), store, outbox_message("opened", "m1"))
    with pytest.raises(ChatRejected, match=r"(?i)chat not found"):
        await deliver(sender(bot, store, clock, -100424242), store, outbox_message("opened", "m1"))


# ---------------------------------------------------------------------------- Telegram's limits


async def test_a_10000_character_finding_full_of_markup_characters_arrives_intact_never_as_a_400(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    raw = "".join(f'<td class="x">a&b</td> > {n} & <br/>\n' for n in range(400))[:10_000]
    huge = Finding(
        kind="app.traceback", severity=Severity.CRITICAL, summary=raw, host="web-1", evidence=(raw, raw[::-1])
    )
    cause = CAUSE.model_copy(update={"evidence": tuple(raw.splitlines())})
    chat = sender(bot, store, clock, GROUP_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("post", "m1", **findings("web-1", huge)))
    await deliver(chat, store, outbox_message("post", "m2", text=raw))
    await deliver(
        chat,
        store,
        outbox_message("post", "m3", diagnosis=Diagnosis(status=500, causes=(cause,)).model_dump(mode="json")),
    )
    assert all(c.ok for c in fake.calls), [c.description for c in fake.calls if not c.ok]
    shown = [m.text or "" for m in fake.bot_messages(GROUP_CHAT_ID)[1:]]  # after the card
    assert squeeze(raw) in squeeze("".join(shown))  # the summary, split across messages, whole and in order
    assert any(text.startswith('<td class="x">a&b</td> > 0 & <br/>') for text in shown)  # the text post
    assert any(re.search(r"\n… \d+ more lines: incident-bot incidents show 1\n", text) for text in shown)  # cut Code
    assert all(m.parse_mode == "HTML" and len(m.text or "") <= 4096 for m in fake.bot_messages(GROUP_CHAT_ID))


async def test_markup_telegram_refuses_is_sent_again_as_the_same_text_plain(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    refused = 'Bad Request: can\'t parse entities: Unsupported start tag "x" at byte offset 0'
    chat = sender(bot, store, clock, GROUP_CHAT_ID)
    await saved(store)
    fake.fail(400, description=refused, times=1, method="sendMessage")
    await deliver(chat, store, outbox_message("opened", "m1"))
    fake.fail(400, description=refused, times=1, method="sendMessage")
    await deliver(chat, store, outbox_message("post", "m2", text="a <b>literal</b> & co"))
    fake.fail(400, description=refused, times=1, method="editMessageText")
    await saved(store, state=IncidentState.ACKNOWLEDGED)
    await deliver(chat, store, outbox_message("updated", "m3"))
    card, post = fake.bot_messages(GROUP_CHAT_ID)
    assert (post.text, post.parse_mode, post.entities) == ("a <b>literal</b> & co", None, ())
    assert card.parse_mode is None and (card.text or "").startswith("🟠 Incident #1: shop 502\nState: acknowledged")
    assert card.buttons and card.edits  # the keyboard survives the plain-text fallback
    assert [c.status for c in fake.calls if c.method in ("sendMessage", "editMessageText")] == [
        400,
        200,
        400,
        200,
        400,
        200,
    ]


async def test_an_edit_telegram_calls_not_modified_counts_as_delivered(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, FORUM_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    await deliver(chat, store, outbox_message("updated", "m2"))  # nothing changed: Telegram says so
    assert fake.calls_to("editMessageText")[-1].description == NOT_MODIFIED


async def test_a_429_through_the_outbox_is_waited_out_and_every_message_arrives_once_in_order(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, FORUM_CHAT_ID)
    await saved(store)
    async with store.transaction() as tx:
        for message in (
            outbox_message("opened", "m1"),
            outbox_message("post", "m2", text="first"),
            outbox_message("post", "m3", text="second"),
        ):
            await tx.enqueue_message(message)
    fake.clock = clock.seconds
    fake.fail(429, retry_after=3, times=1, method="sendMessage")  # the card, right after the topic was made
    worker = OutboxWorker(store, render_message, {"telegram": chat}, clock, Pace(1.0, 20, 60.0), sleep=clock.sleep)
    for _ in range(50):
        if not await store.pending_messages():
            break
        if not await worker.run_once():
            clock.now += timedelta(seconds=0.5)
    assert await store.pending_messages() == []
    (topic,) = fake.topics(FORUM_CHAT_ID)  # the retry reused the topic
    texts = [(m.text or "").splitlines()[0] for m in fake.bot_messages(FORUM_CHAT_ID, thread_id=topic.thread_id)]
    assert texts == ["🔴 Incident #1: shop 502", "first", "second"]
    sends = [c for c in fake.calls if c.method == "sendMessage"]
    assert [c.status for c in sends] == [429, 200, 200, 200]
    assert sends[1].at - sends[0].at >= 3  # the card waited out retry_after (fake clock)


async def test_a_retried_post_does_not_repeat_the_parts_telegram_already_has(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock
) -> None:
    chat = sender(bot, store, clock, GROUP_CHAT_ID)
    await saved(store)
    await deliver(chat, store, outbox_message("opened", "m1"))
    long = "\n".join(f"line {n} " + "x" * 90 for n in range(100))  # three messages
    fake.fail(429, retry_after=2, times=1, method="sendMessage", after=1)  # the second part
    with pytest.raises(RateLimited):
        await deliver(chat, store, outbox_message("post", "m2", text=long))
    await deliver(chat, store, outbox_message("post", "m2", text=long))  # what the outbox does next
    parts = [m.text or "" for m in fake.bot_messages(GROUP_CHAT_ID)[1:]]
    assert len(parts) == 3 and "\n".join(parts) == long
    assert [c.status for c in fake.calls_to("sendMessage")[1:]] == [200, 429, 200, 200]


async def test_429_5xx_timeouts_and_refusals_become_the_chat_ports_errors(
    fake: FakeTelegram, api_url: str, store: MemoryStore, clock: Clock
) -> None:
    await saved(store)
    async with telegram_bot(fake.token, api_url, timeout=0.5) as bot:
        chat = sender(bot, store, clock, GROUP_CHAT_ID)
        fake.fail(429, retry_after=4, times=1)
        with pytest.raises(RateLimited) as limited:
            await deliver(chat, store, outbox_message("opened", "m1"))
        assert limited.value.retry_after == 4
        fake.fail(502, times=1)
        with pytest.raises(TransientChatError):
            await deliver(chat, store, outbox_message("opened", "m1"))
        fake.stall(2.0, method="sendMessage")
        with pytest.raises(TransientChatError):
            await deliver(chat, store, outbox_message("opened", "m1"))
        fake.fail(403, times=1, description="Forbidden: bot was kicked from the group chat")
        with pytest.raises(ChatRejected, match="forbidden"):
            await deliver(chat, store, outbox_message("opened", "m1"))
        await deliver(chat, store, outbox_message("opened", "m1"))
        assert len(fake.bot_messages(GROUP_CHAT_ID)) >= 1


def test_ptb_exceptions_map_to_the_chat_ports_errors_badrequest_before_networkerror() -> None:
    assert isinstance(translate(BadRequest("Chat not found"), target="t"), ChatRejected)
    assert not isinstance(translate(BadRequest("Chat not found"), target="t"), TransientChatError)
    assert isinstance(translate(BadRequest("Can't parse entities: x"), target="t"), MarkupRefused)
    assert isinstance(translate(BadRequest("Message is not modified: specified"), target="t"), NotModified)
    assert isinstance(translate(BadRequest("Topic_not_modified"), target="t"), NotModified)
    assert isinstance(translate(BadRequest("Message to edit not found"), target="t"), MessageGone)
    assert isinstance(translate(TimedOut(), target="t"), TransientChatError)
    assert isinstance(translate(NetworkError("Bad Gateway"), target="t"), TransientChatError)
    assert isinstance(translate(Forbidden("bot was blocked by the user"), target="t"), ChatRejected)
    limited = translate(RetryAfter(12), target="t")
    assert isinstance(limited, RateLimited) and limited.retry_after == 12


def test_retry_after_is_read_without_a_warning_of_ours_with_or_without_ptb_timedelta(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PTB_TIMEDELTA")
    with pytest.warns(PTBDeprecationWarning):  # PTB itself warns while building the exception
        exc = RetryAfter(9)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert retry_after_seconds(exc) == 9.0
    assert caught == []
    monkeypatch.setenv("PTB_TIMEDELTA", "true")
    assert retry_after_seconds(RetryAfter(timedelta(seconds=2.5))) == 2.5


# ------------------------------------------------------------------------------------- pacing


@pytest.mark.parametrize("burst", [1, 2], ids=["one-a-second", "serve's-bursts-of-two"])
async def test_outbox_and_flood_gate_keep_within_telegrams_limits_so_the_strict_limiter_never_answers_429(
    bot: Bot, fake: FakeTelegram, store: MemoryStore, clock: Clock, burst: int
) -> None:
    """With a gate allowing bursts of two (as ``serve`` builds it), against a limiter tolerating two."""
    fake.clock = clock.seconds
    fake.enforce(Limits(per_chat_interval=1.0, per_chat_burst=burst, group_per_minute=20, overall_per_second=30))
    chat = sender(bot, store, clock, FORUM_CHAT_ID, burst=burst)
    await saved(store)
    long = "\n".join("y" * 100 for _ in range(100))  # a post of three messages
    async with store.transaction() as tx:
        await tx.enqueue_message(outbox_message("opened", "m0"))
        for n in range(1, 26):
            await tx.enqueue_message(outbox_message("post", f"m{n}", text=long if n % 5 == 0 else f"post {n}"))
    pace = Pace(interval=PER_CHAT_INTERVAL, burst=GROUP_BURST, window=GROUP_WINDOW)
    worker = OutboxWorker(store, render_message, {"telegram": chat}, clock, pace, sleep=clock.sleep)
    for _ in range(500):
        if not await store.pending_messages():
            break
        if not await worker.run_once():
            clock.now += timedelta(seconds=0.5)
    assert await store.pending_messages() == []
    assert [c.status for c in fake.calls if c.status != 200] == []
    assert len(fake.bot_messages(FORUM_CHAT_ID)) == 1 + 25 + 5 * 2
    assert clock.now - T0 >= timedelta(seconds=60)  # more than twenty messages to a group take over a minute


async def test_the_flood_gate_spaces_a_chat_caps_a_group_a_minute_and_the_bot_a_second(clock: Clock) -> None:
    gate = FloodGate(now=clock.seconds, sleep=clock.sleep)
    assert [await gate.wait("a", group=False) for _ in range(3)] == [0.0, 1.0, 1.0]
    start = clock.seconds()
    for _ in range(21):
        await gate.wait("g", group=True)
    assert clock.seconds() - start == pytest.approx(60.0)  # 20 a minute, the 21st a minute after the first
    gate.hold("a", 5)
    assert await gate.wait("a", group=False) == pytest.approx(5.0)
    fresh = FloodGate(now=clock.seconds, sleep=clock.sleep)
    many = [await fresh.wait(f"chat{n}", group=False) for n in range(31)]
    assert many == [0.0] * 30 + [pytest.approx(1.0)]  # thirty at once, the 31st a second later
    pairs = FloodGate(now=clock.seconds, sleep=clock.sleep, per_chat_burst=2)
    waits = [await pairs.wait("b", group=False) for _ in range(5)]
    assert waits == [0.0, 0.0, pytest.approx(2.0), 0.0, pytest.approx(2.0)]  # two together, one a second on average


def test_the_bot_url_and_token_are_checked_when_the_bot_is_built() -> None:
    assert api_base_url("https://api.telegram.org/bot") == "https://api.telegram.org/bot"
    assert api_base_url("http://127.0.0.1:8081/") == "http://127.0.0.1:8081/bot"
    assert api_base_url("http://h/custom/{token}/") == "http://h/custom/{token}/"
    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN"):
        telegram_bot(" ")
    built = telegram_bot("1:x", "http://127.0.0.1:8081")
    assert (
        built.base_url == "http://127.0.0.1:8081/bot1:x" and built.base_file_url == "http://127.0.0.1:8081/file/bot1:x"
    )


def squeeze(text: str) -> str:
    return re.sub(r"\s+", "", text)


async def test_the_flood_gate_on_the_real_clock_lets_a_free_chat_through_at_once_and_paces_the_next() -> None:
    """On a clock that moves between two readings, a chat with nothing pending is not kept waiting."""
    gate = FloodGate()
    waited = await asyncio.wait_for(gate.wait(-100123, group=True), 1)
    assert waited < 0.05
    again = await asyncio.wait_for(gate.wait(-100123, group=True), 3)
    assert 0.9 <= again <= 1.5  # one message a second per chat
