"""Crash soak (issue #9 item 10): `incident-bot serve` killed with SIGKILL at random moments, ``--runs`` times,
with intake, diagnosis and chat delivery all in flight.

The crash loop of tests/e2e/test_crash_safety.py, longer and with more going on: each run starts `serve`
(same database, same port) and a timer kills it with ``kill -9`` after a random (seeded) 0.3–5 s, while
a client posts Alertmanager groups of two (service ``soak-<n>``, its own fingerprints) one every 0.25 s:
a new group (at most ``--new-per-run`` a run), a group already answered (as Alertmanager repeats), or one
that got no answer (as Alertmanager retries). Every group's service is configured, so each incident
queues a diagnosis job: the confirmation probe of a local HTTP server that answers 502 after 0.3 s (three
probes a second apart), and for every fifth service SSH to a host that accepts the connection and never
speaks (the job hangs until ``ssh.deadline``: its lease, deadline plus ``jobs.lease_margin``, runs out
after a kill and it is claimed again). Slack is the local fake Slack Web API (bot/testing/slack_api.py),
incidents spread over 16 channels.

A run opens at most ``--new-per-run`` incidents (2); its other posts repeat answered groups or retry
unanswered ones, so the incidents' diagnoses and chat messages (four or five each, one a second per
channel) keep up. 100 runs made 179 incidents and 717 messages: 8 minutes of runs, then a 1-minute drain.

After the last run `serve` is started once more, everything unanswered is sent again, and the script
waits until no job is queued or running and no outbox message is undelivered. Then it checks, and prints:

- no committed alert lost: every alert of every POST answered 2xx is stored, under the incident the
  answer named (so no 2xx was given without committing);
- one incident per group, every group sent is stored (an unanswered one was re-sent);
- every job finished (``done``), one diagnosis job per incident, ``diagnosis_done`` once on its timeline;
- every outbox message delivered, each posted to Slack once (the messages carry their outbox id in
  their metadata: no id twice, each posted ``post`` message found), one root message per incident.

Exit status 0 when every check passes, 1 when one fails.

    .venv/bin/python tests/soak/soak_crash.py [--runs 100] [--seed N] [--store sqlite|postgresql] [--new-per-run 2]
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.lab.process import free_port
from bot.testing.slack_api import FakeMessage, FakeSlack
from tests.alertmanager_payload import firing_group
from tests.soak._serve import HOOK, TOKENS, Rows, Serve, database, wait_until

SIGNING_SECRET = "soak-crash-signing-secret-0123456789"
CHANNELS = [f"C0SOAK{n:02d}" for n in range(16)]
MAX_GROUPS = 2000  # services configured; more groups than this are not sent
SSH_EVERY = 5  # every fifth service is diagnosed over SSH on the silent host
SSH_DEADLINE_S = 2
#: The probe alone takes some 3 s (three requests of 0.3 s, a second apart), beyond ``SSH_DEADLINE_S``: the
#: margin covers it with room to spare on a busy machine (a lease that runs out while its job still runs
#: lets a second worker of the same process take the job, and the diagnosis is done twice).
LEASE_MARGIN_S = 5
POST_EVERY_S = 0.25


class SlowBadGateway(BaseHTTPRequestHandler):
    """Answers every request 502 after 0.3 s: the confirmation probe is in flight for a while."""

    def do_GET(self) -> None:
        time.sleep(0.3)
        self.send_response(502)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        return


def group_payload(n: int, probe_port: int) -> bytes:
    return firing_group(f"soak-{n}", n, lambda path: f"http://127.0.0.1:{probe_port}/soak-{n}/{path}")


def config_text(url: str, port: int, *, key: Path, known_hosts: Path, blackhole: int, probe_port: int) -> str:
    lines = [
        f"database_url: {url}",
        f"listen: 127.0.0.1:{port}",
        f"ssh: {{user: nobody, identity: {key}, known_hosts: {known_hosts}, connect_timeout: 2,"
        f" deadline: {SSH_DEADLINE_S}}}",
        f"jobs: {{lease_margin: {LEASE_MARGIN_S}}}",
        f"hosts: {{mute: {{address: 127.0.0.1, port: {blackhole}}}}}",
        f"slack: {{channel: {CHANNELS[0]}}}",
        "services:",
    ]
    for n in range(1, MAX_GROUPS + 1):
        hosts = "[mute]" if n % SSH_EVERY == 0 else "[]"
        lines.append(
            f"  soak-{n}: {{match: {{labels: {{service: soak-{n}}}}}, hosts: {hosts},"
            f" url: 'http://127.0.0.1:{probe_port}/soak-{n}', chat: {{slack_channel: {CHANNELS[n % len(CHANNELS)]}}}}}"
        )
    return "\n".join(lines) + "\n"


@dataclass
class Client:
    probe_port: int
    acked: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    pending: list[int] = field(default_factory=list)
    sent: set[int] = field(default_factory=set)
    next_group: int = 0
    answered: int = 0
    unanswered: int = 0
    #: New groups this run may still send.
    new_left: int = 0

    def pick(self, rng: random.Random) -> int:
        """An unanswered group first; else a new group or a repeat of an answered one, half and half, while
        the run may still open new ones (and a repeat after)."""
        if self.pending:
            return self.pending.pop(0)
        if self.acked and (self.new_left <= 0 or rng.random() < 0.5 or self.next_group >= MAX_GROUPS):
            return rng.choice(sorted(self.acked))
        self.new_left -= 1
        self.next_group += 1
        return self.next_group

    def post(self, client: httpx.Client, base: str, n: int) -> bool:
        self.sent.add(n)
        try:
            response = client.post(f"{base}/alerts/alertmanager", content=group_payload(n, self.probe_port),
                                   headers={**HOOK, "Content-Type": "application/json"})  # fmt: skip
        except httpx.TransportError:
            self.pending.append(n)
            self.unanswered += 1
            return False
        if response.status_code != 202:
            raise AssertionError(f"group {n}: answered {response.status_code} {response.text[:200]}")
        self.answered += 1
        self.acked.setdefault(n, []).append(response.json())
        return True


def incident_of(message: FakeMessage) -> str:
    """The incident id the bot put in a Slack message's metadata."""
    return str(((message.metadata or {}).get("event_payload") or {}).get("incident_id"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--max-life", type=float, default=5.0, help="seconds a run lives at most before kill -9")
    parser.add_argument("--new-per-run", type=int, default=2, help="new groups (incidents) a run sends at most")
    parser.add_argument("--drain", type=float, default=1800.0, help="seconds to wait for jobs and outbox at the end")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="incident-bot-soak-crash-"))
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=30)
    (workdir / "known_hosts").write_text("")
    probe = ThreadingHTTPServer(("127.0.0.1", 0), SlowBadGateway)
    threading.Thread(target=probe.serve_forever, daemon=True).start()
    probe_port = int(probe.server_address[1])
    port = free_port()
    started = time.monotonic()
    with (
        database(args.store, workdir) as url,
        socket.socket() as blackhole,
        FakeSlack(channels={c: c.lower() for c in CHANNELS}) as slack,
    ):
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(64)
        config = workdir / "incident-bot.yaml"
        config.write_text(
            config_text(
                url,
                port,
                key=key,
                known_hosts=workdir / "known_hosts",
                blackhole=blackhole.getsockname()[1],
                probe_port=probe_port,
            )
        )
        env = {**TOKENS, "XDG_STATE_HOME": str(workdir / "state"), "SLACK_BOT_TOKEN": slack.token,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.api_url}  # fmt: skip
        serve = Serve(workdir, config, port, env)
        rows = Rows(url, workdir)
        if args.store == "postgresql":
            serve.upgrade()
        soak = Client(probe_port)
        try:
            with httpx.Client(timeout=10) as client:
                for run in range(args.runs):
                    proc = serve.start()
                    soak.new_left = args.new_per_run
                    killer = threading.Timer(rng.uniform(0.3, args.max_life), proc.kill)
                    killer.start()
                    try:
                        while soak.post(client, serve.base, soak.pick(rng)):
                            time.sleep(POST_EVERY_S)
                    finally:
                        killer.join()
                        serve.kill()
                    if (run + 1) % 10 == 0:
                        print(f"  run {run + 1}/{args.runs}: {len(soak.sent)} groups, "
                              f"{time.monotonic() - started:.0f} s", flush=True)  # fmt: skip
                serve.start()
                while soak.pending:
                    if not soak.post(client, serve.base, soak.pending.pop(0)):
                        raise AssertionError("the last serve did not answer")
                drain_started = time.monotonic()
                try:
                    wait_until(
                        lambda: rows("SELECT count(*) FROM jobs WHERE state IN ('queued', 'running')") == [(0,)]
                        and rows("SELECT count(*) FROM outbox WHERE delivered_at IS NULL") == [(0,)],
                        args.drain, "every job done and every message delivered", every=1.0,
                    )  # fmt: skip
                except TimeoutError:
                    print(f"  not drained after {args.drain:.0f} s: reporting what is there", flush=True)
                drained = time.monotonic() - drain_started
                time.sleep(3)  # anything posted twice would arrive now
        finally:
            serve.stop()
            probe.shutdown()
        return report(args, soak, rows, slack, drained=drained, took=time.monotonic() - started, workdir=workdir)


