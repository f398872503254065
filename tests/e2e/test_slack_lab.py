"""The Slack issue's end-to-end check: the real Prometheus Alertmanager alerting a real `incident-bot
serve` (SQLite) about the fault lab with its upstream down, with Slack configured against the local
fake Slack Web API (bot/testing/slack_api.py), and inbound requests signed for real.

Asserted on the fake's channel: exactly one root message (the status card) and its thread — the
confirmation probe, the lab host's findings read over SSH, the cause card naming ``upstream_down`` with
nginx's ``connect() … failed (111: Connection refused)`` line; a click on Acknowledge edits the card;
expiring the alert posts the resolution and edits the card. With the fake answering 429 twice and
then 503 for a minute, every message still arrives exactly once, in order, never faster than one a second in the
channel. A storm of 1,000 alerts for the service makes one thread, not 1,000 messages.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bot.lab import Lab
from bot.testing.slack_api import FakeMessage, FakeSlack
from tests.adapters.slack.inbound import interactive, signed_headers
from tests.e2e.test_alertmanager import ALERTMANAGER, AMTOOL, TOKENS, Processes, amtool, start_stack, wait_until
from tests.labfixture import running_lab
from tests.test_serve import free_port

CHANNEL = "C0INCIDENTS"
SECRET = "e2e-signing-secret-0123456789abcdef"
ALICE = "U0ALICE"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-slack-") as the_lab:
        yield the_lab


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(channels={CHANNEL: "incidents"}, users={ALICE: "alice"}) as fake:
        yield fake


def stack(
    lab: Lab,
    slack: FakeSlack,
    tmp_path: Path,
    procs: Processes,
    configure: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, str]:
    """Alertmanager and `serve` on the lab's config with Slack on the fake (``configure`` may change the
    config document first)."""
    if not (Path(ALERTMANAGER).exists() and Path(AMTOOL).exists()):
        pytest.fail("prometheus-alertmanager is not installed: run ./dev setup")
    bot_port, am_port = free_port(), free_port()
    document: dict[str, Any] = yaml.safe_load((lab.paths.root / "incident-bot.yaml").read_text())
    document["database_url"] = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    document["listen"] = f"127.0.0.1:{bot_port}"
    document["services"]["lab"]["chat"] = {"slack_channel": CHANNEL}
    if configure is not None:
        configure(document)
    config = tmp_path / "incident-bot.yaml"
    config.write_text(yaml.safe_dump(document))
    env = {
        **TOKENS,
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "SLACK_BOT_TOKEN": slack.token,
        "SLACK_SIGNING_SECRET": SECRET,
        "SLACK_API_URL": slack.api_url,
    }
    log = start_stack(
        procs, tmp_path, config, database_url=document["database_url"], ports=(bot_port, am_port), env=env
    )
    return {"bot": f"http://127.0.0.1:{bot_port}", "am": f"http://127.0.0.1:{am_port}", "log": str(log)}


def thread(slack: FakeSlack) -> list[FakeMessage]:
    roots = slack.history(CHANNEL)
    assert len(roots) <= 1, [r.text for r in roots]
    return slack.thread(CHANNEL, roots[0].ts) if roots else []


def texts(messages: list[FakeMessage]) -> str:
    return "\n".join(m.text + "\n" + json.dumps(m.blocks) for m in messages)


def cause_posted(slack: FakeSlack) -> bool:
    return any(m.text.startswith("Suspected cause") for m in thread(slack)[1:])


def click(bot: str, slack: FakeSlack, action: str, root: FakeMessage) -> None:
    payload = slack.block_actions(action, _incident_of(root), user=ALICE, channel=CHANNEL, message_ts=root.ts)
    body = interactive(payload)
    answer = httpx.post(f"{bot}/slack/events", content=body, headers=signed_headers(SECRET, body), timeout=10)
    assert answer.status_code == 200, answer.text


def _incident_of(root: FakeMessage) -> str:
    for block in root.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == "acknowledge":
                return str(element["value"])
    raise AssertionError(f"no Acknowledge button on the card: {root.blocks}")


def lab_alert(lab: Lab) -> list[str]:
    return ["alertname=HTTP5xx", "service=lab", "status=502", f"instance={lab.url}"]


def test_one_thread_with_findings_and_cause_acknowledged_from_slack_and_resolved(
    lab: Lab, slack: FakeSlack, tmp_path: Path
) -> None:
    procs = Processes()
    lab.rotate_logs()
    lab.break_("upstream_down")
    try:
        s = stack(lab, slack, tmp_path, procs)
        amtool(s["am"], "alert", "add", *lab_alert(lab), "--annotation=summary=the lab returns 502")
        wait_until(
            lambda: "upstream_down" in texts(thread(slack)), 120, f"the cause card\n{Path(s['log']).read_text()}"
        )
        messages = thread(slack)
        root, replies = messages[0], messages[1:]
        assert "Incident #1" in root.text and all(r.thread_ts == root.ts for r in replies)
        said = texts(replies)
        assert "Confirmation probe from the bot" in said
        assert "lab: runbooks done" in said  # the lab host's findings, read over SSH
        assert "(111: Connection refused)" in said and "connect() to unix:" in said
        wait_until(lambda: "Suspected cause" in thread(slack)[0].text + json.dumps(thread(slack)[0].blocks), 20, "card")

        click(s["bot"], slack, "acknowledge", thread(slack)[0])
        wait_until(lambda: "acknowledged" in json.dumps(thread(slack)[0].blocks), 20, "the card to show the ack")
        wait_until(lambda: "Acknowledged by @alice (slack)" in texts(thread(slack)[1:]), 20, "the ack in the thread")

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        amtool(s["am"], "alert", "add", *lab_alert(lab), f"--end={now}")
        wait_until(lambda: "Resolved" in texts(thread(slack)[1:]), 30, "the resolution in the thread")
        final = thread(slack)
        assert "resolved" in json.dumps(final[0].blocks) and "Duration" in json.dumps(final[0].blocks)
        assert len(slack.history(CHANNEL)) == 1  # one root message for the whole incident
        dump = os.environ.get("INCIDENT_BOT_THREAD_DUMP")  # the README's example thread comes from here
        if dump:
            Path(dump).write_text(json.dumps([{"text": m.text, "blocks": m.blocks} for m in final], indent=1))
    finally:
        procs.stop()
        lab.repair()


def test_429_then_503_for_a_while_every_message_once_in_order_paced(lab: Lab, slack: FakeSlack, tmp_path: Path) -> None:
    procs = Processes()
    lab.rotate_logs()
    lab.break_("upstream_down")
    slack.fail(429, retry_after=2, times=2, methods=["chat.postMessage"])
    slack.fail(503, for_seconds=60, methods=["chat.postMessage", "chat.update"])  # a minute of outage
    try:
        s = stack(lab, slack, tmp_path, procs)
        amtool(s["am"], "alert", "add", *lab_alert(lab), "--annotation=summary=the lab returns 502")
        wait_until(lambda: cause_posted(slack), 240, f"the cause card\n{Path(s['log']).read_text()}")
        time.sleep(3)  # anything still queued would arrive now
        messages = thread(slack)
        ids = [m.outbox_id for m in messages]
        assert None not in ids and len(ids) == len(set(ids)), ids  # each outbox message once
        posted = [c for c in slack.calls_to("chat.postMessage", ok=True) if c.args.get("channel") == CHANNEL]
        times = [c.at for c in posted]
        assert all(b - a >= 0.95 for a, b in itertools.pairwise(times)), times
        order = [m.text.splitlines()[0] if m.text else "" for m in messages[1:]]
        causes = [n for n, first in enumerate(order) if first.startswith("Suspected cause")]
        assert causes and causes[0] > 0, order  # the cause card once, after the findings
        assert slack.calls_to("chat.postMessage", ok=False)  # the failures really happened
    finally:
        procs.stop()
        lab.repair()


def test_a_storm_of_a_thousand_alerts_for_one_service_is_one_thread(lab: Lab, slack: FakeSlack, tmp_path: Path) -> None:
    procs = Processes()
    try:
        s = stack(lab, slack, tmp_path, procs)
        hook = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}
        started = time.monotonic()
        with httpx.Client(timeout=10) as client:
            for n in range(1000):
                body = {"id": f"storm-{n}", "state": "firing", "status": 502, "service": "lab", "summary": "storm"}
                assert client.post(f"{s['bot']}/alerts/generic", json=body, headers=hook).status_code == 202
        assert time.monotonic() - started < 60
        wait_until(lambda: len(thread(slack)) >= 2, 60, "the thread")
        time.sleep(3)
        assert len(slack.history(CHANNEL)) == 1
        assert len(thread(slack)) < 30, [m.text[:60] for m in thread(slack)]
    finally:
        procs.stop()
