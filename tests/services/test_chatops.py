"""Chat operations on the in-memory store: what each command and button does, who may do it (respond
and operate, by user, user group and channel; the default that anyone in an incident channel may
respond and nobody may operate), refusals answered and put on the timeline, and failures that become
replies (a reference id, never a traceback)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest

from bot.config import AllowList, ChatPermissions
from bot.core.blocks import Block, Section, plain_text
from bot.core.chat_commands import Actor, ParsedCommand, parse
from bot.core.delivery import degraded_event
from bot.core.incidents import IncidentState
from bot.core.models import Alert, Diagnosis
from bot.errors import UsageError
from bot.services.chatops import ChatOps, Policy
from bot.services.incidents import IncidentService
from bot.testing import MemoryStore, explain

T0 = datetime(2026, 11, 30, 3, 25, tzinfo=UTC)
LINE = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() to unix:/run/gunicorn.sock failed "
    "(111: Connection refused) while connecting to upstream, client: 10.0.0.1, server: shop, "
    'request: "GET / HTTP/1.1", upstream: "http://unix:/run/gunicorn.sock:/", host: "shop"'
)
ALICE = Actor("slack", "U0ALICE", "@alice", "C0INCIDENTS")
MALLORY = Actor("slack", "U0MALLORY", "@mallory", "C0RANDOM")
OPS = Actor("slack", "U0OPS", "@ops", "C0RANDOM", frozenset({"S0ONCALL"}))


class Diagnoses:
    """Records what chat asked to diagnose; answers with the explain engine on a canned line."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int | None, tuple[str, ...], str]] = []

    async def __call__(self, target: str, status: int | None, runbooks: tuple[str, ...], trigger: str) -> Diagnosis:
        if target == "nowhere":
            raise UsageError("nowhere is not a host or service of the configuration")
        if target == "boom":
            raise RuntimeError("secret internal detail")
        self.asked.append((target, status, runbooks, trigger))
        return explain(LINE, status)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def diagnoses() -> Diagnoses:
    return Diagnoses()


@pytest.fixture
def ops(store: MemoryStore, diagnoses: Diagnoses) -> ChatOps:
    incidents = IncidentService(
        store, route=lambda a: a.labels.get("service"), group=lambda a, s: f"{s}:5xx", clock=lambda: T0
    )
    allow = ChatPermissions(operate=AllowList(users=["U0ALICE"], groups=["S0ONCALL"]))
    return ChatOps(
        store,
        incidents,
        policies={"slack": Policy(allow, served=["C0INCIDENTS"])},
        explain=explain,
        diagnose=diagnoses,
        clock=lambda: T0,
    )


async def opened(ops: ChatOps) -> str:
    alert = Alert.model_validate(
        {"source": "generic", "fingerprint": "f1", "state": "firing", "status": 502, "labels": {"service": "shop"}}
    )
    report = await ops.incidents.ingest([alert])
    return report.opened[0]


async def test_help_and_list_are_open_to_anyone_and_list_shows_each_incident(ops: ChatOps) -> None:
    assert "/incident diagnose TARGET [STATUS]" in plain_text((await ops.run(MALLORY, parse("help"))).blocks)
    assert "No incidents." in plain_text((await ops.run(MALLORY, parse("list"))).blocks)
    number = await opened(ops)
    listed = plain_text((await ops.run(MALLORY, parse("list"))).blocks)
    assert f"#{number} triggered" in listed and "502 shop" in listed


async def test_show_gives_the_card_without_buttons_and_the_timeline(ops: ChatOps) -> None:
    number = await opened(ops)
    reply = await ops.run(MALLORY, parse(f"show {number}"))
    text = plain_text(reply.blocks)
    assert f"Incident #{number}" in text and "opened by" in text and "[Acknowledge]" not in text
    assert reply.incident_id == number
    assert "No incident #99." in plain_text((await ops.run(MALLORY, parse("show 99"))).blocks)


async def test_show_says_when_a_chat_keeps_failing_for_the_incident(ops: ChatOps, store: MemoryStore) -> None:
    number = await opened(ops)
    event = degraded_event(
        number, at=T0, target="slack", since=T0, error="Slack chat.postMessage: HTTP 503", code="http_503",
        failures=3, waiting=2,
    )  # fmt: skip
    async with store.transaction() as tx:
        await tx.add_event(event)
    assert "Slack delivery delayed since 03:25 UTC" in plain_text(
        (await ops.run(MALLORY, parse(f"show {number}"))).blocks
    )


async def test_ack_in_an_incident_channel_records_the_slack_user_and_a_second_ack_says_so(
    ops: ChatOps, store: MemoryStore
) -> None:
    number = await opened(ops)
    reply = await ops.run(ALICE, parse(f"ack {number}"))
    assert plain_text(reply.blocks) == f"Acknowledged #{number}." and reply.private
    incident = store.incidents[number]
    assert incident.state is IncidentState.ACKNOWLEDGED and incident.acknowledged_by == "@alice (slack)"
    assert (await store.timeline(number))[-1].actor == "@alice (slack)"
    again = await ops.act(ALICE, "acknowledge", number)
    assert plain_text(again.blocks) == f"#{number} was already acknowledged."


async def test_responding_outside_the_incident_channels_is_refused_answered_and_on_the_timeline(
    ops: ChatOps, store: MemoryStore
) -> None:
    number = await opened(ops)
    reply = await ops.act(MALLORY, "resolve", number)
    assert "you may not acknowledge, resolve, escalate or re-run here" in plain_text(reply.blocks)
    assert "the responder role" in plain_text(reply.blocks) and reply.private
    assert store.incidents[number].state is IncidentState.TRIGGERED
    refused = [e for e in await store.timeline(number) if e.kind == "refused"]
    assert [(e.text, e.actor) for e in refused] == [("resolve refused to @mallory (slack)", "@mallory (slack)")]


