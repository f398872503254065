"""Memory of ``incident-bot serve``: RSS idle with Slack and Telegram configured, and at its peak in a storm.

Slack and Telegram have no local server, so the chat clients talk to the project's fakes, started in
this process: the Slack Web API (bot/testing/slack_api.py) and the Telegram Bot API
(bot/testing/telegram_api.py, the incident chat a forum supergroup). Side by side, each a fresh process
on a fresh SQLite file, fed by the same load generator (bench/_loadgen.py, its own process):

- the floor: uvicorn + FastAPI serving a trivial webhook route (bench/_trivial_app.py), what any Python
  ASGI server with this framework holds;
- ``incident-bot serve`` with no chat configured (the console sender only): the peer for the chat rows;
- ``incident-bot serve`` with Slack (HTTP mode: ``SLACK_BOT_TOKEN``, ``SLACK_SIGNING_SECRET``,
  ``SLACK_API_URL``, ``SLACK_CHANNEL``) and Telegram (``TELEGRAM_BOT_TOKEN``, ``TELEGRAM_API_URL``,
  ``TELEGRAM_CHAT_ID``; long polling, as without ``telegram.webhook_url``) pointing at the fakes.

Phases per server: **idle**, ``--idle`` s once ``/healthz`` answers (the Telegram poller is waiting in
``getUpdates`` by then), RSS sampled every 0.1 s, the median reported; the **storm**, a closed loop of
``--concurrency`` connections for ``--duration`` s, every webhook a captured Alertmanager group of two
alerts with new fingerprints for one of ``--groups`` services that the configuration does not route
(so no SSH diagnosis runs: this measures intake and chat), each service's incident told to the default
Slack channel and Telegram chat; then ``--drain`` s while the outbox goes on writing to the fakes (one
message a second per target). RSS is sampled every 0.1 s throughout; reported: the highest sample, the
kernel's high-water mark (``VmHWM``, which no sampling misses) and RSS at the end of the drain. Also
reported: the calls each fake answered, so a row whose chat client never talked shows.

Ratios are to ``serve`` with no chat. Prints a table, writes bench/out/memory.md, exits 0.

    .venv/bin/python bench/memory.py [--idle 5] [--duration 10] [--drain 15] [--concurrency 32] [--groups 50]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _server import Server  # bench/ is on sys.path: Python puts the script's directory first

from bot.lab.process import free_port
from bot.testing.http_fake import FakeHttpServer
from bot.testing.slack_api import FakeSlack
from bot.testing.telegram_api import FORUM_CHAT_ID, FakeTelegram

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
PYTHON = ROOT / ".venv" / "bin" / "python"
BOT = ROOT / ".venv" / "bin" / "incident-bot"
CHANNEL = "C0INCIDENTS"
SIGNING_SECRET = "bench-signing-secret-0123456789abcdef"
#: Variables of the caller's shell that would change what serve does here.
UNSET = ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_API_URL", "SLACK_CHANNEL",
         "TELEGRAM_BOT_TOKEN", "TELEGRAM_API_URL", "TELEGRAM_CHAT_ID", "TELEGRAM_WEBHOOK_SECRET",
         "PAGERDUTY_ROUTING_KEY", "DATABASE_URL", "INCIDENT_BOT_CONFIG")  # fmt: skip
SAMPLE_EVERY = 0.1


def rss_mib(pid: int, key: str = "VmRSS") -> float:
    """``key`` of /proc/PID/status in MiB (NaN once the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


class Sampler:
    """Samples a process's RSS every 0.1 s in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.values: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            value = rss_mib(self.pid)
            if not math.isnan(value):
                self.values.append(value)
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Row:
    name: str
    idle: float = float("nan")
    storm_peak: float = float("nan")
    hwm: float = float("nan")
    after: float = float("nan")
    webhooks: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    slack_calls: dict[str, int] = field(default_factory=dict)
    telegram_calls: dict[str, int] = field(default_factory=dict)


def storm(server: Server, token: str, args: argparse.Namespace, prefix: str) -> dict[str, Any]:
    argv = [str(PYTHON), str(BENCH / "_loadgen.py"), "--url", f"{server.base}/alerts/alertmanager",
            "--token", token, "--mode", "closed", "--duration", str(args.duration),
            "--concurrency", str(args.concurrency), "--prefix", prefix, "--groups", str(args.groups)]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=args.duration + 120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def measure(name: str, server: Server, token: str, args: argparse.Namespace, counts: Callable[[], tuple[
        dict[str, int], dict[str, int]]]) -> Row:  # fmt: skip
    """Idle, storm and drain of one started server; stops it."""
    row = Row(name)
    try:
        with Sampler(server.pid) as idle:
            time.sleep(args.idle)
        row.idle = statistics.median(idle.values)
        with Sampler(server.pid) as busy:
            result = storm(server, token, args, prefix=f"m{len(name):02d}")
            time.sleep(args.drain)
        row.storm_peak = max(busy.values)
        row.after = busy.values[-1]
        row.hwm = rss_mib(server.pid, "VmHWM")
        row.statuses = dict(result["statuses"])
        row.webhooks = int(result["statuses"].get("202", 0))
        row.slack_calls, row.telegram_calls = counts()
    finally:
        server.stop()
    return row


def tally(calls: list[str]) -> dict[str, int]:
    found: dict[str, int] = {}
    for method in calls:
        found[method] = found.get(method, 0) + 1
    return found


def ratio(value: float, peer: float) -> str:
    return f"{value / peer:.2f}" if peer > 0 and not math.isnan(value) else "—"


def calls_text(calls: dict[str, int]) -> str:
    if not calls:
        return "—"
    return ", ".join(f"{method} {n}" for method, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])))


def table(rows: list[Row]) -> str:
    peer = next(r for r in rows if r.name.endswith("no chat"))
    lines = [
        "| server | idle RSS MiB | ÷ serve, no chat | storm peak RSS MiB (sampled) | VmHWM MiB | ÷ serve, no chat "
        "| RSS after the drain MiB | webhooks acked in the storm |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {r.idle:.1f} | {ratio(r.idle, peer.idle)} | {r.storm_peak:.1f} | {r.hwm:.1f} "
                     f"| {ratio(r.hwm, peer.hwm)} | {r.after:.1f} | {r.webhooks} |")  # fmt: skip
    lines += ["", "| server | calls the fake Slack answered | calls the fake Telegram answered |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.name} | {calls_text(r.slack_calls)} | {calls_text(r.telegram_calls)} |")
    odd = [f"{r.name}: {r.statuses}" for r in rows if set(r.statuses) != {"202"}]
    if odd:
        lines += ["", "answers other than 202 in the storm: " + "; ".join(odd)]
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")  # fmt: skip
    return (f"{os.cpu_count()} cores ({cpu}), Debian {Path('/etc/debian_version').read_text().strip()}, "
            f"Linux {platform.release()}, Python {platform.python_version()}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before the storm (default 5)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of the storm (default 10)")
    parser.add_argument("--drain", type=float, default=15.0, help="seconds sampled after the storm (default 15)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the storm (default 32)")
    parser.add_argument("--groups", type=int, default=50, help="services the storm's alerts name (default 50)")
    args = parser.parse_args()
    if min(args.idle, args.duration, args.concurrency, args.groups) <= 0 or args.drain < 0:
        parser.error("--idle, --duration, --concurrency and --groups must be positive, --drain not negative")
    if not BOT.exists():
        raise SystemExit(f"{BOT} is missing: install the project into .venv first")
    base = Path(tempfile.mkdtemp(prefix="ib-memory-", dir="/var/tmp"))
    token = secrets.token_hex(24)
    common = {k: v for k, v in os.environ.items() if k not in UNSET}
    common |= {"INCIDENT_BOT_WEBHOOK_TOKEN": token, "INCIDENT_BOT_API_TOKEN": secrets.token_hex(16)}
    rows: list[Row] = []
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    telegram = FakeTelegram()
    try:
        with FakeSlack(channels={CHANNEL: "incidents"}) as slack, FakeHttpServer(telegram, name="fake-tg") as tg:

            def counts() -> tuple[dict[str, int], dict[str, int]]:
                return tally([c.method for c in slack.calls]), tally([c.method for c in telegram.calls])

            def reset() -> None:
                slack.reset()
                telegram.reset()

            port = free_port()
            floor = [str(PYTHON), "-m", "uvicorn", "_trivial_app:app", "--app-dir", str(BENCH), "--host",
                     "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning", "--lifespan",
                     "off"]  # fmt: skip
            server = Server(floor, common, base / "floor.log", port)
            reset()
            server.start()
            rows.append(measure("uvicorn + FastAPI trivial route (floor)", server, token, args, counts))
            print(f"floor: idle {rows[-1].idle:.1f} MiB", file=sys.stderr, flush=True)
            chat = {"SLACK_BOT_TOKEN": slack.token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                    "SLACK_API_URL": slack.api_url, "SLACK_CHANNEL": CHANNEL, "TELEGRAM_BOT_TOKEN": telegram.token,
                    "TELEGRAM_API_URL": tg.url + "/bot", "TELEGRAM_CHAT_ID": str(FORUM_CHAT_ID)}  # fmt: skip
            for name, extra in (("incident-bot serve, no chat", {}), ("incident-bot serve, Slack + Telegram", chat)):
                folder = base / name.split(",")[1].strip().replace(" ", "-").replace("+", "and")
                folder.mkdir()
                port = free_port()
                config = folder / "incident-bot.yaml"
                config.write_text(f"database_url: sqlite+aiosqlite:///{folder / 'bot.db'}\nlisten: 127.0.0.1:{port}\n")
                env = {**common, **extra, "XDG_STATE_HOME": str(folder / "state")}
                server = Server([str(BOT), "serve", "--config", str(config)], env, folder / "serve.log", port)
                reset()
                server.start()
                rows.append(measure(name, server, token, args, counts))
                print(f"{name}: idle {rows[-1].idle:.1f} MiB, peak {rows[-1].hwm:.1f} MiB", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    report = "\n".join([
        f"memory of serve, {datetime.now(UTC):%Y-%m-%d}; SQLite store; idle {args.idle:g} s; storm: "
        f"{args.concurrency} connections for {args.duration:g} s (Alertmanager groups of 2 alerts over "
        f"{args.groups} unrouted services), then {args.drain:g} s of drain",
        f"machine: {machine()}",
        f"load average (1 min) before the run {load_at_start:.2f} (shared machine)",
        "",
        table(rows),
        f"(whole run {time.monotonic() - started:.0f} s)",
    ])  # fmt: skip
    print(report)
    OUT.mkdir(exist_ok=True)
    (OUT / "memory.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
