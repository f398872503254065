"""The card's buttons and who may do what, through the real Slack front door (HTTP mode; see inbound.py):
each button acknowledged at once and acted on after, on the timeline with the Slack user; refusals answered
and recorded; user group membership granting ``respond``, read from Slack and kept for five minutes;
unexpected failures shown only as a reference id that is also in the log; and the start-up checks."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastapi import FastAPI

from bot.adapters.slack.app import SlackApp
from bot.adapters.slack.sender import slack_client
from bot.core.cards import ACKNOWLEDGE, ESCALATE, RERUN, RESOLVE
from bot.core.chat_commands import Actor, ChatReply, Operations, ParsedCommand
from bot.core.incidents import IncidentState
from bot.errors import ConfigError
from bot.testing import MemoryStore
from bot.testing.slack_api import FakeSlack
from tests.adapters.slack.inbound import (
    ALICE,
    BOB,
    CAROL,
    INCIDENTS,
    OTHER,
    RESPONDERS,
    Bench,
    GatedDiagnose,
    bench,
    interactive,
)


@pytest.fixture
async def wired(slack: FakeSlack) -> AsyncIterator[Bench]:
    async with bench(slack) as served:
        yield served


def shown(entry: dict[str, Any]) -> str:
    return entry["text"] + "\n" + "\n".join(str(b.get("text", {}).get("text", "")) for b in entry["blocks"])


async def incident_state(wired: Bench) -> IncidentState:
    found = await wired.store.get_incident("1")
    assert found is not None
    return found.state


@pytest.mark.parametrize(
    ("action", "kind", "after", "said"),
    [
        (ACKNOWLEDGE, "acknowledged", IncidentState.ACKNOWLEDGED, "Acknowledged #1."),
        (RERUN, "diagnosis_queued", IncidentState.TRIGGERED, "Re-running the diagnosis of #1."),
        (ESCALATE, "escalated", IncidentState.TRIGGERED, "Escalated #1: no escalation policy is configured"),
        (RESOLVE, "resolved", IncidentState.RESOLVED, "Resolved #1."),
    ],
)
async def test_each_card_button_is_acked_at_once_and_acted_on_as_the_slack_user(
    wired: Bench, action: str, kind: str, after: IncidentState, said: str
) -> None:
    card = await wired.card()
    started = time.monotonic()
    response, _ = await wired.click(action, "1", message_ts=card)
    assert (response.status_code, response.text) == (200, "") and time.monotonic() - started < 3
    await wired.app.drain()
    (event,) = [e for e in wired.store.events if e.kind == kind]
    assert event.actor == "@alice (slack)" and event.incident_id == "1"
    assert await incident_state(wired) is after
    (private,) = wired.slack.ephemerals
    assert (private["user"], private["channel"]) == (ALICE, INCIDENTS) and said in shown(private)
    assert [m.ts for m in wired.slack.history(INCIDENTS)] == [card]  # nothing else said in the channel


async def test_a_click_is_acked_before_the_work_and_the_work_happens_after(wired: Bench) -> None:
    card = await wired.card()
    wired.slack.stall(1.5, methods=["usergroups.users.list"])  # who is clicking takes Slack a while to say
    started = time.monotonic()
    response, _ = await wired.click(ACKNOWLEDGE, "1", message_ts=card)
    took = time.monotonic() - started
    assert response.status_code == 200 and took < 1.0
    assert wired.store.events == []  # acknowledged to Slack, not acted on yet
    await wired.app.drain()
    assert time.monotonic() - started >= 1.5
    assert [(e.kind, e.actor) for e in wired.store.events] == [("acknowledged", "@alice (slack)")]


async def test_a_refused_click_is_answered_privately_and_recorded_on_the_timeline(wired: Bench) -> None:
    card = await wired.card()
    response, _ = await wired.click(ACKNOWLEDGE, "1", user=CAROL, message_ts=card)
    assert response.status_code == 200
    await wired.app.drain()
    assert await incident_state(wired) is IncidentState.TRIGGERED
    (event,) = wired.store.events
    assert (event.kind, event.actor) == ("refused", "@carol (slack)")
    (private,) = wired.slack.ephemerals
    assert private["user"] == CAROL
    assert "Sorry @carol, you may not acknowledge" in shown(private) and "slack.allow.roles" in shown(private)


async def test_a_refused_diagnosis_is_answered_privately_and_nothing_runs(wired: Bench) -> None:
    response, url = await wired.command("diagnose web-1 502", user=CAROL)
    assert response.status_code == 200
    await wired.app.drain()
    (reply,) = wired.slack.responses(url)
    assert reply["response_type"] == "ephemeral" and "may not run diagnoses, runbooks or changes" in reply["text"]
    assert wired.diagnose.calls == [] and wired.slack.history(INCIDENTS) == []


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


async def test_user_group_membership_grants_respond_and_is_read_again_after_five_minutes(slack: FakeSlack) -> None:
    clock = Clock()
    async with bench(slack, clock=clock) as wired:
        first, url = await wired.command("ack 1", user=BOB, channel=OTHER)  # bob is only in S0RESPONDERS
        assert first.status_code == 200
        await wired.app.drain()
        assert "Acknowledged #1." in wired.slack.responses(url)[0]["text"]
        assert [(e.kind, e.actor) for e in wired.store.events] == [("acknowledged", "@bob (slack)")]

        wired.slack.usergroups[RESPONDERS] = []  # bob leaves the group; the bot still knows him as a member
        clock.now += 299
        _, url = await wired.command("resolve 1", user=BOB, channel=OTHER)
        await wired.app.drain()
        assert "Resolved #1." in wired.slack.responses(url)[0]["text"]
        assert len(wired.slack.calls_to("usergroups.users.list")) == 1

        clock.now += 2  # five minutes on: asked again
        _, url = await wired.command("ack 1", user=BOB, channel=OTHER)
        await wired.app.drain()
        assert "Sorry @bob" in wired.slack.responses(url)[0]["text"]
        assert len(wired.slack.calls_to("usergroups.users.list")) == 2
        assert wired.store.events[-1].kind == "refused"


async def test_a_group_slack_cannot_list_grants_nothing(wired: Bench) -> None:
    wired.slack.fail(200, error="missing_scope", methods=["usergroups.users.list"])
    card = await wired.card()
    await wired.click(ACKNOWLEDGE, "1", user=BOB, message_ts=card)
    await wired.app.drain()
    assert [(e.kind, e.actor) for e in wired.store.events] == [("refused", "@bob (slack)")]


async def test_the_name_comes_from_users_info_only_when_the_request_has_none(wired: Bench) -> None:
    card = await wired.card()
    payload = wired.slack.block_actions(ACKNOWLEDGE, "1", user=ALICE, channel=INCIDENTS, message_ts=card)
    del payload["user"]["username"]
    await wired.post(interactive(payload))
    await wired.app.drain()
    assert [e.actor for e in wired.store.events] == ["@alice (slack)"]
    assert [c.args["user"] for c in wired.slack.calls_to("users.info")] == [ALICE]
    await wired.click(RESOLVE, "1", message_ts=card)
    await wired.app.drain()
    assert len(wired.slack.calls_to("users.info")) == 1  # the click named alice itself


# -------------------------------------------------------------------------------- failures


class Broken:
    """Operations that fail in a way ChatOps never should: the adapter must still answer, safely."""

    async def run(self, actor: Actor, command: ParsedCommand) -> ChatReply:
        raise RuntimeError("password=hunter2 in a connection string")

    async def act(self, actor: Actor, action: str, incident: str) -> ChatReply:
        raise RuntimeError("password=hunter2 in a connection string")


def broken(store: MemoryStore, diagnose: GatedDiagnose) -> Operations:
    return Broken()


async def test_an_unexpected_failure_is_answered_with_a_reference_that_is_also_in_the_log(
    slack: FakeSlack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="bot.adapters.slack.app")
    async with bench(slack, ops=broken) as wired:
        response, url = await wired.command("list")
        assert response.status_code == 200
        card = await wired.card()
        click, clicked = await wired.click(RESOLVE, "1", message_ts=card)
        assert click.status_code == 200
        await wired.app.drain()
        replies = [*wired.slack.responses(url), *wired.slack.responses(clicked)]
    assert len(replies) == 2
    for reply in replies:
        assert reply["response_type"] == "ephemeral"
        assert "hunter2" not in str(reply) and "Traceback" not in str(reply)
        ref = re.search(r"reference ([0-9a-f]{8})", reply["text"])
        assert ref is not None
        (logged,) = [r for r in caplog.records if ref.group(1) in r.getMessage()]
        written = logging.Formatter().format(logged)  # as a log handler writes it (redacted by the bot's filter)
        assert "Traceback (most recent call last)" in written and "RuntimeError: password=" in written


# ------------------------------------------------------------------------------- lifecycle


def app_for(slack: FakeSlack, token: str, **kwargs: Any) -> SlackApp:
    return SlackApp(slack_client(token, slack.api_url), Broken(), **{"signing_secret": None, **kwargs})


async def test_start_checks_the_bot_token_once_and_a_refused_token_names_slack_bot_token(slack: FakeSlack) -> None:
    app = app_for(slack, slack.token)
    await app.start(socket_mode=False)
    assert app.identity is not None and app.identity["user_id"] == slack.bot_user_id
    assert len(slack.calls_to("auth.test")) == 1 and not app.connected
    await app.stop()

    with pytest.raises(ConfigError) as refused:
        await app_for(slack, "xoxb-revoked").start()
    assert refused.value.field == "SLACK_BOT_TOKEN" and "invalid_auth" in refused.value.user_message()


async def test_http_mode_is_refused_without_a_signing_secret(slack: FakeSlack) -> None:
    with pytest.raises(ConfigError) as refused:
        app_for(slack, slack.token).mount(FastAPI())
    assert refused.value.field == "SLACK_SIGNING_SECRET"