def report(
    args: argparse.Namespace, soak: Client, rows: Rows, slack: FakeSlack, *, drained: float, took: float, workdir: Path
) -> int:
    stored = dict(rows("SELECT fingerprint, incident_id FROM alerts"))
    lost = [(n, r["fingerprint"]) for n, answers in soak.acked.items() for a in answers for r in a["results"]
            if stored.get(r["fingerprint"]) != r["incident"]]  # fmt: skip
    split = [n for n, answers in soak.acked.items() if len({r["incident"] for a in answers for r in a["results"]}) != 1]
    keys = rows("SELECT key, count(*) FROM incidents GROUP BY key")
    incidents = [i for (i,) in rows("SELECT id FROM incidents")]
    jobs = rows("SELECT incident_id, state, attempts FROM jobs")
    job_states = Counter(state for _, state, _ in jobs)
    reclaimed = sum(1 for _, _, attempts in jobs if attempts > 1)
    most_attempts = max((attempts for _, _, attempts in jobs), default=0)
    jobs_per_incident = Counter(i for i, _, _ in jobs)
    done_events = Counter(i for (i,) in rows("SELECT incident_id FROM events WHERE kind = 'diagnosis_done'"))
    twice_done = sorted(i for i, c in done_events.items() if c > 1)
    outbox = rows("SELECT id, incident_id, kind, delivered_at, attempts FROM outbox")
    undelivered = [o for o in outbox if o[3] is None]
    messages = [m for c in CHANNELS for root in slack.history(c) for m in slack.thread(c, root.ts)]
    ids = Counter(m.outbox_id for m in messages)
    duplicated = sorted(str(o) for o, c in ids.items() if c > 1)
    posts = {o[0] for o in outbox if o[2] == "post"}
    missing_posts = sorted(posts - set(ids))
    roots = Counter(
        str(((r.metadata or {}).get("event_payload") or {}).get("incident_id"))
        for c in CHANNELS
        for r in slack.history(c)
    )
    extra_roots = sorted(i for i, c in roots.items() if c > 1)
    retried = sum(1 for o in outbox if o[4] > 1)
    checks = [
        ("runs (serve killed with SIGKILL)", f"{args.runs} in {took:.0f} s (drain {drained:.0f} s)", True),
        ("groups sent / POSTs answered / unanswered", f"{len(soak.sent)} / {soak.answered} / {soak.unanswered}", True),
        ("acknowledged alerts lost or misfiled", f"{len(lost)} {lost[:5]}", not lost),
        ("groups told two incidents", f"{len(split)} {split[:5]}", not split),
        ("incidents / groups sent", f"{len(incidents)} / {len(soak.sent)}", len(incidents) == len(soak.sent)),
        ("incident keys stored twice", str(sum(1 for _, c in keys if c > 1)), all(c == 1 for _, c in keys)),
        ("jobs by state (retried after a kill; most tries)", f"{dict(job_states)} ({reclaimed}; {most_attempts})",
         set(job_states) == {"done"}),
        ("incidents without exactly one job", str(sum(1 for i in incidents if jobs_per_incident[i] != 1)),
         all(jobs_per_incident[i] == 1 for i in incidents)),
        ("incidents with diagnosis_done != 1", f"{sum(1 for i in incidents if done_events[i] != 1)} {twice_done[:5]}",
         all(done_events[i] == 1 for i in incidents)),
        ("outbox messages / undelivered / offered again", f"{len(outbox)} / {len(undelivered)} / {retried}",
         not undelivered),
        ("Slack messages / without outbox id", f"{len(messages)} / {ids[None]}", ids[None] == 0),
        ("outbox ids posted to Slack twice", f"{len(duplicated)} {duplicated[:5]}", not duplicated),
        ("outbox 'post' messages missing from Slack", f"{len(missing_posts)} {missing_posts[:5]}", not missing_posts),
        ("incidents with != 1 root message", f"{len(extra_roots) + len(set(incidents) - set(roots))}",
         not extra_roots and set(incidents) <= set(roots)),
    ]  # fmt: skip
    width = max(len(name) for name, _, _ in checks)
    load = ", ".join(f"{n:.2f}" for n in os.getloadavg())
    print(f"crash soak ({args.store}, seed {args.seed}, workdir {workdir}; load average now {load})")
    for name, value, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<{width}}  {value}")
    return 0 if all(ok for _, _, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
