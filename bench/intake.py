"""Alert intake: authenticated, durably stored Alertmanager webhooks per second on one core, and memory.

Side by side in one run, each server pinned to core 0 with ``taskset`` and fed by the same load
generator (bench/_loadgen.py, aiohttp) pinned to core 1:

- the ceiling: uvicorn + FastAPI serving a trivial webhook route (bench/_trivial_app.py: bearer
  check, body read, 202) with the settings ``serve`` uses;
- ``incident-bot serve`` on SQLite (a file on disk; WAL, ``synchronous=NORMAL``: the store's own
  settings);
- ``incident-bot serve`` on PostgreSQL: a throwaway cluster started here as the ``postgres`` user
  with durable settings (``fsync``, ``synchronous_commit``, ``full_page_writes`` on), also pinned to
  core 1, migrated with ``incident-bot db upgrade``.

Every request carries the bearer token (``INCIDENT_BOT_WEBHOOK_TOKEN``) and a captured Alertmanager
v4 group of two alerts with fingerprints never sent before; ``--groups`` services share the storm, so
most alerts join an open incident. A 202 from serve means both alerts are committed; after each server
the alerts table is counted and must hold every acknowledged alert.

Phases per server: 2 s warm-up; ``--duration`` s closed loop with ``--concurrency`` connections (the
most it takes: stored alerts/s, p50/p99 at that load); ``--duration`` s open loop at the target rate
(``--target`` alerts/s, or half the closed-loop rate when that is lower: p50/p99 at a steady
rate). CPU use of the server, PostgreSQL and the client is reported, so a saturated client shows, and
so are the stored alerts per second of server CPU: on a shared machine the server may not get its whole
core, and that figure is what it would store with one.

Memory (issue item 5): RSS of ``serve`` idle (2 s after it answers ``/healthz``, with Slack and
Telegram variables set) and its peak (VmHWM) after the storm.

Target (benchmarks issue): on PostgreSQL ≥ 2,000 stored alerts/s and p99 < 50 ms. Prints tables,
writes bench/out/intake.md, exits 0.

    bash bench/setup.sh            # once: taskset (util-linux), PostgreSQL
    .venv/bin/python bench/intake.py [--duration 8] [--concurrency 32] [--target 2000] [--stores sqlite,postgresql]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from _server import Server  # bench/ is on sys.path: Python puts the script's directory first

from bot.lab import postgres
from bot.lab.paths import LabPaths
from bot.lab.process import children, free_port

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
PYTHON = ROOT / ".venv" / "bin" / "python"
BOT = ROOT / ".venv" / "bin" / "incident-bot"
SERVER_CORE, CLIENT_CORE = "0", "1"
#: Chat variables set for the memory measurement (the storm's alerts route to no chat target).
CHAT_ENV = {
    "SLACK_BOT_TOKEN": "xoxb-0000000000-bench",
    "SLACK_SIGNING_SECRET": "bench-signing-secret",
    "SLACK_CHANNEL": "C0BENCH",
    "TELEGRAM_BOT_TOKEN": "123456:bench-token",
    "TELEGRAM_WEBHOOK_SECRET": "bench-webhook-secret",
    "TELEGRAM_CHAT_ID": "-1000000000001",
}
DURABLE_PG = "\n# bench/intake.py: durable commits, as in production\nfsync = on\nsynchronous_commit = on\n" \
    "full_page_writes = on\nmax_connections = 60\nshared_buffers = 128MB\n"  # fmt: skip

#: Lists the PostgreSQL processes to charge CPU to (none for SQLite and the ceiling).
PidSource = Callable[[], list[int]]


@dataclass
class Result:
    name: str
    store: str
    closed: dict[str, Any] = field(default_factory=dict)
    paced: dict[str, Any] = field(default_factory=dict)
    paced_rate: float = 0.0
    server_cpu: float = 0.0
    pg_cpu: float | None = None
    idle_rss: float | None = None
    peak_rss: float | None = None
    acked_alerts: int = 0
    stored_alerts: int | None = None


def proc_times(pid: int) -> float:
    """Seconds of CPU (user + system) a live process has used."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return float(line.split()[1])
    return float("nan")


def pin(pid: int, core: str) -> None:
    subprocess.run(["taskset", "-a", "-cp", core, str(pid)], check=True, capture_output=True)


