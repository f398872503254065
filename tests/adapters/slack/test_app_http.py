"""The Slack front door in HTTP mode: real slack-bolt behind a real FastAPI app served by uvicorn, requests
signed for real, the real ChatOps and IncidentService behind it, outbound calls to the fake Slack.

Pinned here: a bad, tampered or 301-second-old signature is a 401 and nothing happens; a replayed request
and an Events API redelivery are answered 200 and do nothing; every ``/incident`` subcommand and every
usage error (ephemeral, the help included, never a traceback); slow commands acknowledged before the work
and answered in a thread; buttons acknowledged at once and recorded on the timeline with the Slack user;
refusals answered and recorded; user group membership granting ``respond`` (kept for five minutes);
unexpected failures shown as a reference id that is also in the log."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bot.adapters.slack.app import WORKING
from bot.adapters.slack.sender import slack_client
from bot.core.incidents import IncidentState
from bot.testing.slack_api import FakeSlack
from tests.adapters.slack.inbound import (
    ALICE,
    INCIDENTS,
    SAMPLE,
    SECRET,
    Bench,
    bench,
    eventually,
    form,
    signed_headers,
)


@pytest.fixture
async def wired(slack: FakeSlack) -> AsyncIterator[Bench]:
    async with bench(slack) as served:
        yield served


def texts(blocks: list[dict[str, Any]]) -> str:
    """Every piece of text in Block Kit blocks, joined by newlines."""
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                if isinstance(value, dict | list):
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(blocks)
    return "\n".join(found)


async def only_response(wired: Bench, response_url: str) -> dict[str, Any]:
    await wired.app.drain()
    (answer,) = wired.slack.responses(response_url)
    return answer


async def state(wired: Bench, incident: str = "1") -> IncidentState:
    found = await wired.store.get_incident(incident)
    assert found is not None
    return found.state


# ------------------------------------------------------------------------------------ signatures


async def test_a_bad_or_tampered_signature_gets_401_and_nothing_is_done(wired: Bench) -> None:
    fields = wired.slack.slash_command("ack 1", user=ALICE)
    body = form(fields)
    wrong = await wired.post(body, secret="not-the-signing-secret")
    tampered = await wired.http.post(
        "/slack/events", content=body.replace(b"ack+1", b"resolve+1"), headers=signed_headers(SECRET, body)
    )
    unsigned = await wired.http.post("/slack/events", content=body, headers={"Content-Type": "application/json"})
    assert [wrong.status_code, tampered.status_code, unsigned.status_code] == [401, 401, 401]
    await wired.app.drain()
    assert await state(wired) is IncidentState.TRIGGERED
    assert wired.store.events == [] and wired.store.messages == []
    assert wired.slack.calls == [] and wired.slack.responses(fields["response_url"]) == []


async def test_a_signature_301_seconds_old_gets_401_and_one_290_seconds_old_is_taken(wired: Bench) -> None:
    stale = wired.slack.slash_command("ack 1", user=ALICE)
    refused = await wired.post(form(stale), ts=int(time.time()) - 301)
    assert refused.status_code == 401
    await wired.app.drain()
    assert await state(wired) is IncidentState.TRIGGERED and wired.store.events == []
    assert wired.slack.calls == [] and wired.slack.responses(stale["response_url"]) == []

    fresh = wired.slack.slash_command("ack 1", user=ALICE)
    assert (await wired.post(form(fresh), ts=int(time.time()) - 290)).status_code == 200
    await wired.app.drain()
    assert await state(wired) is IncidentState.ACKNOWLEDGED


async def test_a_replayed_request_is_answered_200_and_does_nothing(wired: Bench) -> None:
    fields = wired.slack.slash_command("ack 1", user=ALICE)
    body = form(fields)
    headers = signed_headers(SECRET, body)
    first = await wired.http.post("/slack/events", content=body, headers=headers)
    assert first.status_code == 200
    await wired.app.drain()
    events, calls = list(wired.store.events), len(wired.slack.calls)
    assert [e.kind for e in events] == ["acknowledged"]

    again = await wired.http.post("/slack/events", content=body, headers=headers)
    assert (again.status_code, again.text) == (200, "")
    await wired.app.drain()
    assert wired.store.events == events and len(wired.slack.calls) == calls
    assert len(wired.slack.responses(fields["response_url"])) == 1  # only the first was answered


async def test_an_events_api_redelivery_is_acknowledged_and_ignored(wired: Bench) -> None:
    said = await slack_client(wired.slack.token, wired.slack.api_url).chat_postMessage(channel=INCIDENTS, text="hi")
    mention = {"type": "app_mention", "user": ALICE, "text": "<@U0INCIDENTBOT> hi", "channel": INCIDENTS}
    body = json.dumps(wired.slack.event_callback({**mention, "ts": said["ts"]})).encode()
    delivered = await wired.post(body, headers={"Content-Type": "application/json"})
    assert delivered.status_code == 200
    await wired.app.drain()
    (_, answer) = wired.slack.thread(INCIDENTS, said["ts"])
    assert "/incident help" in answer.text.replace("`", "")

    # Slack did not hear back in time and sends the same event again, signed anew.
    retry = {"Content-Type": "application/json", "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    redelivery = await wired.post(body, ts=int(time.time()) - 1, headers=retry)
    assert (redelivery.status_code, redelivery.text) == (200, "")
    await wired.app.drain()
    assert len(wired.slack.thread(INCIDENTS, said["ts"])) == 2  # answered once


async def test_slacks_url_verification_challenge_is_answered(wired: Bench) -> None:
    body = json.dumps(
        {"token": "x", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}
    )
    answer = await wired.post(body.encode(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 200
    assert answer.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}


# -------------------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("text", "kind", "says"),
    [
        ("help", "ephemeral", "/incident diagnose TARGET [STATUS]"),
        ("", "ephemeral", "/incident runbook NAME TARGET"),
        ("list", "in_channel", "#1 triggered"),
        ("incidents", "in_channel", "shop answers 502"),
        ("show 1", "in_channel", "Incident #1: shop answers 502"),
        ("show #99", "ephemeral", "No incident #99."),
        ("oncall", "in_channel", "No on-call rotation is configured"),
    ],
)
async def test_fast_commands_are_acked_empty_and_answered_through_response_url_within_3_s(
    wired: Bench, text: str, kind: str, says: str
) -> None:
    started = time.monotonic()
    response, url = await wired.command(text)
    assert (response.status_code, response.text) == (200, "")
    answer = await eventually(lambda: wired.slack.responses(url))
    assert time.monotonic() - started < 3
    (reply,) = answer
    assert reply["response_type"] == kind
    assert says in reply["text"] or says in texts(reply["blocks"])
    assert reply["blocks"] and reply["unfurl_links"] is False


@pytest.mark.parametrize(
    ("text", "outcome", "said"),
    [("ack 1", IncidentState.ACKNOWLEDGED, "Acknowledged #1."), ("resolve #1", IncidentState.RESOLVED, "Resolved #1.")],
)
async def test_ack_and_resolve_act_on_the_incident_as_the_slack_user(
    wired: Bench, text: str, outcome: IncidentState, said: str
) -> None:
    response, url = await wired.command(text)
    assert response.status_code == 200
    reply = await only_response(wired, url)
    assert reply["response_type"] == "ephemeral" and said in reply["text"]
    assert await state(wired) is outcome
    (event,) = wired.store.events
    assert event.kind == outcome.value and event.actor == "@alice (slack)"


USAGE_ERRORS = [
    ("show", "usage: show ID"),
    ("show abc", "'abc' is not an incident id"),
    ("ack 1 2", "usage: ack ID"),
    ("diagnose web-1 999", "invalid HTTP status '999'"),
    ("diagnose", "usage: diagnose TARGET [STATUS]"),
    ("diagnose 'web-1;reboot'", "is not a host, service or runbook name"),
    ("runbook proxy_log", "usage: runbook NAME TARGET"),
    ("explain", "usage: explain TEXT"),
    ("frobnicate now", "unknown command 'frobnicate'"),
]


@pytest.mark.parametrize(("text", "error"), USAGE_ERRORS)
async def test_bad_arguments_get_an_ephemeral_usage_message_and_never_a_traceback(
    wired: Bench, text: str, error: str
) -> None:
    response, url = await wired.command(text)
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    shown = answer["text"] + "\n" + texts(answer["blocks"])
    assert error in shown and "/incident runbook NAME TARGET" in shown  # the error line, then the help
    assert "Traceback" not in response.text and "Error" not in shown
    await wired.app.drain()
    assert wired.slack.responses(url) == [] and wired.store.events == [] and wired.diagnose.calls == []


async def test_a_diagnosis_is_acked_at_once_and_answered_in_a_thread_naming_who_asked(wired: Bench) -> None:
    wired.diagnose.release.clear()  # the run over SSH takes its time
    started = time.monotonic()
    response, url = await wired.command("diagnose web-1 502")
    took = time.monotonic() - started
    assert response.status_code == 200 and took < 3
    assert response.json() == {"text": WORKING, "response_type": "ephemeral"}
    await eventually(lambda: wired.diagnose.calls)
    assert wired.slack.history(INCIDENTS) == []  # still working: nothing said in the channel yet

    wired.diagnose.release.set()
    await wired.app.drain()
    assert wired.diagnose.calls == [("web-1", 502, (), f"slack:{ALICE}")]
    (root,) = wired.slack.history(INCIDENTS)
    assert "@alice asked: `/incident diagnose web-1 502`" in texts(root.blocks)
    (_, reply) = wired.slack.thread(INCIDENTS, root.ts)
    assert reply.thread_ts == root.ts
    shown = texts(reply.blocks)
    assert "diagnose web-1" in shown and "Upstream is not running" in shown
    assert "connect() failed (111: Connection refused)" in shown  # the evidence, quoted
    assert wired.slack.responses(url) == []


async def test_a_runbook_is_answered_in_a_thread_too(wired: Bench) -> None:
    response, _ = await wired.command("runbook proxy_log web-1")
    assert response.json()["text"] == WORKING
    await wired.app.drain()
    assert wired.diagnose.calls == [("web-1", None, ("proxy_log",), f"slack:{ALICE}")]
    (root,) = wired.slack.history(INCIDENTS)
    assert "`/incident runbook proxy_log web-1`" in texts(root.blocks)
    (_, reply) = wired.slack.thread(INCIDENTS, root.ts)
    assert "runbook proxy_log on web-1" in texts(reply.blocks)


async def test_explain_reads_the_pasted_evidence_and_answers_in_the_channel(wired: Bench) -> None:
    response, url = await wired.command("explain " + SAMPLE)
    assert response.json()["text"] == WORKING
    await wired.app.drain()
    (answer,) = wired.slack.history(INCIDENTS)
    shown = texts(answer.blocks)
    assert "Upstream is not running" in shown and "upstream_down" in shown
    assert "/incident explain, asked by @alice" in shown
    assert wired.slack.thread(INCIDENTS, answer.ts) == [answer]  # one message, not a thread
    assert wired.slack.responses(url) == []


async def test_a_diagnosis_of_a_host_outside_the_config_is_refused_privately(wired: Bench) -> None:
    response, url = await wired.command("diagnose db-9.example.net")
    assert response.json()["text"] == WORKING
    reply = await only_response(wired, url)
    assert reply["response_type"] == "ephemeral"
    assert "'db-9.example.net' is not a host or service of the configuration" in reply["text"]
    assert wired.slack.history(INCIDENTS) == []


async def test_a_slow_answer_goes_through_response_url_when_the_bot_may_not_post_in_the_channel(
    wired: Bench,
) -> None:
    response, url = await wired.command("diagnose web-1", channel="C0OUTSIDE")  # the bot is not a member
    assert response.status_code == 200
    reply = await only_response(wired, url)
    assert reply["response_type"] == "in_channel" and "Upstream is not running" in texts(reply["blocks"])
    assert [c.error for c in wired.slack.calls_to("chat.postMessage")] == ["not_in_channel"]
