"""The Slack sender, with the real slack_sdk AsyncWebClient against the fake Slack Web API: one thread per
incident (the card at the root, edited in place; posts as replies), the thread recorded where Slack says it
is, a message offered again found by its metadata and not posted twice, a refused oversized message sent
again as plain text, and every Slack failure translated to the chat error the outbox acts on."""

from __future__ import annotations

import socket
import time

import pytest

from bot.adapters.slack.errors import DEFAULT_RETRY_AFTER, SlackRejected, retry_after
from bot.adapters.slack.sender import EVENT_TYPE, SlackSender, channel_by_service, slack_client
from bot.core.blocks import Block, Code, Section
from bot.core.cards import render_message, status_card
from bot.core.incidents import Incident, IncidentState
from bot.core.models import Finding, Severity
from bot.errors import ChatRejected, RateLimited, TransientChatError
from bot.testing import MemoryStore
from bot.testing.slack_api import FakeSlack
from tests.adapters.slack.helpers import T0, Clock, make_incident, outbox, stored

FINDING = Finding(
    kind="nginx.upstream_refused",
    severity=Severity.CRITICAL,
    host="web-1",
    summary="12 connect() refused to 127.0.0.1:8000",
    evidence=("2026/11/30 03:25:13 [error] 1#1: *1 connect() failed (111: Connection refused) <upstream>",),
)


def sender(slack: FakeSlack, store: MemoryStore, channel: str | None = "#incidents", **kw: float) -> SlackSender:
    client = slack_client(slack.token, slack.api_url)
    return SlackSender(client, store, lambda _incident: channel, Clock(), **kw)


async def setup(slack: FakeSlack, channel: str | None = "#incidents") -> tuple[SlackSender, MemoryStore, Incident]:
    store = MemoryStore()
    incident = await stored(store, make_incident(7))
    return sender(slack, store, channel), store, incident


def card(incident: Incident) -> list[Block]:
    return status_card(incident, None)


async def test_opened_posts_the_card_and_records_the_thread_where_slack_says_it_is(slack: FakeSlack) -> None:
    chat, store, incident = await setup(slack)  # configured by name; Slack answers with the id
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    thread = await store.get_thread("7", "slack")
    assert thread is not None and thread.channel == "C0INCIDENTS"
    (root,) = slack.history("C0INCIDENTS")
    assert root.ts == thread.root
    assert root.metadata == {"event_type": EVENT_TYPE, "event_payload": {"outbox_id": "o1", "incident_id": "7"}}
    assert root.blocks[0]["type"] == "header" and "Incident #7" in root.blocks[0]["text"]["text"]
    buttons = [e for b in root.blocks if b["type"] == "actions" for e in b["elements"]]
    assert {(e["action_id"], e["value"]) for e in buttons} >= {("acknowledge", "7"), ("resolve", "7")}
    assert root.text.startswith("🔴 Incident #7")