def load(server: Server, token: str, mode: str, args: argparse.Namespace, *, duration: float, prefix: str,
         rate: float = 0.0) -> dict[str, Any]:  # fmt: skip
    argv = ["taskset", "-c", CLIENT_CORE, str(PYTHON), str(BENCH / "_loadgen.py"),
            "--url", f"{server.base}/alerts/alertmanager", "--token", token, "--mode", mode,
            "--duration", str(duration), "--concurrency", str(args.concurrency), "--prefix", prefix,
            "--groups", str(args.groups)]  # fmt: skip
    if mode == "open":
        argv += ["--rate", f"{rate:.1f}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the load generator failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout)
    result["ok"] = int(result["statuses"].get("202", 0))
    result["rate"] = result["ok"] / result["elapsed"]
    return result


def storm(server: Server, token: str, args: argparse.Namespace, result: Result, pg_pids: PidSource) -> None:
    """Warm-up, closed loop, open loop; fills ``result`` (throughput, latency, CPU, RSS)."""
    time.sleep(2.0)
    result.idle_rss = status_kib(server.pid, "VmRSS") / 1024
    acked = load(server, token, "closed", args, duration=2.0, prefix="aa")["ok"]
    cpu_before = proc_times(server.pid)
    pg_before = sum(proc_times(p) for p in pg_pids())
    result.closed = load(server, token, "closed", args, duration=args.duration, prefix="bb")
    result.server_cpu = (proc_times(server.pid) - cpu_before) / result.closed["elapsed"]
    pids = pg_pids()
    if pids:  # backends forked during the phase count whole: they started at zero
        result.pg_cpu = (sum(proc_times(p) for p in pids) - pg_before) / result.closed["elapsed"]
    acked += result.closed["ok"]
    per = result.closed["alerts_per_webhook"]
    result.paced_rate = min(args.target / per, 0.5 * result.closed["rate"])
    result.paced = load(server, token, "open", args, duration=args.duration, prefix="cc", rate=result.paced_rate)
    acked += result.paced["ok"]
    result.acked_alerts = acked * per
    result.peak_rss = status_kib(server.pid, "VmHWM") / 1024


def start_pg(root: Path) -> tuple[LabPaths, int]:
    """A throwaway cluster with durable settings, pinned to the client core; returns its paths and port."""
    root.mkdir(mode=0o755)
    paths = LabPaths(root)
    paths.logs.mkdir()
    port = free_port()
    postgres.init(paths, port)
    with (paths.pg_data / "postgresql.conf").open("a", encoding="utf-8") as conf:
        conf.write(DURABLE_PG)
    pid = postgres.start(paths)
    for each in [pid, *children(pid)]:
        pin(each, CLIENT_CORE)
    with psycopg.connect(postgres.conninfo(port), autocommit=True) as conn:
        conn.execute("CREATE DATABASE bench")
    return paths, port


def count_alerts(database_url: str, sqlite_file: Path | None) -> int:
    if sqlite_file is not None:
        with sqlite3.connect(sqlite_file) as db:
            return int(db.execute("SELECT count(*) FROM alerts").fetchone()[0])
    conninfo = database_url.replace("postgresql+asyncpg://", "postgresql://")
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT count(*) FROM alerts").fetchone()
        return int(row[0]) if row else 0


def run_serve(name: str, database_url: str, work: Path, token: str, args: argparse.Namespace, *,
              sqlite_file: Path | None, pg_pids: PidSource) -> Result:  # fmt: skip
    port = free_port()
    folder = work / name.replace(" ", "-")
    folder.mkdir()
    config = folder / "incident-bot.yaml"
    config.write_text(f"database_url: {database_url}\nlisten: 127.0.0.1:{port}\n")
    env = {**os.environ, **CHAT_ENV, "INCIDENT_BOT_WEBHOOK_TOKEN": token,
           "INCIDENT_BOT_API_TOKEN": secrets.token_hex(16), "XDG_STATE_HOME": str(folder / "state")}  # fmt: skip
    if sqlite_file is None:
        subprocess.run([str(BOT), "db", "upgrade", "--config", str(config)], env=env, check=True,
                       capture_output=True, timeout=120)  # fmt: skip
    argv = [str(BOT), "serve", "--config", str(config)]
    server = Server(argv, env, folder / "serve.log", port, cores=SERVER_CORE, start_timeout=30, stop_timeout=15)
    result = Result("incident-bot serve", name)
    server.start()
    try:
        storm(server, token, args, result, pg_pids)
    finally:
        server.stop()
    result.stored_alerts = count_alerts(database_url, sqlite_file)
    return result


def run_ceiling(work: Path, token: str, args: argparse.Namespace) -> Result:
    port = free_port()
    env = {**os.environ, "INCIDENT_BOT_WEBHOOK_TOKEN": token}
    argv = [str(PYTHON), "-m", "uvicorn", "_trivial_app:app", "--app-dir", str(BENCH), "--host", "127.0.0.1",
            "--port", str(port), "--no-access-log", "--log-level", "warning", "--lifespan", "off"]  # fmt: skip
    server = Server(argv, env, work / "ceiling.log", port, cores=SERVER_CORE, start_timeout=30, stop_timeout=15)
    result = Result("uvicorn trivial route (ceiling)", "none")
    server.start()
    try:
        storm(server, token, args, result, list)
    finally:
        server.stop()
    return result


def ms(value: float) -> str:
    return f"{value * 1000:.1f}"


def tables(results: list[Result], args: argparse.Namespace) -> str:
    ceiling = next(r for r in results if r.store == "none")
    lines = [
        f"closed loop: {args.concurrency} connections for {args.duration:g} s; open loop: the rate shown for "
        f"{args.duration:g} s; each webhook carries 2 alerts",
        "",
        "| server | store | stored alerts/s | webhooks/s | ÷ ceiling | p50 ms | p99 ms | open-loop alerts/s | p50 ms "
        "| p99 ms | server CPU | alerts per server CPU-second | PostgreSQL CPU | client CPU | alerts acked / stored |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        c, p = r.closed, r.paced
        per = c["alerts_per_webhook"]
        stored = "—" if r.store == "none" else f"{r.acked_alerts} / {r.stored_alerts}"
        alerts = "— (stores nothing)" if r.store == "none" else f"{c['rate'] * per:.0f}"
        per_cpu = "—" if r.store == "none" or r.server_cpu <= 0 else f"{c['rate'] * per / r.server_cpu:.0f}"
        lines.append(
            f"| {r.name} | {r.store} | {alerts} | {c['rate']:.0f} | {c['rate'] / ceiling.closed['rate']:.2f} "
            f"| {ms(c['p50'])} | {ms(c['p99'])} | {r.paced_rate * per:.0f} | {ms(p['p50'])} | {ms(p['p99'])} "
            f"| {r.server_cpu:.0%} | {per_cpu} | {'—' if r.pg_cpu is None else f'{r.pg_cpu:.0%}'} "
            f"| {c['client_cpu'] / c['elapsed']:.0%} | {stored} |"
        )
    bad = {f"{r.store}: {r.closed['statuses']} / {r.paced['statuses']}" for r in results
           if set(r.closed["statuses"]) | set(r.paced["statuses"]) != {"202"}}  # fmt: skip
    if bad:
        lines += ["", "answers other than 202: " + "; ".join(sorted(bad))]
    lines += ["", "| server | store | RSS idle MiB (Slack + Telegram variables set) "
              "| peak RSS MiB (VmHWM, after the storm) |", "|---|---|---:|---:|"]  # fmt: skip
    for r in results:
        lines.append(f"| {r.name} | {r.store} | {r.idle_rss:.1f} | {r.peak_rss:.1f} |")
    pg = next((r for r in results if r.store == "PostgreSQL"), None)
    if pg is not None:
        per = pg.closed["alerts_per_webhook"]
        rate = pg.closed["rate"] * per
        p99 = pg.paced["p99"]
        at = pg.paced_rate * per
        if at >= args.target:
            latency = f"p99 at {at:.0f} alerts/s {ms(p99)} ms ({'met' if p99 < 0.05 else 'NOT met'})"
        else:
            latency = (
                f"NOT measurable at {args.target:g} alerts/s (not sustained); p99 at {at:.0f} alerts/s {ms(p99)} ms"
            )
        lines += ["", f"target on PostgreSQL: ≥ {args.target:g} stored alerts/s and p99 < 50 ms: {rate:.0f} stored "
                  f"alerts/s ({'met' if rate >= args.target else 'NOT met'}); {latency}"]  # fmt: skip
    lost = [r for r in results if r.stored_alerts is not None and r.stored_alerts < r.acked_alerts]
    lines.append(
        "every acknowledged alert stored: " + ("yes" if not lost else f"NO ({', '.join(r.store for r in lost)})")
    )
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")  # fmt: skip
    pg = subprocess.run([str(postgres.bin_dir() / "postgres"), "--version"], capture_output=True, text=True,
                        check=False).stdout.strip()  # fmt: skip
    return f"{os.cpu_count()} cores ({cpu}), Debian {Path('/etc/debian_version').read_text().strip()}, " \
        f"Linux {platform.release()}, Python {platform.python_version()}, {pg}"  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds of each measured phase (default 8)")
    parser.add_argument("--concurrency", type=int, default=32, help="connections of the closed loop (default 32)")
    parser.add_argument("--target", type=float, default=2000.0, help="alerts/s of the open loop (default 2000)")
    parser.add_argument("--groups", type=int, default=50, help="services the storm's alerts belong to (default 50)")
    parser.add_argument("--stores", default="sqlite,postgresql",
                        help="which stores to run serve on, comma-separated (default sqlite,postgresql)")  # fmt: skip
    args = parser.parse_args()
    stores = {name.strip().lower() for name in args.stores.split(",") if name.strip()}
    if not stores or not stores <= {"sqlite", "postgresql"}:
        parser.error("--stores takes sqlite, postgresql or both")
    if args.duration <= 0 or args.concurrency < 1 or args.target <= 0 or args.groups < 1:
        parser.error("--duration, --concurrency, --target and --groups must be positive")
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2 or not shutil.which("taskset"):
        raise SystemExit("needs two cores and taskset (util-linux): run bench/setup.sh")
    base = Path(tempfile.mkdtemp(prefix="ib-intake-", dir="/var/tmp"))
    base.chmod(0o755)
    work = base / "work"
    work.mkdir()
    token = secrets.token_hex(24)
    results: list[Result] = []
    pg_paths: LabPaths | None = None
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    try:
        results.append(run_ceiling(work, token, args))
        print(f"ceiling done ({results[-1].closed['rate']:.0f} webhooks/s)", file=sys.stderr, flush=True)
        sqlite_file = base / "bench.db"
        if "sqlite" in stores:
            sqlite_url = f"sqlite+aiosqlite:///{sqlite_file}"
            results.append(run_serve("SQLite", sqlite_url, work, token, args, sqlite_file=sqlite_file, pg_pids=list))
            print("SQLite done", file=sys.stderr, flush=True)
        if "postgresql" not in stores:
            return finish(results, args, started, load_at_start)
        pg_paths, pg_port = start_pg(base / "pg")
        pg_pid = postgres.postmaster_pid(pg_paths)
        url = f"postgresql+asyncpg://{postgres.superuser()}@127.0.0.1:{pg_port}/bench"

        def pg_pids() -> list[int]:
            """The postmaster and its children now (a backend is forked per connection, pinned by inheritance)."""
            return [pg_pid, *children(pg_pid)] if pg_pid else []

        results.append(run_serve("PostgreSQL", url, work, token, args, sqlite_file=None, pg_pids=pg_pids))
        print("PostgreSQL done", file=sys.stderr, flush=True)
    finally:
        if pg_paths is not None:
            postgres.stop(pg_paths)
        shutil.rmtree(base, ignore_errors=True)
    finish(results, args, started, load_at_start)


def finish(results: list[Result], args: argparse.Namespace, started: float, load_at_start: float) -> None:
    """Print the tables and write them to bench/out/intake.md."""
    report = "\n".join([
        f"alert intake, {datetime.now(UTC):%Y-%m-%d}; server on core {SERVER_CORE}, load generator "
        f"(and PostgreSQL) on core {CLIENT_CORE}",
        f"machine: {machine()}",
        f"load average (1 min) before the run {load_at_start:.2f} (the machine is shared: other people's work "
        "competes for the same two cores)",
        "",
        tables(results, args),
        f"(whole run {time.monotonic() - started:.0f} s)",
    ])  # fmt: skip
    print(report)
    OUT.mkdir(exist_ok=True)
    (OUT / "intake.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
