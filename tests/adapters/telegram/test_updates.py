"""The inbound Telegram adapter with the real python-telegram-bot Application long-polling the fake Bot
API, and the real chat operations behind it: every command (``/cmd@botname`` in groups too), usage
errors, ``/explain`` with the evidence inline or in the message replied to, slow commands that never
stall other updates, forum topics, card buttons answered at once and acted on, refusals answered and
recorded, chats the bot does not serve ignored and counted, a second poller's 409 survived."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from telegram import Bot

from bot.adapters.telegram.commands import COMMANDS
from bot.adapters.telegram.sender import TelegramSender, telegram_bot
from bot.adapters.telegram.updates import WORKING
from bot.core.cards import read_diagnosis, render_message
from bot.core.incidents import IncidentState
from bot.testing.telegram_api import (
    BOT_USERNAME,
    FORUM_CHAT_ID,
    GROUP_CHAT_ID,
    PRIVATE_CHAT_ID,
    SUPERGROUP_CHAT_ID,
    FakeChat,
    FakeTelegram,
)
from tests.adapters.telegram.inbound import ALICE, BOB, MALLORY, REFUSED_LINE, World, bot_reply, quiet, until


@pytest.fixture
async def world(bot: Bot, fake: FakeTelegram) -> AsyncIterator[World]:
    world = World(bot)
    await world.app.start(poll=True)
    yield world
    await world.app.stop()


def said(fake: FakeTelegram, chat_id: int) -> list[str]:
    return [m.text or "" for m in fake.bot_messages(chat_id)]


# ------------------------------------------------------------------------------- the lifecycle


async def test_starting_registers_every_command_with_a_one_line_description(world: World, fake: FakeTelegram) -> None:
    registered = fake.commands()
    assert [c["command"] for c in registered] == [
        "incidents",
        "show",
        "ack",
        "resolve",
        "diagnose",
        "runbook",
        "request",
        "approve",
        "deny",
        "explain",
        "oncall",
        "help",
    ]
    assert all(c["description"] and "\n" not in c["description"] for c in registered)
    assert [c.name for c in COMMANDS] == [c["command"] for c in registered]
    fake.user_message(SUPERGROUP_CHAT_ID, "/help")  # ends the long poll under way, so the fake records it
    (poll, *_) = await until(lambda: fake.calls_to("getUpdates"), what="a getUpdates call")
    assert poll.params["allowed_updates"] == ["message", "callback_query"]
    assert fake.calls_to("deleteWebhook")  # polling always clears a webhook first


async def test_a_replica_elected_to_poll_takes_over_from_a_webhook(bot: Bot, fake: FakeTelegram) -> None:
    fake.insecure_webhooks = True
    await bot.set_webhook("http://127.0.0.1:9/telegram/webhook", secret_token="s3cret")
    world = World(bot)
    await world.app.start(poll=True)
    try:
        assert fake.webhook.url == ""
        fake.user_message(SUPERGROUP_CHAT_ID, "/incidents")
        (reply,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=1)
        assert reply.text == "No incidents."
    finally:
        await world.app.stop()


async def test_a_second_poller_gets_409_which_is_logged_and_counted_not_a_crash(
    bot: Bot, fake: FakeTelegram, api_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    first = World(bot)
    await first.app.start(poll=True)
    async with telegram_bot(fake.token, api_url) as other_replica:
        second = World(other_replica)
        try:
            with caplog.at_level(logging.WARNING, logger="bot.adapters.telegram.updates"):
                await second.app.start(poll=True)
                await until(lambda: first.app.conflicts + second.app.conflicts >= 1, what="a 409 Conflict")
            assert any(c.status == 409 for c in fake.calls_to("getUpdates"))
            assert "another instance is polling with this bot token" in caplog.text
            assert first.app.running and second.app.running  # both alive, taking turns at getUpdates
        finally:
            await second.app.stop()
    fake.user_message(SUPERGROUP_CHAT_ID, "/incidents")  # the one left polls on
    (reply,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=1, timeout=40)
    assert reply.text == "No incidents."
    await first.app.stop()


async def test_stopping_cancels_a_command_stuck_past_the_grace_period(bot: Bot, fake: FakeTelegram) -> None:
    world = World(bot, grace=0.3)
    world.diagnose.gate.clear()  # the diagnosis never ends
    await world.app.start(poll=True)
    fake.user_message(SUPERGROUP_CHAT_ID, "/diagnose shop")
    await until(lambda: world.diagnose.calls, what="the diagnosis to start")
    await asyncio.wait_for(world.app.stop(), timeout=5)
    assert not world.app.app.running
    assert said(fake, SUPERGROUP_CHAT_ID) == [WORKING]


# ------------------------------------------------------------------------------------ commands


async def test_incidents_lists_them_in_the_chat(world: World, fake: FakeTelegram) -> None:
    await world.incident("a1", "shop")
    await world.incident("a2", "api")
    asked = fake.user_message(SUPERGROUP_CHAT_ID, "/incidents")
    (reply,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
    assert reply.bold() == ["Incidents"]
    assert "#1 triggered" in (reply.text or "") and "#2 triggered" in (reply.text or "")
    assert reply.reply_to is None  # not private: posted in the chat
    assert reply.parse_mode == "HTML" and "pre" in reply.entity_types()


async def test_a_command_addressed_to_the_bot_by_name_works_in_a_group_and_another_bots_is_not_ours(
    world: World, fake: FakeTelegram
) -> None:
    await world.incident()
    fake.user_message(GROUP_CHAT_ID, "/show@some_other_bot 1")
    asked = fake.user_message(GROUP_CHAT_ID, f"/show@{BOT_USERNAME} 1")
    (reply,) = await bot_reply(fake, GROUP_CHAT_ID)
    assert reply.bold()[0] == "🔴 Incident #1: Site502"
    assert "State: triggered" in (reply.text or "")
    assert reply.reply_to is None and asked.message_id > 0
    await quiet()
    assert len(fake.bot_messages(GROUP_CHAT_ID)) == 1  # nothing for the other bot's command


async def test_ack_and_resolve_change_the_incident_and_answer_the_asker(world: World, fake: FakeTelegram) -> None:
    incident = await world.incident()
    asked = fake.user_message(SUPERGROUP_CHAT_ID, f"/ack {incident.id}")
    (reply,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
    assert (reply.text, reply.reply_to) == ("Acknowledged #1.", asked.message_id)
    acked = world.store.incidents["1"]
    assert acked.state is IncidentState.ACKNOWLEDGED and acked.acknowledged_by == "@alice_oncall (telegram)"

    asked = fake.user_message(SUPERGROUP_CHAT_ID, "/resolve #1")
    (reply,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
    assert (reply.text, reply.reply_to) == ("Resolved #1.", asked.message_id)
    assert world.store.incidents["1"].state is IncidentState.RESOLVED


@pytest.mark.parametrize(
    ("typed", "error", "usage"),
    [
        ("/show", None, "Usage: /show ID"),
        ("/show abc", "'abc' is not an incident id (a number, like 12 or #12)", "Usage: /show ID"),
        ("/ack 1 2", None, "Usage: /ack ID"),
        ("/diagnose", None, "Usage: /diagnose TARGET [STATUS]"),
        ("/diagnose shop 200", "invalid HTTP status '200'", "Usage: /diagnose TARGET [STATUS]"),
        ("/runbook proxy_log", None, "Usage: /runbook NAME TARGET"),
        ("/runbook proxy_log $(reboot)", "TARGET '$(reboot)' is not a host", "Usage: /runbook NAME TARGET"),
        ("/explain", None, "Usage: /explain TEXT…"),
    ],
)
async def test_bad_arguments_get_the_usage_line_and_the_commands_and_run_nothing(
    world: World, fake: FakeTelegram, typed: str, error: str | None, usage: str
) -> None:
    asked = fake.user_message(SUPERGROUP_CHAT_ID, typed)
    (reply,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
    lines = (reply.text or "").splitlines()
    if error is None:
        assert lines[0] == usage
    else:
        assert lines[0].startswith(error) and lines[1] == usage
    assert any(line.startswith("/incidents") for line in lines) and any(line.startswith("/help") for line in lines)
    assert reply.reply_to == asked.message_id
    assert world.diagnose.calls == []


async def test_explain_reads_the_evidence_after_the_command_lines_and_all(world: World, fake: FakeTelegram) -> None:
    asked = fake.user_message(SUPERGROUP_CHAT_ID, f"/explain\n{REFUSED_LINE}\n{REFUSED_LINE}")
    working, result = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id, count=2)
    assert (working.text, working.reply_to) == (WORKING, asked.message_id)
    assert result.reply_to == asked.message_id
    assert (result.text or "").startswith("Suspected cause: Upstream is not running")
    assert "connect() failed (111: Connection refused)" in (result.text or "")


async def test_explain_as_a_reply_reads_the_message_it_replies_to(world: World, fake: FakeTelegram) -> None:
    pasted = fake.user_message(SUPERGROUP_CHAT_ID, f"{REFUSED_LINE}\n{REFUSED_LINE}", user=BOB)
    asked = fake.user_message(SUPERGROUP_CHAT_ID, f"/explain@{BOT_USERNAME}", reply_to=pasted.message_id)
    _, result = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id, count=2)
    assert (result.text or "").startswith("Suspected cause: Upstream is not running")


async def test_diagnose_says_working_at_once_and_answers_later_without_stalling_other_updates(
    world: World, fake: FakeTelegram
) -> None:
    world.diagnose.gate.clear()
    asked = fake.user_message(SUPERGROUP_CHAT_ID, "/diagnose shop 504")
    (working,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
    assert (working.text, working.reply_to) == (WORKING, asked.message_id)
    calls = await until(lambda: world.diagnose.calls, what="the diagnosis to start")
    assert calls == [("shop", 504, (), f"telegram:{ALICE['id']}")]

    listed = fake.user_message(SUPERGROUP_CHAT_ID, "/incidents")  # answered while the diagnosis runs
    (listing,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=listed.message_id)
    assert listing.text == "No incidents."

    world.diagnose.gate.set()
    (result,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=listing.message_id)
    assert result.reply_to == asked.message_id
    assert result.bold()[0] == "diagnose shop"
    assert "Suspected cause: Upstream is not running" in (result.text or "")


async def test_runbook_runs_one_runbook_for_an_operator(world: World, fake: FakeTelegram) -> None:
    asked = fake.user_message(SUPERGROUP_CHAT_ID, "/runbook proxy_log web-1")
    _, result = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id, count=2)
    assert world.diagnose.calls == [("web-1", None, ("proxy_log",), f"telegram:{ALICE['id']}")]
    assert result.bold()[0] == "runbook proxy_log on web-1"


async def test_diagnose_from_someone_not_allowed_to_operate_is_refused_and_runs_nothing(
    world: World, fake: FakeTelegram
) -> None:
    asked = fake.user_message(SUPERGROUP_CHAT_ID, "/diagnose shop", user=BOB)
    _, refused = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id, count=2)
    assert refused.reply_to == asked.message_id
    assert (refused.text or "").startswith("Sorry Bob, you may not run diagnoses, runbooks or changes here")
    assert "the operator role" in (refused.text or "") and "telegram.allow.roles" in (refused.text or "")
    assert world.diagnose.calls == []


async def test_oncall_help_and_start_answer(world: World, fake: FakeTelegram) -> None:
    asked = fake.user_message(SUPERGROUP_CHAT_ID, "/oncall")
    (oncall,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
    assert (oncall.text or "").startswith("No on-call rotation is configured")
    for typed in ("/help", "/start"):
        asked = fake.user_message(SUPERGROUP_CHAT_ID, typed)
        (helped,) = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=asked.message_id)
        lines = (helped.text or "").splitlines()
        assert lines[0] == "Commands" and helped.reply_to == asked.message_id
        assert [line.split()[0] for line in lines[1 : 1 + len(COMMANDS)]] == [f"/{c.name}" for c in COMMANDS]


async def test_an_unknown_command_is_answered_only_when_addressed_to_the_bot(world: World, fake: FakeTelegram) -> None:
    fake.user_message(GROUP_CHAT_ID, "/weather")  # maybe another bot's
    asked = fake.user_message(GROUP_CHAT_ID, f"/weather@{BOT_USERNAME}")
    (reply,) = await bot_reply(fake, GROUP_CHAT_ID)
    assert (reply.text or "").startswith("Unknown command /weather.") and reply.reply_to == asked.message_id
    await quiet()
    assert len(fake.bot_messages(GROUP_CHAT_ID)) == 1


async def test_in_a_forum_topic_every_answer_stays_in_the_topic(world: World, fake: FakeTelegram, bot: Bot) -> None:
    topic = await bot.create_forum_topic(FORUM_CHAT_ID, "shop 502 #1")
    thread = topic.message_thread_id
    listed = fake.user_message(FORUM_CHAT_ID, "/incidents", thread_id=thread)
    acked = fake.user_message(FORUM_CHAT_ID, "/ack 9", thread_id=thread)
    first, second = await bot_reply(fake, FORUM_CHAT_ID, after=acked.message_id, count=2)
    replies = {m.reply_to: m for m in (first, second)}
    assert replies[None].text == "No incidents." and replies[acked.message_id].text == "No incident #9."
    assert all(m.thread_id == thread and m.is_topic_message for m in (first, second))
    assert listed.message_id < acked.message_id


# ------------------------------------------------------------------------------------- buttons


async def card_in(world: World, bot: Bot, chat_id: int) -> int:
    """Post incident #1's status card with the real sender (as the outbox does); its message id."""
    sender = TelegramSender(bot, world.store, lambda incident: str(chat_id), world.clock, gate=world.gate)
    incident = world.store.incidents["1"]
    (opened,) = [m for m in world.store.messages if m.kind == "opened"]
    await asyncio.wait_for(sender.send(opened, render_message(opened, incident, None), incident), 10)
    thread = await world.store.get_thread("1", "telegram")
    assert thread is not None
    return int(thread.root)


