"""Answers to people, with the real Bot client against the fake Bot API: split within Telegram's 4096
units with only the first part replying to the asker, paced by the flood gate the outbox's sender
shares (also on the real clock), a 429 obeyed, refused markup resent as plain text, a refusal dropped
rather than raised; where an answer goes (a forum topic, never an ordinary group's reply chain)."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from telegram import Bot, Message

from bot.adapters.telegram.replies import MAX_ANSWER_TEXT, Place, Replier, short_text
from bot.adapters.telegram.sender import FloodGate
from bot.core.blocks import Actions, Button, Code, Header, Section
from bot.core.chat_commands import ChatReply
from bot.testing.telegram_api import FORUM_CHAT_ID, GROUP_CHAT_ID, PRIVATE_CHAT_ID, SUPERGROUP_CHAT_ID, FakeTelegram
from tests.adapters.telegram.inbound import T0


class Clock:
    """Fake seconds shared by the flood gate and the fake Bot API: waiting moves time on, nothing sleeps."""

    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


async def send(replier: Replier, place: Place, reply: ChatReply) -> list[Message]:
    """``replier.send`` bounded in time: a gate that never lets a message through fails the test."""
    return await asyncio.wait_for(replier.send(place, reply), 10)


def units(text: str | None) -> int:
    return len((text or "").encode("utf-16-le")) // 2


async def test_a_long_answer_is_split_within_4096_units_and_only_the_first_part_replies_to_the_asker(
    bot: Bot, fake: FakeTelegram
) -> None:
    asked = fake.user_message(SUPERGROUP_CHAT_ID, "/show 1")
    lines = [f"line {n:03d} <&> " + "é🙂" * 40 for n in range(120)]
    reply = ChatReply([Header("Timeline"), Section("\n".join(lines))], private=True, incident_id="1")
    sent = await send(Replier(bot, FloodGate(per_chat_interval=0.0)), Place(SUPERGROUP_CHAT_ID, True, None, 1), reply)
    shown = fake.bot_messages(SUPERGROUP_CHAT_ID)
    assert len(sent) == len(shown) >= 3
    assert all(units(m.text) <= 4096 for m in shown)
    assert [m.reply_to for m in shown] == [asked.message_id] + [None] * (len(shown) - 1)
    text = "\n".join(m.text or "" for m in shown)
    assert all(line in text for line in lines)  # every line whole: cuts fall at line ends


async def test_answers_and_incident_posts_share_the_gate_one_message_a_second_per_chat(
    bot: Bot, fake: FakeTelegram
) -> None:
    clock = Clock()
    fake.clock = clock
    gate = FloodGate(now=clock, sleep=clock.sleep)
    replier = Replier(bot, gate)
    await gate.wait(GROUP_CHAT_ID, group=True)  # the outbox's sender just posted there
    await bot.send_message(GROUP_CHAT_ID, "incident card")
    for n in range(3):
        await send(replier, Place(GROUP_CHAT_ID, True), ChatReply([Section(f"answer {n}")]))
    times = [c.at for c in fake.calls_to("sendMessage")]
    assert [round(b - a, 3) for a, b in itertools.pairwise(times)] == [1.0, 1.0, 1.0]


async def test_an_answer_through_a_gate_on_the_real_clock_goes_out_at_once(bot: Bot, fake: FakeTelegram) -> None:
    replier = Replier(bot, FloodGate())  # what serve shares: time.monotonic and asyncio.sleep
    started = time.monotonic()
    await send(replier, Place(PRIVATE_CHAT_ID, False), ChatReply([Section("one")]))
    await send(replier, Place(PRIVATE_CHAT_ID, False), ChatReply([Section("two")]))
    assert [m.text for m in fake.bot_messages(PRIVATE_CHAT_ID)] == ["one", "two"]
    assert 1.0 <= time.monotonic() - started < 2.5  # one message a second to a chat


async def test_a_429_holds_the_chat_and_the_answer_goes_out_after_retry_after(bot: Bot, fake: FakeTelegram) -> None:
    clock = Clock()
    fake.clock = clock
    fake.fail(429, retry_after=7, times=1, method="sendMessage")
    replier = Replier(bot, FloodGate(now=clock, sleep=clock.sleep))
    sent = await send(replier, Place(SUPERGROUP_CHAT_ID, True), ChatReply([Section("after the flood")]))
    attempts = fake.calls_to("sendMessage")
    assert [c.status for c in attempts] == [429, 200] and len(sent) == 1
    assert attempts[1].at - attempts[0].at >= 7.0
    assert [m.text for m in fake.bot_messages(SUPERGROUP_CHAT_ID)] == ["after the flood"]


async def test_markup_telegram_refuses_is_sent_again_as_plain_text(bot: Bot, fake: FakeTelegram) -> None:
    fake.fail(400, times=1, method="sendMessage", description="Bad Request: can't parse entities: Unsupported tag")
    replier = Replier(bot, FloodGate(per_chat_interval=0.0))
    await send(replier, Place(SUPERGROUP_CHAT_ID, True), ChatReply([Header("Cause"), Code(("a < b",))]))
    first, second = fake.calls_to("sendMessage")
    assert (first.status, first.params["parse_mode"]) == (400, "HTML")
    assert second.ok and "parse_mode" not in second.params
    assert [m.text for m in fake.bot_messages(SUPERGROUP_CHAT_ID)] == ["Cause\na < b"]


async def test_an_answer_telegram_refuses_for_good_is_dropped_not_raised(bot: Bot, fake: FakeTelegram) -> None:
    fake.fail(403, times=5, method="sendMessage")
    replier = Replier(bot, FloodGate(per_chat_interval=0.0))
    sent = await send(replier, Place(SUPERGROUP_CHAT_ID, True), ChatReply([Section("a"), Section("b" * 5000)]))
    assert sent == [] and len(fake.calls_to("sendMessage")) == 1  # the rest of the answer is not tried


def message(chat: dict[str, Any], **extra: Any) -> Message:
    return Message.de_json({"message_id": 9, "date": int(T0.timestamp()), "chat": chat, **extra}, None)


def test_an_answer_stays_in_a_forum_topic_but_not_in_an_ordinary_groups_reply_chain() -> None:
    forum = {"id": FORUM_CHAT_ID, "type": "supergroup", "is_forum": True}
    in_topic = message(forum, message_thread_id=4, is_topic_message=True)
    assert Place.of(in_topic, reply=False) == Place(FORUM_CHAT_ID, True, 4, None)
    assert Place.of(message(forum), reply=True) == Place(FORUM_CHAT_ID, True, None, 9)  # the General topic
    chain = message({"id": GROUP_CHAT_ID, "type": "group"}, message_thread_id=3)  # a reply chain's id
    assert Place.of(chain, reply=True) == Place(GROUP_CHAT_ID, True, None, 9)
    private = message({"id": PRIVATE_CHAT_ID, "type": "private"})
    assert Place.of(private, reply=False) == Place(PRIVATE_CHAT_ID, False, None, None)


def test_only_a_short_keyboardless_answer_fits_a_button_press_answer() -> None:
    assert short_text(ChatReply([Section("Acknowledged #1.")], private=True)) == "Acknowledged #1."
    assert short_text(ChatReply([Section("x" * MAX_ANSWER_TEXT)])) == "x" * MAX_ANSWER_TEXT
    assert short_text(ChatReply([Section("x" * (MAX_ANSWER_TEXT + 1))])) is None
    assert short_text(ChatReply([Section("🙂" * 101)])) is None  # 202 UTF-16 units
    assert short_text(ChatReply([Section("ok"), Actions((Button("Ack", "acknowledge", "1"),))])) is None
    assert short_text(ChatReply([])) is None
