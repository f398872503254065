"""Storm soak (issue #9 item 9): 10,000 alerts in 60 s into one `incident-bot serve`, with Slack on.

The load: 200 groups (service ``storm-<g>``), each sent as 20 Alertmanager v4 webhooks of two alerts with
fingerprints never sent before (40 alerts a group, 8,000 in all), plus 2,000 single alerts (service
``single-<i>``, one webhook of one alert each): 6,000 webhooks carrying 10,000 alerts, shuffled (seeded) and
sent open-loop on a fixed schedule over ``--duration`` seconds (aiohttp, up to 1,024 in flight; a latency
counts from the scheduled send time, so a server that falls behind shows it in the tail). Slack is the
local fake Slack Web API (bot/testing/slack_api.py), every incident posting to one channel.

Checked, and printed as a table:

- one incident per group: every alert of a group is stored under the same incident, no two groups share
  one, and the store holds exactly 2,200 incidents (200 groups + 2,000 single alerts);
- no 5xx (nor transport error) from intake; every answer is a 202;
- intake latency p50/p99 (target: p99 under 250 ms);
- Slack calls per second per channel (``chat.postMessage`` and ``chat.update``, during the storm and
  ``--settle`` seconds after): the most in any one-second window and the mean, against Slack's pace of
  about one message a second per channel (a short burst allowed); 429s answered by the fake are counted.

Exit status 0 when every check passes, 1 when one fails (the table says which).

    .venv/bin/python tests/soak/soak_storm.py [--store sqlite|postgresql] [--duration 60] [--settle 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

if __package__ in (None, ""):  # run as a file: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bot.lab.process import free_port
from bot.testing.slack_api import FakeSlack
from tests.soak._serve import HOOK, TOKENS, Rows, Serve, database, percentile, traced_command

SIGNING_SECRET = "soak-storm-signing-secret-0123456789"
CHANNEL = "C0STORM"
GROUPS = 200
WEBHOOKS_PER_GROUP = 20
ALERTS_PER_GROUP_WEBHOOK = 2
SINGLES = 2000
MAX_IN_FLIGHT = 1024
P99_TARGET_S = 0.250
#: A line of a formatted stack: file, line, function.
FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
#: Slack: about one message a second per channel, short bursts allowed (platforms.md §1).
SLACK_BURST = 3


def alert(service: str, fingerprint: str, path: str) -> dict[str, Any]:
    return {
        "status": "firing",
        "labels": {"alertname": "HTTP5xx", "service": service, "status": "502",
                   "instance": f"https://{service}.example.com/{path}"},
        "annotations": {"summary": f"{service} {path} returns 502"},
        "startsAt": "2026-11-30T05:59:12.403871648Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus.example:9090/graph",
        "fingerprint": fingerprint,
    }  # fmt: skip


def webhook(service: str, alerts: list[dict[str, Any]]) -> bytes:
    body = {
        "receiver": "incident-bot", "status": "firing", "alerts": alerts,
        "groupLabels": {"alertname": "HTTP5xx", "service": service},
        "commonLabels": {"alertname": "HTTP5xx", "service": service, "status": "502"},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "version": "4",
        "groupKey": f'{{}}:{{alertname="HTTP5xx", service="{service}"}}', "truncatedAlerts": 0,
    }  # fmt: skip
    return json.dumps(body).encode()


def the_storm(seed: int) -> tuple[list[bytes], dict[str, str]]:
    """The webhooks in sending order, and each fingerprint's group (``storm-<g>`` or ``single-<i>``)."""
    bodies: list[bytes] = []
    group_of: dict[str, str] = {}
    for g in range(GROUPS):
        service = f"storm-{g}"
        for w in range(WEBHOOKS_PER_GROUP):
            alerts = []
            for a in range(ALERTS_PER_GROUP_WEBHOOK):
                fingerprint = f"g{g:05d}w{w:03d}a{a}"
                group_of[fingerprint] = service
                alerts.append(alert(service, fingerprint, f"p{w}-{a}"))
            bodies.append(webhook(service, alerts))
    for i in range(SINGLES):
        service, fingerprint = f"single-{i}", f"s{i:06d}"
        group_of[fingerprint] = service
        bodies.append(webhook(service, [alert(service, fingerprint, "healthz")]))
    random.Random(seed).shuffle(bodies)
    return bodies, group_of


@dataclass
class Sent:
    """One webhook: when it was due (seconds into the storm), how late the client sent it (its own stalls)
    and how long after it was due the answer came."""

    due: float
    late: float
    latency: float