async def redeliver(world: World, bot: Bot, chat_id: int) -> None:
    """Deliver the outbox messages queued since the card, as the outbox worker would."""
    sender = TelegramSender(bot, world.store, lambda incident: str(chat_id), world.clock, gate=world.gate)
    for message in [m for m in world.store.messages if m.kind != "opened"]:
        incident = world.store.incidents[message.incident_id]
        diagnosis = read_diagnosis(await world.store.get_diagnosis(incident.id))
        await asyncio.wait_for(sender.send(message, render_message(message, incident, diagnosis), incident), 10)


async def test_a_button_press_is_answered_at_once_with_the_outcome_and_acted_on(
    world: World, fake: FakeTelegram, bot: Bot
) -> None:
    await world.incident()
    card = await card_in(world, bot, SUPERGROUP_CHAT_ID)
    query = fake.click(SUPERGROUP_CHAT_ID, card, "acknowledge:1")
    answer = await until(lambda: fake.answers.get(query), what="the callback answer")
    assert answer["text"] == "Acknowledged #1."
    assert world.store.incidents["1"].state is IncidentState.ACKNOWLEDGED
    assert world.store.incidents["1"].acknowledged_by == "@alice_oncall (telegram)"
    await redeliver(world, bot, SUPERGROUP_CHAT_ID)
    shown = fake.message(SUPERGROUP_CHAT_ID, card)
    assert "Acknowledge" not in [label for label, _ in shown.buttons] and "State: acknowledged" in (shown.text or "")
    assert said(fake, SUPERGROUP_CHAT_ID)[1:] == ["Acknowledged by @alice_oncall (telegram)"]  # the thread's line


