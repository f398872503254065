"""Roles and approvals end to end (issue #9 item 5): the real Alertmanager alerting a real `incident-bot
serve` (SQLite) about the fault lab, Slack on the local fake with every inbound request signed, and the
mutating ``clear_cache`` runbook run over the lab's real sshd.

In the incident's thread Alice (operator) asks to clear the lab's ``thumbs`` cache; the request is posted
with Approve and Deny buttons. Alice's own Approve and Carol's (a responder) run nothing; Bob's (a second
operator) runs it once: the files under the cache directory are gone, the directory and everything beside
it are still there, and the thread says who asked and who approved. A second request that nobody approves
expires and says so. The timeline names the asker and the approver; the audit chain holds the request, the
approval, the role decisions and the commands run, and ``incident-bot audit verify`` finds it intact.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.lab import Lab
from bot.testing.slack_api import FakeMessage, FakeSlack
from tests.adapters.slack.inbound import form, interactive, signed_headers
from tests.e2e.test_alertmanager import TOKENS, Processes, amtool, wait_until
from tests.e2e.test_slack_lab import CHANNEL, SECRET, lab_alert, stack, texts, thread
from tests.labfixture import running_lab

ALICE, BOB, CAROL = "U0ALICE", "U0BOB", "U0CAROL"


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-approve-") as the_lab:
        yield the_lab


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    with FakeSlack(channels={CHANNEL: "incidents"}, users={ALICE: "alice", BOB: "bob", CAROL: "carol"}) as fake:
        yield fake


@pytest.fixture
def cache() -> Iterator[Path]:
    """A cache directory under /var/cache (an allowed root) with files and a subdirectory, and a file beside it."""
    parent = Path(tempfile.mkdtemp(prefix="ibl-approve-", dir="/var/cache"))
    thumbs = parent / "thumbs"
    (thumbs / "2026" / "11").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "2026/11/c.jpg"):
        (thumbs / name).write_bytes(b"\xff\xd8" + b"x" * 50_000)
    (parent / "keep.txt").write_text("not part of the cache\n")
    try:
        yield thumbs
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def signed_post(bot: str, body: bytes) -> httpx.Response:
    answer = httpx.post(f"{bot}/slack/events", content=body, headers=signed_headers(SECRET, body), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer


def command(bot: str, slack: FakeSlack, text: str, user: str) -> None:
    signed_post(bot, form(slack.slash_command(text, user=user, channel=CHANNEL)))


def click(bot: str, slack: FakeSlack, action: str, value: str, *, user: str, message: FakeMessage) -> None:
    payload = slack.block_actions(action, value, user=user, channel=CHANNEL, message_ts=message.ts)
    signed_post(bot, interactive(payload))


def buttons(message: FakeMessage) -> dict[str, str]:
    """action_id → value of the message's buttons."""
    return {
        str(element["action_id"]): str(element["value"])
        for block in message.blocks
        if block.get("type") == "actions"
        for element in block.get("elements", [])
    }


def requests(slack: FakeSlack) -> list[FakeMessage]:
    return [m for m in thread(slack) if "approve" in buttons(m)]


def private_to(slack: FakeSlack, user: str) -> str:
    return "\n".join(json.dumps(e) for e in slack.ephemerals if e.get("user") == user)