async def test_a_whole_incident_is_one_thread_with_the_card_edited_in_place(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    posts = [
        outbox("p1", incident, "post", findings=[FINDING.model_dump(mode="json")], probe=True),
        outbox("p2", incident, "post", findings=[FINDING.model_dump(mode="json")], host="web-1"),
        outbox("p3", incident, "post", text="Acknowledged by alice"),
    ]
    for post in posts:
        await chat.send(post, render_message(post, incident, None), incident)
    acked = incident.model_copy(update={"state": IncidentState.ACKNOWLEDGED, "acknowledged_at": T0})
    await chat.send(outbox("u1", acked, "updated"), card(acked), acked)
    done = acked.model_copy(update={"state": IncidentState.RESOLVED, "resolved_at": T0})
    await chat.send(outbox("r1", done, "resolved"), card(done), done)

    (root,) = slack.history("C0INCIDENTS")
    thread = slack.thread("C0INCIDENTS", root.ts)
    assert [m.outbox_id for m in thread] == ["o1", "p1", "p2", "p3"]
    assert all(m.thread_ts == root.ts for m in thread[1:])
    assert "Confirmation probe" in thread[1].text and "web-1: runbooks done" in thread[2].text
    assert "&lt;upstream&gt;" in thread[2].text  # evidence quoted, escaped
    assert len(root.edits) == 2 and "✅ Incident #7" in root.blocks[0]["text"]["text"]
    assert not any(b["type"] == "actions" for b in root.blocks)  # a resolved card has no buttons
    assert len(slack.calls_to("chat.update", ok=True)) == 2


async def test_a_post_before_any_card_starts_the_thread_with_the_card(slack: FakeSlack) -> None:
    chat, store, incident = await setup(slack)
    post = outbox("p1", incident, "post", text="Reopened: shop fires again")
    await chat.send(post, render_message(post, incident, None), incident)
    (root,) = slack.history("C0INCIDENTS")
    assert "Incident #7" in root.text and root.outbox_id == "p1"
    assert [m.text for m in slack.thread("C0INCIDENTS", root.ts)[1:]] == ["Reopened: shop fires again"]
    thread = await store.get_thread("7", "slack")
    assert thread is not None and thread.root == root.ts


async def test_a_card_edit_with_no_thread_yet_posts_the_card(slack: FakeSlack) -> None:
    chat, store, incident = await setup(slack)
    await chat.send(outbox("u1", incident, "updated"), card(incident), incident)
    (root,) = slack.history("C0INCIDENTS")
    assert root.outbox_id == "u1" and slack.calls_to("chat.update") == []
    assert await store.get_thread("7", "slack") is not None


async def test_a_card_deleted_in_slack_is_posted_again_as_a_new_root(slack: FakeSlack) -> None:
    chat, store, incident = await setup(slack)
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    old = await store.get_thread("7", "slack")
    assert old is not None
    await slack_client(slack.token, slack.api_url).chat_delete(channel=old.channel, ts=old.root)
    await chat.send(outbox("u1", incident, "updated"), card(incident), incident)
    new = await store.get_thread("7", "slack")
    assert new is not None and new.root != old.root
    assert [m.ts for m in slack.history("C0INCIDENTS")] == [new.root]


async def test_a_reply_offered_again_after_slack_took_it_is_not_posted_twice(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    post = outbox("p1", incident, "post", text="Acknowledged by alice")
    await chat.send(post, render_message(post, incident, None), incident)
    again = outbox("p1", incident, "post", attempts=2, text="Acknowledged by alice")
    await chat.send(again, render_message(again, incident, None), incident)
    (root,) = slack.history("C0INCIDENTS")
    assert [m.outbox_id for m in slack.thread("C0INCIDENTS", root.ts)] == ["o1", "p1"]
    assert len(slack.calls_to("conversations.replies", ok=True)) == 1


async def test_a_reply_offered_again_that_never_reached_slack_is_posted_once(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    again = outbox("p1", incident, "post", attempts=3, text="Escalated to bob")
    await chat.send(again, render_message(again, incident, None), incident)
    (root,) = slack.history("C0INCIDENTS")
    assert [m.outbox_id for m in slack.thread("C0INCIDENTS", root.ts)] == ["o1", "p1"]


async def test_a_card_posted_but_never_recorded_is_found_again_not_posted_twice(slack: FakeSlack) -> None:
    chat, store, incident = await setup(slack, "C0INCIDENTS")  # history needs the id, not the name
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    first = store.threads.pop(("7", "slack"))  # the bot died before it recorded the thread
    await chat.send(outbox("o1", incident, "opened", attempts=2), card(incident), incident)
    assert [m.ts for m in slack.history("C0INCIDENTS")] == [first.root]
    thread = await store.get_thread("7", "slack")
    assert thread is not None and (thread.channel, thread.root) == ("C0INCIDENTS", first.root)
    assert len(slack.calls_to("conversations.history", ok=True)) == 1


async def test_a_refused_look_up_still_posts_the_message_rather_than_losing_it(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    slack.fail(200, error="missing_scope", methods=["conversations.history"])
    await chat.send(outbox("o1", incident, "opened", attempts=2), card(incident), incident)
    assert [m.outbox_id for m in slack.history("C0INCIDENTS")] == ["o1"]


async def test_a_message_slack_finds_too_big_is_sent_again_as_plain_text(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    slack.max_blocks_chars = 3500  # Slack's undocumented cap turns out lower than we budget for
    blocks: list[Block] = [Section("web-1: runbooks done"), Code(tuple(FINDING.evidence * 40))]
    await chat.send(outbox("p1", incident, "post"), blocks, incident)
    refused = slack.calls_to("chat.postMessage", ok=False)
    assert [c.error for c in refused] == ["msg_blocks_too_long"]
    (root,) = slack.history("C0INCIDENTS")
    reply = slack.thread("C0INCIDENTS", root.ts)[1]
    assert len(reply.blocks) == 1 and reply.outbox_id == "p1"
    assert reply.blocks[0]["text"]["text"].startswith("web-1: runbooks done\n&gt; 2026/11/30")
    assert "`incident-bot incidents show 7`" in reply.blocks[0]["text"]["text"]


async def test_a_card_edit_slack_finds_too_big_is_made_as_plain_text(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    slack.max_blocks_chars = 300
    await chat.send(outbox("u1", incident, "updated"), card(incident), incident)
    (root,) = slack.history("C0INCIDENTS")
    assert len(root.edits) == 1 and len(root.blocks) == 1 and "Incident #7" in root.blocks[0]["text"]["text"]


async def test_when_even_the_plain_text_is_refused_the_message_is_rejected(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    slack.max_blocks_chars = 10
    with pytest.raises(SlackRejected) as caught:
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    assert caught.value.error == "msg_blocks_too_long" and isinstance(caught.value, ChatRejected)
    assert len(slack.calls_to("chat.postMessage")) == 2 and slack.history("C0INCIDENTS") == []


# ------------------------------------------------------------------------------------ translation


async def test_http_429_is_rate_limited_for_the_seconds_slack_asks(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    slack.fail(429, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    assert caught.value.retry_after == 7.0 and caught.value.target == "slack"


async def test_ratelimited_in_an_ok_false_answer_is_rate_limited_too(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack)
    slack.fail(200, error="rate_limited")
    with pytest.raises(RateLimited) as caught:
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    assert caught.value.retry_after == DEFAULT_RETRY_AFTER


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_5xx_is_transient(slack: FakeSlack, status: int) -> None:
    chat, _store, incident = await setup(slack)
    slack.fail(status)
    with pytest.raises(TransientChatError):
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)


@pytest.mark.parametrize("error", ["fatal_error", "internal_error", "request_timeout", "service_unavailable"])
async def test_slacks_own_transient_errors_are_transient(slack: FakeSlack, error: str) -> None:
    chat, _store, incident = await setup(slack)
    slack.fail(200, error=error)
    with pytest.raises(TransientChatError):
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)


@pytest.mark.parametrize(
    ("channel", "error"),
    [("C0NOPE", "channel_not_found"), ("#outside", "not_in_channel"), ("C0OLD", "is_archived")],
)
async def test_a_channel_slack_refuses_is_rejected_with_its_error(slack: FakeSlack, channel: str, error: str) -> None:
    chat, _store, incident = await setup(slack, channel)
    with pytest.raises(SlackRejected) as caught:
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    assert caught.value.error == error and caught.value.method == "chat.postMessage"
    assert "Slack refused chat.postMessage" in caught.value.user_message()


async def test_a_wrong_token_is_rejected_as_invalid_auth(slack: FakeSlack) -> None:
    store = MemoryStore()
    incident = await stored(store, make_incident(7))
    chat = SlackSender(slack_client("xoxb-wrong", slack.api_url), store, lambda _i: "C0INCIDENTS", Clock())
    with pytest.raises(SlackRejected) as caught:
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    assert caught.value.error == "invalid_auth"


async def test_no_channel_configured_is_rejected_with_a_hint(slack: FakeSlack) -> None:
    chat, _store, incident = await setup(slack, None)
    with pytest.raises(ChatRejected, match="SLACK_CHANNEL"):
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    assert slack.calls == []


async def test_slack_unreachable_is_transient() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    store = MemoryStore()
    incident = await stored(store, make_incident(7))
    chat = SlackSender(slack_client("xoxb-x", f"http://127.0.0.1:{port}/api/"), store, lambda _i: "C1", Clock())
    with pytest.raises(TransientChatError):
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)


async def test_a_call_slack_does_not_answer_in_time_is_transient(slack: FakeSlack) -> None:
    store = MemoryStore()
    incident = await stored(store, make_incident(7))
    chat = sender(slack, store, timeout=0.3)
    slack.stall(1.0)
    started = time.monotonic()
    with pytest.raises(TransientChatError, match="no answer in time"):
        await chat.send(outbox("o1", incident, "opened"), card(incident), incident)
    assert time.monotonic() - started < 0.9


def test_retry_after_reads_the_header_in_any_case_and_falls_back_when_unreadable() -> None:
    assert retry_after({"retry-after": "12"}) == 12.0
    assert retry_after({"Retry-After": "soon"}) == DEFAULT_RETRY_AFTER
    assert retry_after(None) == DEFAULT_RETRY_AFTER


def test_the_client_never_retries_by_itself_and_defaults_to_slack() -> None:
    client = slack_client("xoxb-x", None)
    assert client.retry_handlers == [] and client.base_url == "https://slack.com/api/"


def test_the_channel_is_the_services_else_the_default() -> None:
    channel_of = channel_by_service({"shop": "C0SHOP", "api": None}, "C0INCIDENTS")
    assert channel_of(make_incident(1)) == "C0SHOP"
    assert channel_of(make_incident(2, service="api")) == "C0INCIDENTS"
    assert channel_of(make_incident(3, service=None, routed=False)) == "C0INCIDENTS"
    assert channel_by_service({}, None)(make_incident(4)) is None