async def send(url: str, bodies: list[bytes], duration: float) -> tuple[list[Sent], Counter[str], float]:
    """Open loop: webhook ``i`` at ``i * duration / len(bodies)`` seconds; each one sent, the answers, and
    the wall-clock time the storm started."""
    latencies: list[Sent] = []
    statuses: Counter[str] = Counter()
    rate = len(bodies) / duration
    headers = {**HOOK, "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_IN_FLIGHT), headers=headers, timeout=timeout
    ) as session:

        async def post(body: bytes, due: float) -> None:
            late = time.perf_counter() - due
            try:
                async with session.post(url, data=body) as response:
                    await response.read()
                    status = str(response.status)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                status = type(exc).__name__
            latencies.append(Sent(due - start, late, time.perf_counter() - due))
            statuses[status] += 1

        start, wall = time.perf_counter(), time.time()
        tasks = []
        for i, body in enumerate(bodies):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(body, due)))
        await asyncio.gather(*tasks)
    return latencies, statuses, wall


def stored(url: str, workdir: Path) -> tuple[dict[str, str], list[tuple[str, int]]]:
    """Each stored alert's incident, and each incident key with its count."""
    rows = Rows(url, workdir)
    alerts = {str(fp): str(incident) for fp, incident in rows("SELECT fingerprint, incident_id FROM alerts")}
    return alerts, [(str(key), int(count)) for key, count in rows("SELECT key, count(*) FROM incidents GROUP BY key")]


def slack_pace(slack: FakeSlack, since: float) -> dict[str, dict[str, float]]:
    """Per channel: the calls, the most in any 1 s window, the mean per second, and the 429s."""
    by_channel: dict[str, list[float]] = defaultdict(list)
    limited: Counter[str] = Counter()
    for call in slack.calls:
        if call.method not in ("chat.postMessage", "chat.update") or call.at < since:
            continue
        channel = str(call.args.get("channel"))
        if call.status == 429:
            limited[channel] += 1
        else:
            by_channel[channel].append(call.at)
    pace: dict[str, dict[str, float]] = {}
    for channel, times in by_channel.items():
        times.sort()
        most, left = 0, 0
        for right, at in enumerate(times):
            while at - times[left] >= 1.0:
                left += 1
            most = max(most, right - left + 1)
        span = max(times[-1] - times[0], 1.0)
        pace[channel] = {"calls": len(times), "max_1s": most, "mean_per_s": len(times) / span, "429s": limited[channel]}
    return pace


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds the 10,000 alerts are spread over")
    parser.add_argument("--settle", type=float, default=20.0, help="seconds to watch Slack after the storm")
    parser.add_argument("--seed", type=int, default=20261130)
    parser.add_argument(
        "--trace", action="store_true", help="run serve traced: server-side latency, loop stalls, full collections"
    )
    args = parser.parse_args()
    bodies, group_of = the_storm(args.seed)
    workdir = Path(tempfile.mkdtemp(prefix="incident-bot-soak-storm-"))
    port = free_port()
    with database(args.store, workdir) as url, FakeSlack(channels={CHANNEL: "storm"}) as slack:
        config = workdir / "incident-bot.yaml"
        config.write_text(f"database_url: {url}\nlisten: 127.0.0.1:{port}\nslack: {{channel: {CHANNEL}}}\n")
        env = {**TOKENS, "XDG_STATE_HOME": str(workdir / "state"), "SLACK_BOT_TOKEN": slack.token,
               "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": slack.api_url}  # fmt: skip
        serve = Serve(workdir, config, port, env)
        trace = workdir / "serve-trace.jsonl"
        if args.trace:
            serve.command = traced_command(trace)
        if args.store == "postgresql":
            serve.upgrade()
        serve.start()
        try:
            started = slack.calls[-1].at if slack.calls else 0.0
            load_before = os.getloadavg()
            t0 = time.monotonic()
            latencies, statuses, wall = asyncio.run(send(f"{serve.base}/alerts/alertmanager", bodies, args.duration))
            sent_in = time.monotonic() - t0
            load_after = os.getloadavg()
            time.sleep(args.settle)
            alerts, keys = stored(url, workdir)
            pace = slack_pace(slack, started)
        finally:
            serve.stop()

    incidents_of: dict[str, set[str | None]] = defaultdict(set)
    for fingerprint, group in group_of.items():
        incidents_of[group].add(alerts.get(fingerprint))
    per_group = Counter(len(found - {None}) for found in incidents_of.values())
    missing = sum(1 for fp in group_of if fp not in alerts)
    owners: Counter[str] = Counter(i for found in incidents_of.values() for i in found if i is not None)
    shared = sum(1 for count in owners.values() if count > 1)
    duplicated_keys = sum(1 for _, count in keys if count > 1)
    ordered = sorted(sent.latency for sent in latencies)
    slow_by_second = Counter(int(sent.due) for sent in latencies if sent.latency >= P99_TARGET_S)
    p50, p95, p99 = percentile(ordered, 0.50), percentile(ordered, 0.95), percentile(ordered, 0.99)
    late = sorted(sent.late for sent in latencies)
    bad = {s: n for s, n in statuses.items() if s != "202"}
    fives = sum(n for s, n in statuses.items() if s.startswith("5"))
    worst_1s = max((p["max_1s"] for p in pace.values()), default=0)
    checks = [
        ("webhooks sent / alerts", f"{len(bodies)} / {len(group_of)} in {sent_in:.1f} s", True),
        ("groups with one incident", f"{per_group[1]} of {len(incidents_of)} (by count: {dict(per_group)})",
         per_group[1] == len(incidents_of)),
        ("alerts not stored", str(missing), missing == 0),
        ("incidents shared by groups", str(shared), shared == 0),
        ("incidents stored", f"{len(keys)} (expected {GROUPS + SINGLES})", len(keys) == GROUPS + SINGLES),
        ("incident keys stored twice", str(duplicated_keys), duplicated_keys == 0),
        ("5xx from intake", str(fives), fives == 0),
        ("answers other than 202", json.dumps(bad) if bad else "none", not bad),
        ("intake p50 / p95 / p99 / max",
         f"{p50 * 1000:.1f} / {p95 * 1000:.1f} / {p99 * 1000:.1f} / {ordered[-1] * 1000:.1f} ms", p99 < P99_TARGET_S),
    ]  # fmt: skip
    for channel, p in sorted(pace.items()):
        checks.append((
            f"Slack {channel}: calls, max in 1 s, mean/s, 429s",
            f"{p['calls']:.0f}, {p['max_1s']:.0f}, {p['mean_per_s']:.2f}, {p['429s']:.0f}",
            p["max_1s"] <= SLACK_BURST and p["mean_per_s"] <= 1.05,
        ))  # fmt: skip
    if not pace:
        checks.append(("Slack calls", "none at all", False))
    width = max(len(name) for name, _, _ in checks)
    print(f"storm soak ({args.store}, seed {args.seed}, {args.duration:.0f} s, settle {args.settle:.0f} s;"
          f" load average {load_before[0]:.2f} before, {load_after[0]:.2f} after the storm,"
          f" {os.cpu_count()} CPUs)")  # fmt: skip
    for name, value, ok in checks:
        print(f"  {'ok  ' if ok else 'FAIL'} {name:<{width}}  {value}")
    print(f"  (most Slack calls in one second, any channel: {worst_1s}; workdir {workdir})")
    slowest = ", ".join(f"{second}s: {count}" for second, count in sorted(slow_by_second.most_common(8)))
    print(f"  requests at or over {P99_TARGET_S * 1000:.0f} ms: {sum(slow_by_second.values())}, in"
          f" {len(slow_by_second)} of the storm's seconds (the worst by second sent: {slowest or 'none'})")  # fmt: skip
    print(f"  client: sent late by p99 {percentile(late, 0.99) * 1000:.1f} / max {late[-1] * 1000:.1f} ms"
          " (its own stalls; a latency counts from when a webhook was due)")  # fmt: skip
    if args.trace:
        print_trace(trace, wall)
    return 0 if all(ok for _, _, ok in checks) else 1


