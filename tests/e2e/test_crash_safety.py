"""`incident-bot serve` killed with SIGKILL at random moments (a short version of the hardening soak).

A real server process on SQLite receives Alertmanager payloads (the captured group of two, each copy
its own group and fingerprints) in a loop while a timer kills it with ``kill -9`` at a random moment
(seeded); it is restarted each time, and the client re-sends what got no answer (as Alertmanager
retries) plus some already answered (as it repeats). Every request that got a 2xx is recorded. After
the last restart: every alert whose POST got a 2xx is in the store, under the incident the answer
named; there is exactly one incident per group however often it was sent; and each group is whole.

Also: a diagnosis job running when the server is killed stays leased to the dead process and is
claimed again after a restart once its lease runs out. The lease is ``ssh.deadline`` plus
``jobs.lease_margin`` (60 s by default), set to one second here.
"""

from __future__ import annotations

import copy
import json
import os
import random
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_alertmanager import healthy, wait_until
from tests.test_serve import CAPTURED, TOKENS, free_port

SEED = int(os.environ.get("CRASH_SAFETY_SEED", "20241130"))
ROUNDS = 14
TEMPLATE: dict[str, Any] = json.loads((CAPTURED / "01-firing-group-of-two.json").read_text())
HOOK = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_WEBHOOK_TOKEN']}"}
API = {"Authorization": f"Bearer {TOKENS['INCIDENT_BOT_API_TOKEN']}"}
LEASE_MARGIN_S = 1


def group_payload(n: int) -> bytes:
    """The captured firing group of two, as the group of service ``soak-<n>`` with its own fingerprints."""
    body = copy.deepcopy(TEMPLATE)
    service = f"soak-{n}"
    body["groupKey"] = f'{{}}:{{alertname="HTTP5xx", service="{service}"}}'
    body["groupLabels"]["service"] = service
    body["commonLabels"]["service"] = service
    for i, alert in enumerate(body["alerts"]):
        alert["labels"]["service"] = service
        alert["fingerprint"] = f"{n:012x}{i:04x}"
    return json.dumps(body).encode()


class Server:
    """One `serve` at a time on a fixed port and database; :meth:`stop` always leaves none running."""

    def __init__(self, tmp_path: Path, config: Path, port: int) -> None:
        self.tmp_path, self.config, self.base = tmp_path, config, f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> subprocess.Popen[bytes]:
        assert self.proc is None or self.proc.poll() is not None
        self.starts += 1
        log = self.tmp_path / f"serve-{self.starts}.log"
        env = {**os.environ, **TOKENS, "XDG_STATE_HOME": str(self.tmp_path / "state")}
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bot", "serve", "--config", str(self.config)],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        proc = self.proc
        wait_until(lambda: healthy(f"{self.base}/healthz") or proc.poll() is not None, 20, "serve")
        assert proc.poll() is None, log.read_text()
        return proc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL
        if self.proc is not None:
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP port that accepts connections (into the backlog) and never says a word: SSH hangs on it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


@pytest.fixture
def server(tmp_path: Path, blackhole: int) -> Iterator[Server]:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    (tmp_path / "known_hosts").write_text("")
    port = free_port()
    config = tmp_path / "incident-bot.yaml"
    config.write_text(
        f"database_url: sqlite+aiosqlite:///{tmp_path / 'bot.db'}\nlisten: 127.0.0.1:{port}\n"
        f"ssh: {{user: nobody, identity: {key}, known_hosts: {tmp_path / 'known_hosts'},"
        " connect_timeout: 4, deadline: 5}\n"
        f"jobs: {{lease_margin: {LEASE_MARGIN_S}}}\n"
        f"hosts: {{mute: {{address: 127.0.0.1, port: {blackhole}}}}}\n"
        "services: {slow: {match: {labels: {service: slow}}, hosts: [mute]}}\n"
    )
    the_server = Server(tmp_path, config, port)
    try:
        yield the_server
    finally:
        the_server.stop()


def db_rows(tmp_path: Path, query: str, *args: object) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(tmp_path / "bot.db", timeout=10)) as db:
        return list(db.execute(query, args).fetchall())


@dataclass
class Soak:
    acked: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # group → the results of each 2xx
    pending: list[int] = field(default_factory=list)  # sent without a 2xx: to send again
    sent: set[int] = field(default_factory=set)
    next_group: int = 0

    def pick(self, rng: random.Random) -> int:
        if self.pending:
            return self.pending.pop(0)
        if self.acked and rng.random() < 0.3:
            return rng.choice(sorted(self.acked))  # a repeat of a group already answered
        self.next_group += 1
        return self.next_group

    def post(self, client: httpx.Client, base: str, n: int) -> bool:
        """One POST of group ``n``; False when the server did not answer (it was killed)."""
        self.sent.add(n)
        try:
            response = client.post(f"{base}/alerts/alertmanager", content=group_payload(n), headers=HOOK)
        except httpx.TransportError:
            self.pending.append(n)
            return False
        assert response.status_code == 202, response.text  # the server answers 2xx or not at all
        self.acked.setdefault(n, []).append(response.json())
        return True