def test_a_mutating_runbook_runs_only_after_a_second_operator_approves_and_expires_unapproved(
    lab: Lab, slack: FakeSlack, tmp_path: Path, cache: Path
) -> None:
    def configure(document: dict[str, Any]) -> None:
        document["hosts"]["lab"]["facts"]["cache_dirs"] = f"thumbs={cache}"
        document["slack"] = {
            "allow": {
                "roles": [
                    {"role": "operator", "users": [ALICE, BOB], "channels": [CHANNEL]},
                    {"role": "responder", "users": [CAROL]},
                ]
            }
        }
        document["approvals"] = {"expire_after": "6s"}

    procs = Processes()
    try:
        s = stack(lab, slack, tmp_path, procs, configure)
        log = Path(s["log"])
        amtool(s["am"], "alert", "add", *lab_alert(lab), "--annotation=summary=the lab returns 502")
        wait_until(lambda: bool(thread(slack)), 60, f"the incident's card\n{log.read_text()}")
        number = buttons(thread(slack)[0])["acknowledge"]

        command(s["bot"], slack, f"request {number} clear_cache lab cache=thumbs", ALICE)
        wait_until(lambda: len(requests(slack)) == 1, 30, f"the request in the thread\n{log.read_text()}")
        (asked,) = requests(slack)
        request_id = buttons(asked)["approve"]
        assert "@alice (slack) asks to run *clear_cache on lab (cache=thumbs)*" in asked.text + json.dumps(asked.blocks)

        click(s["bot"], slack, "approve", request_id, user=ALICE, message=asked)
        wait_until(lambda: "another operator must approve it" in private_to(slack, ALICE), 20, "Alice's refusal")
        click(s["bot"], slack, "approve", request_id, user=CAROL, message=asked)
        wait_until(lambda: "needs the operator role" in private_to(slack, CAROL), 20, "Carol's refusal")
        assert sorted(p.name for p in cache.rglob("*.jpg")) == ["a.jpg", "b.jpg", "c.jpg"]

        click(s["bot"], slack, "approve", request_id, user=BOB, message=asked)
        wait_until(
            lambda: "✔ clear_cache on lab (cache=thumbs): cleared cache thumbs" in texts(thread(slack)),
            60,
            f"the outcome in the thread\n{log.read_text()}",
        )
        assert cache.is_dir() and list(cache.iterdir()) == []
        assert (cache.parent / "keep.txt").read_text() == "not part of the cache\n"
        said = texts(thread(slack))
        assert "@bob (slack) approved @alice (slack)'s request: clear_cache on lab (cache=thumbs)" in said
        assert "asked by @alice (slack), approved by @bob (slack)" in said

        command(s["bot"], slack, f"request {number} clear_cache lab cache=thumbs", BOB)
        wait_until(lambda: len(requests(slack)) == 2, 30, "the second request")
        wait_until(lambda: "request expired unapproved" in texts(thread(slack)), 30, f"the expiry\n{log.read_text()}")

        body = httpx.get(
            f"{s['bot']}/api/incidents/{number}",
            headers={"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"},
            timeout=10,
        ).json()
        kinds = [e["kind"] for e in body["timeline"]]
        for kind in ("approval_requested", "refused", "approved", "action_done", "approval_expired"):
            assert kind in kinds, kinds
        approved = next(e for e in body["timeline"] if e["kind"] == "approved")
        assert approved["data"]["asked_by"] == "@alice (slack)" and approved["data"]["approved_by"] == "@bob (slack)"
    finally:
        procs.stop()

    database = tmp_path / "bot.db"
    with sqlite3.connect(database) as db:
        rows = db.execute('SELECT kind, "trigger", host, argv FROM audit ORDER BY id').fetchall()
    decisions = [(kind, trigger, json.loads(argv)[0]) for kind, trigger, _, argv in rows if kind != "command"]
    assert ("approval", f"slack:{ALICE}", "request") in decisions
    assert ("approval", f"slack:{ALICE}", "refuse-own") in decisions
    assert ("role", f"slack:{CAROL}", "refuse") in decisions
    assert ("approval", f"slack:{BOB}", "approve") in decisions
    assert ("approval", "bot", "expire") in decisions
    ran = [json.loads(argv) for kind, trigger, _, argv in rows if kind == "command" and trigger.startswith("approval:")]
    deleted = [argv[argv.index("find") :] for argv in ran if "find" in argv]  # after the adapter's env/timeout
    assert deleted == [["find", str(cache), "-xdev", "-mindepth", "1", "-delete"]], ran
    verified = subprocess.run(
        [sys.executable, "-m", "bot", "audit", "verify", "--config", str(tmp_path / "incident-bot.yaml")],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout + verified.stderr