def print_trace(trace: Path, wall: float) -> None:
    """What the server saw (``--trace``): its own latency, the event loop's stalls, full collections."""
    events = [json.loads(line) for line in trace.read_text(encoding="utf-8").splitlines()] if trace.exists() else []
    during = [e for e in events if e["t"] - wall >= -1.0]
    served = sorted(e["d"] for e in during if e["k"] == "req")
    if served:
        print(f"  server: p50 / p95 / p99 / max {percentile(served, 0.5) * 1000:.1f} / "
              f"{percentile(served, 0.95) * 1000:.1f} / {percentile(served, 0.99) * 1000:.1f} / "
              f"{served[-1] * 1000:.1f} ms over {len(served)} webhooks (inside the app)")  # fmt: skip
    collections = [e for e in during if e["k"] == "gc"]
    shown = ", ".join(f"{e['t'] - wall:.1f}s: {e['d'] * 1000:.0f} ms, {e['frozen']} frozen" for e in collections[:10])
    print(f"  server: full collections: {len(collections)}{' (' + shown + ')' if shown else ''}")
    lags = [e for e in during if e["k"] == "lag"]
    shown = ", ".join(f"{e['t'] - wall:.1f}s: {e['d'] * 1000:.0f} ms" for e in lags[:10])
    print(f"  server: event loop late by 50 ms or more: {len(lags)}{' (' + shown + ')' if shown else ''}")
    for stall in (e for e in during if e["k"] == "stall"):
        frames = [FRAME.match(line) for line in stall["stack"][-3:]]
        where = " <- ".join(f"{m[3]} ({Path(m[1]).name}:{m[2]})" for m in reversed(frames) if m)
        print(f"  server: loop stalled 100 ms or more at {stall['t'] - wall:.1f}s, in {where}")


if __name__ == "__main__":
    sys.exit(main())
