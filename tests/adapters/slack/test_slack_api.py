"""The fake Slack Web API answers the real slack_sdk client the way Slack does: auth, ``ts`` and thread
shapes, metadata only when asked, Block Kit limits refused with Slack's error codes and json-pointers,
edits, pagination, scripted 429/5xx/stalls on its own clock, the strict per-channel rate, and the
``response_url`` sink. Other tests build on these answers, so they are pinned here."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.adapters.slack.sender import slack_client
from bot.testing.slack_api import FakeSlack
from tests.adapters.slack.helpers import Clock


def client(slack: FakeSlack, token: str | None = None) -> AsyncWebClient:
    return slack_client(token or slack.token, slack.api_url)


async def refused(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value.response.status_code, caught.value.response.data


def section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(n: int, text: str = "Go", value: str = "1") -> dict[str, Any]:
    return {"type": "button", "text": {"type": "plain_text", "text": text}, "action_id": f"a{n}", "value": value}


async def test_auth_test_names_the_bot_and_bad_tokens_are_refused(slack: FakeSlack) -> None:
    answer = await client(slack).auth_test()
    assert (answer["user_id"], answer["bot_id"], answer["team_id"]) == ("U0INCIDENTBOT", "B0INCIDENTBOT", "T0FAKETEAM")
    assert (await refused(client(slack, "xoxb-other").auth_test()))[1]["error"] == "invalid_auth"
    assert (await refused(AsyncWebClient(base_url=slack.api_url, retry_handlers=[]).auth_test()))[1] == {
        "ok": False,
        "error": "not_authed",
    }


async def test_socket_mode_url_comes_from_the_app_token_on_this_server(slack: FakeSlack) -> None:
    answer = await AsyncWebClient(base_url=slack.api_url).apps_connections_open(app_token=slack.app_token)
    assert answer["url"].startswith(f"ws://{slack.url.removeprefix('http://')}/link/?ticket=")
    wrong = await refused(client(slack).apps_connections_open(app_token=slack.token))
    assert wrong[1]["error"] == "not_allowed_token_type"


async def test_posts_get_increasing_ts_the_channel_id_and_threads(slack: FakeSlack) -> None:
    web = client(slack)
    root = await web.chat_postMessage(channel="#incidents", text="root")
    assert root["channel"] == "C0INCIDENTS" and root["message"]["text"] == "root"
    first = await web.chat_postMessage(channel="C0INCIDENTS", text="one", thread_ts=root["ts"])
    second = await web.chat_postMessage(channel="C0INCIDENTS", text="two", thread_ts=first["ts"])  # a reply's ts
    assert root["ts"] < first["ts"] < second["ts"] and first["message"]["thread_ts"] == root["ts"]
    assert [m.text for m in slack.thread("C0INCIDENTS", root["ts"])] == ["root", "one", "two"]
    history = await web.conversations_history(channel="C0INCIDENTS")
    (parent,) = history["messages"]
    assert parent["reply_count"] == 2 and parent["latest_reply"] == second["ts"]
    missing = await refused(web.chat_postMessage(channel="C0INCIDENTS", text="x", thread_ts="1.000001"))
    assert missing[1]["error"] == "thread_not_found"


async def test_metadata_is_kept_and_returned_only_when_asked_for(slack: FakeSlack) -> None:
    web = client(slack)
    meta = {"event_type": "incident_bot_message", "event_payload": {"outbox_id": "o1"}}
    root = await web.chat_postMessage(channel="C0INCIDENTS", text="card", metadata=meta)
    await web.chat_postMessage(channel="C0INCIDENTS", text="reply", thread_ts=root["ts"], metadata=meta)
    plain = await web.conversations_history(channel="C0INCIDENTS")
    assert "metadata" not in plain["messages"][0]
    full = await web.conversations_replies(channel="C0INCIDENTS", ts=root["ts"], include_all_metadata=True)
    assert [m["metadata"] for m in full["messages"]] == [meta, meta]
    await web.chat_update(channel="C0INCIDENTS", ts=root["ts"], text="card v2", blocks=[section("v2")])
    assert slack.history("C0INCIDENTS")[0].metadata == meta  # an edit without metadata keeps it
    bad = await refused(web.chat_postMessage(channel="C0INCIDENTS", text="x", metadata={"event_type": "t"}))
    assert bad[1]["error"] == "invalid_metadata_format"


async def test_history_and_replies_page_with_a_cursor(slack: FakeSlack) -> None:
    web = client(slack)
    for n in range(5):
        await web.chat_postMessage(channel="C0INCIDENTS", text=f"m{n}")
    first = await web.conversations_history(channel="C0INCIDENTS", limit=3)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3", "m2"] and first["has_more"]
    rest = await web.conversations_history(
        channel="C0INCIDENTS", limit=3, cursor=first["response_metadata"]["next_cursor"]
    )
    assert [m["text"] for m in rest["messages"]] == ["m1", "m0"] and not rest["has_more"]
    assert (await refused(web.conversations_replies(channel="C0INCIDENTS", ts="9.000009")))[1]["error"] == (
        "thread_not_found"
    )
    by_name = await refused(web.conversations_history(channel="#incidents"))  # only ids here, as in Slack
    assert by_name[1]["error"] == "channel_not_found"


async def test_updates_follow_slacks_rules_for_text_and_blocks(slack: FakeSlack) -> None:
    web = client(slack)
    posted = await web.chat_postMessage(channel="C0INCIDENTS", text="t", blocks=[section("b")])
    await web.chat_update(channel="C0INCIDENTS", ts=posted["ts"], text="only text")
    message = slack.message("C0INCIDENTS", posted["ts"])
    assert message is not None and message.blocks == [] and message.edits == [("t", [section("b")])]
    gone = await refused(web.chat_update(channel="C0INCIDENTS", ts="1.000001", text="x"))
    assert gone[1]["error"] == "message_not_found"


LIMITS = [
    ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0/text/text"),
    ([section("s" * 3001)], "/blocks/0/text/text"),
    ([section("")], "/blocks/0/text/text"),
    ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "/blocks/0/fields"),
    ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f" * 2001}]}], "/blocks/0/fields/0/text"),
    ([{"type": "actions", "elements": [button(1, text="b" * 76)]}], "/blocks/0/elements/0/text/text"),
    ([{"type": "actions", "elements": [button(1, value="v" * 2001)]}], "/blocks/0/elements/0/value"),
    ([{"type": "actions", "elements": [button(n) for n in range(26)]}], "/blocks/0/elements"),
    ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}], "/blocks/0/elements"),
    ([section("x")] * 51, "/blocks"),
    ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "/blocks/0/text"),
]


@pytest.mark.parametrize(("blocks", "pointer"), LIMITS)
async def test_block_kit_limits_are_refused_as_invalid_blocks_naming_the_json_pointer(
    slack: FakeSlack, blocks: list[dict[str, Any]], pointer: str
) -> None:
    status, body = await refused(client(slack).chat_postMessage(channel="C0INCIDENTS", text="t", blocks=blocks))
    assert status == 200 and body["error"] == "invalid_blocks"
    assert any(e.endswith(f"[json-pointer:{pointer}]") for e in body["errors"])
    assert body["response_metadata"]["messages"][0].startswith("[ERROR] ")
    assert slack.history("C0INCIDENTS") == []


async def test_size_and_text_errors_have_slacks_codes(slack: FakeSlack) -> None:
    web = client(slack)
    too_long = [section("x" * 2900) for _ in range(5)]
    assert (await refused(web.chat_postMessage(channel="C0INCIDENTS", text="t", blocks=too_long)))[1] == {
        "ok": False,
        "error": "msg_blocks_too_long",
    }
    text = await refused(web.chat_postMessage(channel="C0INCIDENTS", text="x" * 40_001))
    assert text[1]["error"] == "msg_too_long"
    empty = await refused(web.api_call("chat.postMessage", json={"channel": "C0INCIDENTS", "text": ""}))
    assert empty[1]["error"] == "no_text"
    form = await refused(web.api_call("chat.postMessage", data={"channel": "C0INCIDENTS", "blocks": "[{not json"}))
    assert form[1]["error"] == "invalid_blocks_format"


async def test_form_bodies_work_like_json_ones(slack: FakeSlack) -> None:
    answer = await client(slack).api_call(
        "chat.postMessage", data={"channel": "C0INCIDENTS", "text": "t", "blocks": '[{"type": "divider"}]'}
    )
    assert answer["ok"] and slack.history("C0INCIDENTS")[0].blocks == [{"type": "divider"}]


async def test_scripted_failures_last_for_calls_or_seconds_on_the_fakes_clock(slack: FakeSlack) -> None:
    clock = Clock()
    slack.clock = clock.timestamp
    web = client(slack)
    slack.fail(429, retry_after=30, times=1).fail(503, for_seconds=10)
    status, body = await refused(web.auth_test())
    assert status == 429 and body["error"] == "ratelimited"
    assert slack.calls[-1].status == 429
    assert (await refused(web.auth_test()))[0] == 503
    await clock.sleep(9.9)
    assert (await refused(web.auth_test()))[0] == 503
    await clock.sleep(0.1)
    assert (await web.auth_test())["ok"]
    slack.fail(200, error="fatal_error", methods=["chat.update"])
    assert (await web.auth_test())["ok"]  # another method is not affected
    assert (await refused(web.chat_update(channel="C0INCIDENTS", ts="1.0", text="x")))[1]["error"] == "fatal_error"


async def test_429_carries_retry_after_in_the_header(slack: FakeSlack) -> None:
    slack.fail(429, retry_after=7)
    with pytest.raises(SlackApiError) as caught:
        await client(slack).chat_postMessage(channel="C0INCIDENTS", text="t")
    assert caught.value.response.headers["Retry-After"] == "7"


async def test_the_strict_rate_allows_a_burst_then_one_a_second_per_channel(slack: FakeSlack) -> None:
    clock = Clock()
    slack.clock = clock.timestamp
    slack.strict_rate(1.0, burst=2)
    web = client(slack)
    for _ in range(2):
        await web.chat_postMessage(channel="C0INCIDENTS", text="t")
    await web.chat_postMessage(channel="C0SHOP", text="t")  # channels have their own allowance
    with pytest.raises(SlackApiError) as caught:
        await web.chat_postMessage(channel="C0INCIDENTS", text="t")
    assert caught.value.response.status_code == 429 and caught.value.response.headers["Retry-After"] == "1"
    await clock.sleep(1.0)
    assert (await web.chat_postMessage(channel="C0INCIDENTS", text="t"))["ok"]


async def test_users_groups_and_ephemeral_messages(slack: FakeSlack) -> None:
    slack.users["U0ALICE"] = "alice"
    slack.usergroups["S0ONCALL"] = ["U0ALICE"]
    web = client(slack)
    assert (await web.usergroups_users_list(usergroup="S0ONCALL"))["users"] == ["U0ALICE"]
    assert (await web.users_info(user="U0ALICE"))["user"]["profile"]["display_name"] == "alice"
    assert (await refused(web.users_info(user="U0NOBODY")))[1]["error"] == "user_not_found"
    answer = await web.chat_postEphemeral(channel="C0INCIDENTS", user="U0ALICE", text="only you")
    assert answer["message_ts"] and slack.ephemerals[-1]["text"] == "only you"


async def test_a_response_url_takes_five_replies(slack: FakeSlack) -> None:
    url = slack.response_url()
    async with aiohttp.ClientSession() as session:
        statuses = []
        for n in range(6):
            async with session.post(url, json={"text": f"r{n}", "response_type": "ephemeral"}) as answer:
                statuses.append(answer.status)
    assert statuses == [200] * 5 + [404]
    assert [r["text"] for r in slack.responses(url)] == [f"r{n}" for n in range(5)]
