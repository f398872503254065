"""Three `incident-bot serve` replicas on one PostgreSQL (issue #9 item 12).

Three real server processes (each its own port) share one throwaway PostgreSQL database, the local fake
Slack Web API and the fake PagerDuty Events API, with an on-call section. The same Alertmanager payloads
(groups of two alerts, as the captured group) are posted to all three at once, several times over, as
Alertmanager would with a load balancer in front of the replicas; then the same signed Acknowledge click
is sent to each replica. Asserted: one incident per group; one diagnosis job, run once (its timeline has
``diagnosis_done`` once); each outbox message delivered once (the Slack messages carry their outbox id in
their metadata) and one root message per incident; one PagerDuty ``trigger`` and one ``acknowledge`` per
incident; an incident nobody acknowledges escalates once.

Then a job is left running on one replica (SSH to a host that accepts the TCP connection and never says
a word) and that replica is killed with SIGKILL: another replica claims the job once its lease
(``ssh.deadline`` plus ``jobs.lease_margin``) has run out, and finishes it.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from bot.testing.pagerduty_api import FakePagerDuty
from bot.testing.slack_api import FakeMessage, FakeSlack
from tests.adapters.slack.inbound import interactive, signed_headers
from tests.alertmanager_payload import firing_group
from tests.conftest import Cluster
from tests.e2e.test_alertmanager import healthy, wait_until
from tests.test_serve import TOKENS, free_port

CHANNEL = "C0INCIDENTS"
SECRET = "replica-signing-secret-0123456789abcdef"
ROUTING_KEY = "R3PL1CASR0UT1NGKEY0123456789ABCD"
ALICE = "U0ALICE"
HOOK = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}
API = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
REPLICAS = 3
GROUPS = 6  # groups 1..ACKED are acknowledged from Slack; the others are left to escalate
ACKED = 4
SENDS = 3  # each group is posted this many times to every replica
ESCALATE_AFTER_S = 8
SSH_DEADLINE_S = 4
LEASE_MARGIN_S = 1

CONFIG = """\
database_url: {database_url}
listen: 127.0.0.1:{port}
ssh: {{user: nobody, identity: {key}, known_hosts: {known_hosts}, connect_timeout: 3, deadline: {deadline}}}
jobs: {{lease_margin: {margin}}}
hosts: {{mute: {{address: 127.0.0.1, port: {blackhole}}}}}
slack: {{channel: {channel}}}
services:
  slow: {{match: {{labels: {{service: slow}}}}, hosts: [mute]}}
{services}
oncall:
  people:
    alice: {{name: Alice, pagerduty: true}}
    bob: {{name: Bob}}
  schedules:
    primary: {{time_zone: Europe/Berlin, rotation: weekly, members: [alice]}}
  escalation:
    - {{schedule: primary, after: {escalate}s}}
    - {{people: [bob], after: 10m}}