async def test_a_refused_button_press_is_answered_and_recorded_on_the_timeline(
    world: World, fake: FakeTelegram, bot: Bot
) -> None:
    await world.incident()
    card = await card_in(world, bot, FORUM_CHAT_ID)
    query = fake.click(FORUM_CHAT_ID, card, "resolve:1", user=BOB)
    answer = await until(lambda: fake.answers.get(query), what="the callback answer")
    assert answer["text"].startswith("Sorry Bob, you may not acknowledge, resolve, escalate or re-run here")
    assert world.store.incidents["1"].state is IncidentState.TRIGGERED
    refused = [e for e in await world.store.timeline("1") if e.kind == "refused"]
    assert [(e.text, e.actor) for e in refused] == [("resolve refused to Bob (telegram)", "Bob (telegram)")]
    await quiet()
    assert len(fake.bot_messages(FORUM_CHAT_ID)) == 1  # only the card: the refusal went to Bob alone


async def test_a_slow_action_is_answered_working_and_its_outcome_follows_as_a_reply_to_the_card(
    world: World, fake: FakeTelegram, bot: Bot
) -> None:
    await world.incident()
    card = await card_in(world, bot, FORUM_CHAT_ID)
    world.escalate.gate.clear()  # paging takes a while
    query = fake.click(FORUM_CHAT_ID, card, "escalate:1")
    answer = await until(lambda: fake.answers.get(query), what="the callback answer")
    assert answer.get("text") == WORKING and world.escalate.calls == [("1", "@alice_oncall (telegram)")]
    world.escalate.gate.set()
    (outcome,) = await until(lambda: fake.replies_to(FORUM_CHAT_ID, card), what="the outcome")
    assert outcome.text == "Escalated #1: paged the secondary on call"
    assert outcome.thread_id == fake.message(FORUM_CHAT_ID, card).thread_id  # in the incident's topic
    assert [e.kind for e in await world.store.timeline("1")][-1] == "escalated"


