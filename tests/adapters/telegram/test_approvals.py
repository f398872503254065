"""Approvals from Telegram (issue #9 item 5), through the real TelegramApp and the fake Bot API: operator
roles come from Telegram user ids scoped to one chat; ``/request`` posts the request with Approve/Deny
buttons (sent with the real sender); the asker's own press is answered and runs nothing; another
operator's press in that chat runs it once; an operator of another chat cannot."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from telegram import Bot

from bot.adapters.telegram.sender import TelegramSender
from bot.config import ChatPermissions, RoleGrant
from bot.core.approvals import ApprovalState
from bot.core.cards import render_message
from bot.services.approvals import Approvals
from bot.services.chatops import Policy
from bot.testing.telegram_api import FORUM_CHAT_ID, SUPERGROUP_CHAT_ID, FakeTelegram
from tests.adapters.telegram.inbound import ALICE, SERVED, World, bot_reply, until
from tests.services.test_approvals import Restart, Runs

DAVE = {"id": 717171, "is_bot": False, "first_name": "Dave"}  # operator in the forum chat only


@pytest.fixture
async def world(bot: Bot, fake: FakeTelegram) -> AsyncIterator[World]:
    world = World(bot)
    grants = [RoleGrant(role="operator", users=[str(ALICE["id"]), str(DAVE["id"])], channels=[str(FORUM_CHAT_ID)])]
    world.ops.policies["telegram"] = Policy(ChatPermissions(roles=grants), served=SERVED)
    world.ops.approvals = Approvals(
        world.store,
        runbooks={"restart_unit": Restart},
        hosts={"shop": ["app-1"]},
        run=Runs(),
        clock=world.clock,
        expire_after=timedelta(minutes=15),
    )
    await world.app.start(poll=True)
    yield world
    await world.app.stop()


async def test_a_request_is_approved_by_a_second_operator_of_that_chat_only(
    world: World, fake: FakeTelegram, bot: Bot
) -> None:
    await world.incident()
    asked = fake.user_message(FORUM_CHAT_ID, "/request 1 restart_unit app-1 unit=gunicorn.service")
    (reply,) = await bot_reply(fake, FORUM_CHAT_ID, after=asked.message_id)
    assert "another operator must approve it" in (reply.text or "")
    (approval,) = world.store.approval_records.values()
    sender = TelegramSender(bot, world.store, lambda incident: str(FORUM_CHAT_ID), world.clock, gate=world.gate)
    (post,) = [m for m in world.store.messages if m.payload.get("approval")]
    incident = world.store.incidents["1"]
    await asyncio.wait_for(sender.send(post, render_message(post, incident, None), incident), 10)
    shown = fake.bot_messages(FORUM_CHAT_ID)[-1]
    assert [label for label, _ in shown.buttons] == ["Approve", "Deny"]
    assert (shown.buttons[0][1], shown.buttons[1][1]) == (f"approve:{approval.id}", f"deny:{approval.id}")

    own = fake.click(FORUM_CHAT_ID, shown.message_id, f"approve:{approval.id}", user=ALICE)
    answer = await until(lambda: fake.answers.get(own), what="the answer to Alice")
    assert "another operator must approve it" in answer["text"]
    assert world.store.approval_records[approval.id].state is ApprovalState.PENDING

    elsewhere = fake.user_message(SUPERGROUP_CHAT_ID, f"/approve {approval.id}", user=DAVE)
    _, refused = await bot_reply(fake, SUPERGROUP_CHAT_ID, after=elsewhere.message_id, count=2)  # slow: ack first
    assert "needs the operator role" in (refused.text or "")
    assert world.store.approval_records[approval.id].state is ApprovalState.PENDING

    press = fake.click(FORUM_CHAT_ID, shown.message_id, f"approve:{approval.id}", user=DAVE)
    await until(lambda: fake.answers.get(press), what="the answer to Dave")
    final = await until(
        lambda: (a := world.store.approval_records[approval.id]).state is ApprovalState.DONE and a,
        what="the run",
    )
    assert final.decided_by == "Dave (telegram)" and final.decider == f"telegram:{DAVE['id']}"
    assert final.asked_by == "@alice_oncall (telegram)"