"""
#: One service per group, with no hosts: its diagnosis is the confirmation probe alone.
SERVICES = "\n".join(f"  replica-{n}: {{match: {{labels: {{service: replica-{n}}}}}}}" for n in range(1, GROUPS + 1))


def group_payload(n: int, closed_port: int) -> bytes:
    """An Alertmanager v4 payload: the firing group of service ``replica-<n>``, two alerts with their own
    fingerprints, whose URLs point at a loopback port nothing listens on (the probe fails at once)."""
    return firing_group(f"replica-{n}", n, lambda path: f"http://127.0.0.1:{closed_port}/{path}")


@dataclass
class Replica:
    name: str
    base: str
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]


class Fleet:
    """The replicas, their database (read with psycopg) and the fakes they talk to."""

    def __init__(self, dsn: str, slack: FakeSlack, pagerduty: FakePagerDuty, closed_port: int) -> None:
        self.dsn, self.slack, self.pagerduty, self.closed_port = dsn, slack, pagerduty, closed_port
        self.replicas: list[Replica] = []

    def rows(self, query: str, *args: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return list(conn.execute(query, args).fetchall())

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.proc.poll() is None]

    def logs(self) -> str:
        return "\n".join(f"--- {r.name}\n{r.log.read_text()[-3000:]}" for r in self.replicas)


def up(replica: Replica) -> bool:
    """Healthy, or exited (the caller then shows its log)."""
    return healthy(f"{replica.base}/healthz") or replica.proc.poll() is not None


@pytest.fixture(scope="module")
def fleet(pg_cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("replicas")
    database = f"replicas_{os.getpid()}_{int(time.time())}"
    with pg_cluster.admin() as conn:
        conn.execute(f'CREATE DATABASE "{database}"')
    url = pg_cluster.url(database)
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    (tmp / "known_hosts").write_text("")
    with (
        socket.socket() as blackhole,
        FakeSlack(channels={CHANNEL: "incidents"}, users={ALICE: "alice"}) as slack,
        FakePagerDuty() as pagerduty,
    ):
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(16)  # accepts into the backlog and never answers: SSH hangs on it
        the_fleet = Fleet(url.replace("postgresql+asyncpg://", "postgresql://"), slack, pagerduty, free_port())
        env = {
            **os.environ, **TOKENS, "XDG_STATE_HOME": str(tmp / "state"),
            "SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.api_url,
            "PAGERDUTY_ROUTING_KEY": ROUTING_KEY, "PAGERDUTY_EVENTS_URL": pagerduty.events_url,
        }  # fmt: skip
        try:
            for n in range(REPLICAS):
                port = free_port()
                config = tmp / f"replica-{n}.yaml"
                config.write_text(
                    CONFIG.format(
                        database_url=url,
                        port=port,
                        key=key,
                        known_hosts=tmp / "known_hosts",
                        deadline=SSH_DEADLINE_S,
                        margin=LEASE_MARGIN_S,
                        blackhole=blackhole.getsockname()[1],
                        channel=CHANNEL,
                        escalate=ESCALATE_AFTER_S,
                        services=SERVICES,
                    )
                )
                if n == 0:
                    upgraded = subprocess.run(
                        [sys.executable, "-m", "bot", "db", "upgrade", "--config", str(config)],
                        capture_output=True, text=True, timeout=60, check=False, env=env,
                    )  # fmt: skip
                    assert upgraded.returncode == 0, upgraded.stderr
                log = tmp / f"serve-replica-{n}.log"
                with log.open("wb") as out:
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "bot", "serve", "--config", str(config)],
                        env=env, stdout=out, stderr=subprocess.STDOUT,
                    )  # fmt: skip
                the_fleet.replicas.append(Replica(f"replica-{n}", f"http://127.0.0.1:{port}", config, log, proc))
            for replica in the_fleet.replicas:
                wait_until(functools.partial(up, replica), 30, replica.name)
                assert replica.proc.poll() is None, replica.log.read_text()
            yield the_fleet
        finally:
            for replica in the_fleet.replicas:
                if replica.proc.poll() is None:
                    replica.proc.terminate()
            for replica in the_fleet.replicas:
                try:
                    replica.proc.wait(10)
                except subprocess.TimeoutExpired:
                    replica.proc.kill()
                    replica.proc.wait()
            with pg_cluster.admin() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def post_everywhere(fleet: Fleet, path: str, bodies: list[tuple[bytes, dict[str, str]]]) -> list[httpx.Response]:
    """Each body posted to every live replica, all at once (one thread per request)."""
    targets = [(r.base, body, headers) for body, headers in bodies for r in fleet.alive()]

    def post(target: tuple[str, bytes, dict[str, str]]) -> httpx.Response:
        base, body, headers = target
        return httpx.post(f"{base}{path}", content=body, headers=headers, timeout=20)

    with ThreadPoolExecutor(max_workers=len(targets)) as pool:
        return list(pool.map(post, targets))


def roots(slack: FakeSlack) -> list[FakeMessage]:
    return slack.history(CHANNEL)


def all_messages(slack: FakeSlack) -> list[FakeMessage]:
    return [m for root in roots(slack) for m in slack.thread(CHANNEL, root.ts)]


def incident_of(root: FakeMessage) -> str | None:
    for block in root.blocks:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == "acknowledge":
                return str(element["value"])
    return None


def metadata_incident(message: FakeMessage) -> str:
    """The incident id the bot put in the message's metadata."""
    return str(((message.metadata or {}).get("event_payload") or {}).get("incident_id"))


