"""Load generator for bench/intake.py: Alertmanager webhooks with fresh fingerprints, closed or open loop.

Run as its own process (the intake benchmark pins it to the core the server does not use); prints one
JSON object on stdout and exits 0.

- ``closed``: ``--concurrency`` connections, each posting the next webhook as soon as the previous
  answer is in, for ``--duration`` seconds: the most the server can take.
- ``open``: webhooks sent at ``--rate`` per second on a fixed schedule, whatever the answers do
  (up to 1024 in flight), for ``--duration`` seconds; a latency counts from the scheduled send time,
  so a server that falls behind shows its queue in the tail rather than slowing the sender down.

Every webhook is the captured Alertmanager v4 group of two (tests/fixtures/alerts/alertmanager/
01-firing-group-of-two.json) with two fingerprints never sent before (``--prefix`` keeps phases
apart) and the service label ``storm-<i mod groups>``: the first webhook of a group opens an
incident, the later ones add their alerts to it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp

FIXTURE = (
    Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "alerts" / "alertmanager"
    / "01-firing-group-of-two.json"
)  # fmt: skip
ALERTS_PER_WEBHOOK = 2
MAX_IN_FLIGHT = 1024


class Bodies:
    """Webhook ``i`` as bytes: the fixture with the i-th fingerprints and service filled in."""

    def __init__(self, prefix: str, groups: int) -> None:
        body = json.loads(FIXTURE.read_text())
        body["groupKey"] = '{}:{alertname="HTTP5xx", service="@SVC@"}'
        body["groupLabels"]["service"] = body["commonLabels"]["service"] = "@SVC@"
        for index, alert in enumerate(body["alerts"]):
            alert["labels"]["service"] = "@SVC@"
            alert["fingerprint"] = f"@FP{index}@"
        self.template = json.dumps(body)
        self.prefix = prefix
        self.groups = groups

    def __call__(self, i: int) -> bytes:
        text = self.template.replace("@SVC@", f"storm-{i % self.groups}")
        for index in range(ALERTS_PER_WEBHOOK):
            text = text.replace(f"@FP{index}@", f"{self.prefix}{i:010x}{index:02x}")
        return text.encode()


class Tally:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: Counter[str] = Counter()

    async def post(self, session: aiohttp.ClientSession, url: str, body: bytes, since: float) -> None:
        try:
            async with session.post(url, data=body) as response:
                await response.read()
                status = str(response.status)
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            status = type(exc).__name__
        self.latencies.append(time.perf_counter() - since)
        self.statuses[status] += 1


async def closed(url: str, headers: dict[str, str], bodies: Bodies, concurrency: int, duration: float) -> Tally:
    tally = Tally()
    counter = iter(range(1 << 40))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        stop = time.perf_counter() + duration

        async def worker() -> None:
            while time.perf_counter() < stop:
                body = bodies(next(counter))
                await tally.post(session, url, body, time.perf_counter())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tally


async def open_loop(url: str, headers: dict[str, str], bodies: Bodies, rate: float, duration: float) -> Tally:
    tally = Tally()
    total = int(rate * duration)
    connector = aiohttp.TCPConnector(limit=MAX_IN_FLIGHT)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        start = time.perf_counter()
        pending: set[asyncio.Task[None]] = set()
        for i in range(total):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(tally.post(session, url, bodies(i), due))
            pending.add(task)
            task.add_done_callback(pending.discard)
        if pending:
            await asyncio.wait(pending)
    return tally


def percentile(ordered: list[float], fraction: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--mode", choices=("closed", "open"), required=True)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rate", type=float, default=1000.0, help="webhooks per second (open loop)")
    parser.add_argument("--prefix", required=True, help="fingerprint prefix, unique per phase")
    parser.add_argument("--groups", type=int, default=50)
    args = parser.parse_args()
    headers = {"Authorization": f"Bearer {args.token}", "Content-Type": "application/json"}
    bodies = Bodies(args.prefix, args.groups)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    if args.mode == "closed":
        tally = asyncio.run(closed(args.url, headers, bodies, args.concurrency, args.duration))
    else:
        tally = asyncio.run(open_loop(args.url, headers, bodies, args.rate, args.duration))
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    ordered = sorted(tally.latencies)
    json.dump(
        {
            "sent": len(ordered),
            "statuses": dict(tally.statuses),
            "elapsed": elapsed,
            "p50": percentile(ordered, 0.50),
            "p99": percentile(ordered, 0.99),
            "max": ordered[-1] if ordered else float("nan"),
            "client_cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "alerts_per_webhook": ALERTS_PER_WEBHOOK,
        },
        sys.stdout,
    )
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