async def test_a_button_that_is_not_ours_is_answered_and_nothing_is_done(
    world: World, fake: FakeTelegram, bot: Bot
) -> None:
    sent = await bot.send_message(SUPERGROUP_CHAT_ID, "old card")
    query = fake.click(SUPERGROUP_CHAT_ID, sent.message_id, "v1|ack|payload")
    answer = await until(lambda: fake.answers.get(query), what="the callback answer")
    assert answer["text"] == "This button does not work any more."


# --------------------------------------------------------------------------- who is answered


async def test_updates_from_chats_the_bot_does_not_serve_are_ignored_and_counted(bot: Bot, fake: FakeTelegram) -> None:
    world = World(bot, chats=["@ops_room"], users=[str(ALICE["id"])])  # the supergroup, by its @username
    await world.app.start(poll=True)
    try:
        await world.incident()
        fake.user_message(GROUP_CHAT_ID, "/ack 1")
        sent = await bot.send_message(GROUP_CHAT_ID, "card")
        query = fake.click(GROUP_CHAT_ID, sent.message_id, "resolve:1")
        fake.user_message(PRIVATE_CHAT_ID, "/incidents", user=ALICE)  # a listed user's private chat: served
        fake.user_message(SUPERGROUP_CHAT_ID, "/incidents")
        (private,) = await bot_reply(fake, PRIVATE_CHAT_ID)
        (group,) = await bot_reply(fake, SUPERGROUP_CHAT_ID)
        assert "#1 triggered" in (private.text or "") and "#1 triggered" in (group.text or "")
        answer = await until(lambda: fake.answers.get(query), what="the silent answer")
        assert "text" not in answer
        await until(lambda: world.app.ignored == 2, what="two ignored updates")
        assert world.store.incidents["1"].state is IncidentState.TRIGGERED
        assert said(fake, GROUP_CHAT_ID) == ["card"]
    finally:
        await world.app.stop()


async def test_a_strangers_private_chat_is_ignored(bot: Bot, fake: FakeTelegram) -> None:
    if MALLORY["id"] not in fake.chat_ids:
        fake.add_chat(FakeChat(MALLORY["id"], "private", first_name="Mallory", username="mallory"))
    world = World(bot, users=[str(ALICE["id"])])
    await world.app.start(poll=True)
    try:
        fake.user_message(MALLORY["id"], "/incidents", user=MALLORY)
        await until(lambda: world.app.ignored == 1, what="the ignored update")
        await quiet()
        assert said(fake, MALLORY["id"]) == []
    finally:
        await world.app.stop()