def timeline(fleet: Fleet, incident: str) -> list[str]:
    return [kind for (kind,) in fleet.rows("SELECT kind FROM events WHERE incident_id = %s ORDER BY id", incident)]


def test_three_replicas_given_the_same_alerts_and_clicks_make_each_incident_message_page_and_job_once(
    fleet: Fleet,
) -> None:
    bodies = [(group_payload(n, fleet.closed_port), {**HOOK, "Content-Type": "application/json"})
              for n in range(1, GROUPS + 1)]  # fmt: skip
    answers: list[httpx.Response] = []
    for _ in range(SENDS):
        answers += post_everywhere(fleet, "/alerts/alertmanager", bodies)
    assert all(a.status_code == 202 for a in answers), [(a.status_code, a.text[:200]) for a in answers]
    named: dict[str, set[str]] = {}
    for answer in answers:
        for result in answer.json()["results"]:
            named.setdefault(result["fingerprint"][:12], set()).add(result["incident"])
    assert all(len(ids) == 1 for ids in named.values()), named  # every replica named the same incident

    incidents = fleet.rows("SELECT key, id FROM incidents")
    assert Counter(k for k, _ in incidents) == Counter({k: 1 for k, _ in incidents}), incidents
    assert len(incidents) == GROUPS, incidents
    ids = sorted(i for _, i in incidents)

    wait_until(lambda: len(fleet.pagerduty.accepted("trigger")) >= GROUPS, 60,
               f"a PagerDuty trigger per incident\n{fleet.logs()}")  # fmt: skip
    wait_until(lambda: len({incident_of(r) for r in roots(fleet.slack)} - {None}) == GROUPS, 30,
               f"a Slack card per incident\n{fleet.logs()}")  # fmt: skip
    by_incident = {incident_of(r): r for r in roots(fleet.slack)}
    to_ack = [by_incident[i] for i in ids[:ACKED]]
    clicks = []
    for root in to_ack:
        payload = fleet.slack.block_actions("acknowledge", str(incident_of(root)), user=ALICE, channel=CHANNEL,
                                            message_ts=root.ts)  # fmt: skip
        body = interactive(payload)
        clicks.append((body, signed_headers(SECRET, body)))  # one click, delivered to every replica
    clicked = post_everywhere(fleet, "/slack/events", clicks)
    assert all(c.status_code == 200 for c in clicked), [(c.status_code, c.text[:200]) for c in clicked]

    wait_until(lambda: len(fleet.pagerduty.accepted("acknowledge")) >= ACKED, 30, "the PagerDuty acknowledges")
    wait_until(lambda: all("escalated" in timeline(fleet, i) for i in ids[ACKED:]), ESCALATE_AFTER_S + 30,
               f"the unacknowledged incidents to escalate\n{fleet.logs()}")  # fmt: skip
    time.sleep(ESCALATE_AFTER_S + 2)  # anything done twice would have happened by now

    jobs = fleet.rows("SELECT incident_id, kind, state, attempts FROM jobs ORDER BY incident_id")
    assert Counter((i, k) for i, k, _, _ in jobs) == Counter({(i, k): 1 for i, k, _, _ in jobs}), jobs
    assert len(jobs) == GROUPS and all(state == "done" and attempts == 1 for _, _, state, attempts in jobs), jobs
    for incident in ids:
        kinds = Counter(timeline(fleet, incident))
        assert kinds["diagnosis_queued"] == 1 and kinds["diagnosis_done"] == 1, (incident, kinds)
        acked = incident in ids[:ACKED]
        assert kinds["acknowledged"] == (1 if acked else 0), (incident, kinds)
        assert kinds["escalated"] == (0 if acked else 1), (incident, kinds)

    messages = all_messages(fleet.slack)
    outbox_ids = [m.outbox_id for m in messages]
    assert None not in outbox_ids, [m.text[:80] for m in messages if m.outbox_id is None]
    duplicated = [o for o, count in Counter(outbox_ids).items() if count > 1]
    assert not duplicated, f"outbox messages posted more than once: {duplicated}"
    assert sorted(map(metadata_incident, roots(fleet.slack))) == ids  # one root (the card) per incident
    delivered = fleet.rows("SELECT count(*) FROM outbox WHERE delivered_at IS NULL AND target LIKE 'slack%%'")
    assert delivered == [(0,)], fleet.rows("SELECT kind, target, attempts FROM outbox WHERE delivered_at IS NULL")

    events = fleet.pagerduty.accepted()
    per_key = Counter((e["dedup_key"], e["event_action"]) for e in events)
    assert all(count == 1 for count in per_key.values()), per_key
    triggers = {e["dedup_key"] for e in events if e["event_action"] == "trigger"}
    acks = {e["dedup_key"] for e in events if e["event_action"] == "acknowledge"}
    keys = {k for k, i in incidents}
    assert triggers == keys, (triggers, keys)
    assert acks == {k for k, i in incidents if i in ids[:ACKED]}, acks