async def test_operate_needs_a_listed_user_or_group_even_in_an_incident_channel(
    ops: ChatOps, diagnoses: Diagnoses
) -> None:
    bob = Actor("slack", "U0BOB", "@bob", "C0INCIDENTS")
    refused = await ops.run(bob, parse("diagnose web-1"))
    assert "may not run diagnoses, runbooks or changes" in plain_text(refused.blocks)
    assert diagnoses.asked == []
    by_group = await ops.run(OPS, parse("diagnose web-1 502"))
    assert "Suspected cause: Upstream" in plain_text(by_group.blocks) or "upstream_down" in plain_text(by_group.blocks)
    assert diagnoses.asked == [("web-1", 502, (), "slack:U0OPS")]


async def test_runbook_runs_one_named_runbook_and_a_target_outside_the_config_is_a_clear_answer(
    ops: ChatOps, diagnoses: Diagnoses
) -> None:
    await ops.run(ALICE, parse("runbook proxy_log web-1"))
    assert diagnoses.asked == [("web-1", None, ("proxy_log",), "slack:U0ALICE")]
    reply = await ops.run(ALICE, parse("diagnose nowhere"))
    assert plain_text(reply.blocks) == "diagnose: nowhere is not a host or service of the configuration"


async def test_an_unexpected_failure_is_a_reply_with_a_reference_not_the_error(
    ops: ChatOps, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        reply = await ops.run(ALICE, parse("diagnose boom"))
    text = plain_text(reply.blocks)
    assert text.startswith("diagnose failed unexpectedly (reference ") and "secret" not in text
    ref = text.split("reference ")[1].split(",")[0]
    assert ref in caplog.text


async def test_explain_answers_with_the_same_engine_as_the_cli(ops: ChatOps) -> None:
    reply = await ops.run(MALLORY, ParsedCommand("explain", text=LINE))
    assert "upstream_down" in plain_text(reply.blocks) and not reply.private


async def test_rerun_queues_a_diagnosis_and_says_so_in_the_thread(ops: ChatOps, store: MemoryStore) -> None:
    number = await opened(ops)
    jobs_before = len(store.jobs)
    reply = await ops.act(ALICE, "rerun", number)
    assert plain_text(reply.blocks) == f"Re-running the diagnosis of #{number}."
    assert len(store.jobs) == jobs_before + 1
    assert store.messages[-1].payload == {"text": "Re-running the diagnosis (asked by @alice (slack))"}
    assert (await store.timeline(number))[-1].text == "re-run asked by @alice (slack)"


async def test_escalate_without_a_policy_says_so_and_records_it(ops: ChatOps, store: MemoryStore) -> None:
    number = await opened(ops)
    reply = await ops.act(ALICE, "escalate", number)
    assert plain_text(reply.blocks) == f"Escalated #{number}: no escalation policy is configured"
    assert (await store.timeline(number))[-1].kind == "escalated"


async def test_escalate_calls_the_paging_hook_and_tells_the_thread_what_it_did(
    store: MemoryStore, ops: ChatOps
) -> None:
    calls: list[str] = []

    async def escalate(incident: object, actor: Actor) -> str:
        calls.append(actor.user)
        return "paged level 2 (@bob)"

    ops.escalate = escalate
    number = await opened(ops)
    await ops.act(ALICE, "escalate", number)
    assert calls == ["U0ALICE"]
    assert store.messages[-1].payload == {"text": "⏫ Escalated by @alice (slack): paged level 2 (@bob)"}


async def test_unknown_buttons_and_bad_ids_are_answered_not_raised(ops: ChatOps) -> None:
    assert "unknown action" in plain_text((await ops.act(ALICE, "reboot", "1")).blocks)
    assert "is not an incident id" in plain_text((await ops.act(ALICE, "acknowledge", "1; drop")).blocks)
    assert "No incident #42." in plain_text((await ops.act(ALICE, "rerun", "42")).blocks)


async def test_a_platform_with_no_policy_may_only_read(ops: ChatOps) -> None:
    stranger = Actor("telegram", "12345", "@tg", "-1001")
    number = await opened(ops)
    assert "may not" in plain_text((await ops.act(stranger, "acknowledge", number)).blocks)
    assert "Incidents" in plain_text((await ops.run(stranger, parse("list"))).blocks)


def test_listed_channels_grant_respond_to_everyone_in_them() -> None:
    policy = Policy(ChatPermissions(respond=AllowList(channels=["C0OPS"])), served=["C0INCIDENTS"])
    assert policy.may(Actor("slack", "U1", "@a", "C0OPS"), "respond")
    assert not policy.may(Actor("slack", "U1", "@a", "C0INCIDENTS"), "respond")  # an explicit list replaces the default
    assert not policy.may(Actor("slack", "U1", "@a", "C0OPS"), "operate")


async def test_an_oncall_override_needs_respond_while_asking_who_is_on_call_does_not(ops: ChatOps) -> None:
    asked: list[tuple[str, ...]] = []

    async def oncall(actor: Actor, args: tuple[str, ...]) -> list[Block]:
        asked.append(args)
        return [Section("alice is on call")]

    ops.oncall = oncall
    assert plain_text((await ops.run(MALLORY, parse("oncall"))).blocks) == "alice is on call"
    refused = await ops.run(MALLORY, parse("oncall override @mallory 8h"))
    assert "may not" in plain_text(refused.blocks)
    await ops.run(ALICE, parse("oncall override @bob 2h"))
    assert asked == [(), ("override", "@bob", "2h")]