def test_sigkill_at_random_moments_loses_no_acknowledged_alert_and_duplicates_no_incident(
    server: Server, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    soak = Soak()
    with httpx.Client(timeout=5) as client:
        for _ in range(ROUNDS):
            proc = server.start()
            killer = threading.Timer(rng.uniform(0.0, 0.6), proc.kill)
            killer.start()
            try:
                while soak.post(client, server.base, soak.pick(rng)):
                    pass
            finally:
                killer.join()
                server.kill()
        server.start()  # the last restart: everything not yet answered is sent again, as Alertmanager retries
        while soak.pending:
            assert soak.post(client, server.base, soak.pending.pop(0))
        listed = client.get(f"{server.base}/api/incidents", params={"limit": 500}, headers=API)
    assert listed.status_code == 200, listed.text
    where = f"(seed {SEED}, {len(soak.sent)} groups, {sum(map(len, soak.acked.values()))} answered POSTs)"
    assert len(soak.sent) >= ROUNDS, f"too few requests to mean anything {where}"

    stored = {fp: incident for fp, incident in db_rows(tmp_path, "SELECT fingerprint, incident_id FROM alerts")}
    for n, answers in soak.acked.items():
        for answer in answers:
            assert answer["accepted"] == 2, answer
            for result in answer["results"]:  # each acknowledged alert is stored, in the incident it was told
                assert stored.get(result["fingerprint"]) == result["incident"], (n, result, where)
        assert len({r["incident"] for a in answers for r in a["results"]}) == 1, (n, answers, where)

    duplicated = db_rows(tmp_path, "SELECT key, count(*) FROM incidents GROUP BY key HAVING count(*) > 1")
    assert not duplicated, f"duplicate incidents {where}: {duplicated}"
    [(count,)] = db_rows(tmp_path, "SELECT count(*) FROM incidents")
    assert count == len(soak.sent) == len(soak.acked), where  # one per group, every group stored
    incidents = listed.json()["incidents"]
    assert len(incidents) == min(count, 500)
    assert all(i["alert_count"] == 2 and i["state"] == "triggered" for i in incidents), incidents
    assert len(stored) == 2 * len(soak.sent), where


def test_a_diagnosis_job_running_when_serve_is_killed_runs_again_once_its_lease_runs_out(
    server: Server, tmp_path: Path
) -> None:
    proc = server.start()
    alert = {"id": "slow-1", "state": "firing", "status": 502, "service": "slow", "url": "http://slow.example/"}
    posted = httpx.post(f"{server.base}/alerts/generic", json=alert, headers=HOOK, timeout=5)
    assert posted.status_code == 202, posted.text
    [result] = posted.json()["results"]
    incident_id = result["incident"]

    def job() -> tuple[Any, ...]:
        [row] = db_rows(
            tmp_path, "SELECT state, attempts, lease_owner, lease_until FROM jobs WHERE incident_id = ?", incident_id
        )
        return row

    wait_until(lambda: job()[0] == "running", 10, "the worker to claim the diagnosis job")
    time.sleep(0.5)  # in the middle of SSH to a host that never answers
    server.kill()
    state, attempts, owner, _ = job()
    assert (state, attempts) == ("running", 1) and owner.split("/")[0].endswith(f":{proc.pid}"), job()

    killed_at = time.monotonic()
    restarted = server.start()
    wait_until(lambda: job()[1] == 2, 30, "the job to be claimed again")
    waited = time.monotonic() - killed_at
    state, attempts, owner, _ = job()
    assert owner.split("/")[0].endswith(f":{restarted.pid}")
    assert waited > 2, f"claimed again after {waited:.1f}s: before its lease (deadline 5 s + margin) ran out?"
    wait_until(lambda: job()[0] != "running", 30, "the second attempt to finish")
    assert job()[:2] == ("done", 2)  # an unreachable host is a finding of the diagnosis, not its failure

    body = httpx.get(f"{server.base}/api/incidents/{incident_id}", headers=API, timeout=5).json()
    kinds = [e["kind"] for e in body["timeline"]]
    # the killed run left nothing behind: one job queued, one diagnosis done
    assert kinds.count("diagnosis_queued") == 1 and kinds.count("diagnosis_done") == 1, kinds
    assert "diagnosis_failed" not in kinds and "diagnosis" in body, kinds