def test_a_job_of_a_killed_replica_is_taken_by_another_once_its_lease_runs_out(fleet: Fleet) -> None:
    alert = {"id": "slow-1", "state": "firing", "status": 502, "service": "slow",
             "url": f"http://127.0.0.1:{fleet.closed_port}/"}  # fmt: skip
    live = fleet.alive()
    assert len(live) == REPLICAS
    posted = httpx.post(f"{live[0].base}/alerts/generic", json=alert, headers=HOOK, timeout=10)
    assert posted.status_code == 202, posted.text
    [result] = posted.json()["results"]
    incident = result["incident"]

    def job() -> tuple[Any, ...]:
        [row] = fleet.rows("SELECT state, attempts, lease_owner FROM jobs WHERE incident_id = %s", incident)
        return row

    wait_until(lambda: job()[0] == "running", 15, "a replica to claim the diagnosis job")
    time.sleep(0.5)  # in the middle of SSH to a host that never answers
    owner = job()[2]
    [holder] = [r for r in live if owner.split("/")[0].endswith(f":{r.proc.pid}")]
    holder.proc.kill()  # SIGKILL
    holder.proc.wait(10)
    killed_at = time.monotonic()

    wait_until(lambda: job()[1] == 2, SSH_DEADLINE_S + LEASE_MARGIN_S + 20, f"another replica to claim the job\n"
               f"{fleet.logs()}")  # fmt: skip
    waited = time.monotonic() - killed_at
    _, _, new_owner = job()
    survivors = {r.proc.pid for r in fleet.alive()}
    assert any(new_owner.split("/")[0].endswith(f":{pid}") for pid in survivors), (new_owner, survivors)
    assert waited > 1.5, f"claimed again {waited:.1f}s after the kill: before the lease ran out?"
    wait_until(lambda: job()[0] != "running", SSH_DEADLINE_S + 20, "the second attempt to finish")
    assert job()[:2] == ("done", 2)
    kinds = Counter(timeline(fleet, incident))
    assert kinds["diagnosis_queued"] == 1 and kinds["diagnosis_done"] == 1, kinds
    assert kinds["diagnosis_failed"] == 0, kinds
