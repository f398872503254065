"""Wall time of the full checklist on one host, against its slowest command and a plain ssh loop.

Brings the fault lab up (real sshd, nginx, gunicorn, PostgreSQL on 127.0.0.1), breaks it
(`upstream_down` by default) and measures, each three times, keeping the best:

- one SSH handshake (connect, authenticate, run `true`) with our executor;
- every built-in runbook alone, and the slowest single command seen anywhere;
- the full checklist (`incident-bot diagnose`'s runner: every runbook, one connection, concurrent);
- the same commands run one after another by the OpenSSH client (`ssh host cmd` per command), which is
  what a person or a shell script does by hand.

Target (runbooks issue): full checklist ≤ 1.5 × slowest command + one handshake. Prints a table, exits 0.

    .venv/bin/python bench/checklist_latency.py [--scenario upstream_down]
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from bot.adapters.ssh import SshExecutor, build_argv
from bot.app import DiagnoseRequest, plans_for
from bot.config import load_settings
from bot.core.commands import Command, CommandResult
from bot.lab import Lab, probe
from bot.runbook.registry import load as load_runbooks
from bot.services.runner import HostPlan, Runner

#: The checklist of the benchmarks issue: proxy log tail, ss -s, df -h, pg_isready, service status, load, memory.
CORE = ("proxy_log", "sockets", "disk", "postgres", "service_status", "load", "memory")


async def handshake(plan: HostPlan) -> float:
    executor = SshExecutor(None, "bench")
    start = time.perf_counter()
    async with executor.session(plan.target) as session:
        await session.run(Command.of("true"))
    return time.perf_counter() - start


async def run(plan: HostPlan) -> tuple[float, list[CommandResult]]:
    runner = Runner(SshExecutor(None, "bench"), deadline=120)
    start = time.perf_counter()
    report = await runner.run([plan])
    return time.perf_counter() - start, report.results


def ssh_loop(plan: HostPlan, commands: list[Command]) -> float:
    """Each command through its own OpenSSH client connection, one after another."""
    target = plan.target
    base = [
        "ssh", "-o", "BatchMode=yes", "-o", f"UserKnownHostsFile={target.known_hosts[0]}",
        "-o", "StrictHostKeyChecking=yes", "-i", target.identity[0], "-p", str(target.port),
        f"{target.user}@{target.address}",
    ]  # fmt: skip
    start = time.perf_counter()
    for command in commands:
        line = shlex.join(build_argv(command, command.timeout or 15, sudo=False))
        subprocess.run([*base, line], capture_output=True, check=False, timeout=120)
    return time.perf_counter() - start


def best(values: list[float]) -> float:
    return min(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="upstream_down")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--runbooks",
        default=",".join(CORE),
        help="comma-separated runbooks (default: the core checklist); 'all' for every built-in runbook",
    )
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="ibl-bench-", dir="/tmp"))
    base.chmod(0o755)
    lab = Lab(base / "lab")
    try:
        lab.up()
        lab.break_(args.scenario)
        probe(lab.url)
        settings = load_settings(str(lab.paths.root / "incident-bot.yaml"))
        catalog = load_runbooks()
        names = () if args.runbooks == "all" else tuple(n.strip() for n in args.runbooks.split(",") if n.strip())
        [plan] = plans_for(DiagnoseRequest(target="lab", status=None, runbooks=names), settings, catalog)
        shakes = [asyncio.run(handshake(plan)) for _ in range(args.rounds)]
        fulls: list[float] = []
        results: list[CommandResult] = []
        for _ in range(args.rounds):
            wall, ran = asyncio.run(run(plan))
            fulls.append(wall)
            results = ran
        commands = [r.command for r in results]
        loops = [ssh_loop(plan, commands) for _ in range(args.rounds)]
        singles: dict[str, float] = {}
        alone_results: list[CommandResult] = []
        for runbook in plan.runbooks:
            alone = HostPlan(plan.target, [runbook])
            walls = []
            for _ in range(args.rounds):
                wall, ran = asyncio.run(run(alone))
                walls.append(wall)
                alone_results.extend(ran)
            singles[runbook.name] = best(walls)
        # The slowest command measured when it runs by itself (its runbook alone), best of the rounds.
        by_command: dict[tuple[str, ...], float] = {}
        for result in alone_results:
            key = result.command.argv
            by_command[key] = min(by_command.get(key, result.duration), result.duration)
        slowest_argv, slowest_s = max(by_command.items(), key=lambda item: item[1])
    finally:
        lab.repair()
        lab.down()
        shutil.rmtree(base, ignore_errors=True)
    handshake_s, full_s, loop_s = best(shakes), best(fulls), best(loops)
    bound = 1.5 * slowest_s + handshake_s
    print(f"host: fault lab on 127.0.0.1 (scenario {args.scenario}); {len(plan.runbooks)} runbooks, "
          f"{len(commands)} commands; best of {args.rounds}")
    print(f"{'measure':<58} {'seconds':>8}")
    print(f"{'one SSH handshake (connect + auth + true)':<58} {handshake_s:>8.2f}")
    print(f"{'slowest single command: ' + ' '.join(slowest_argv)[:32]:<58} {slowest_s:>8.2f}")
    print(f"{'full checklist, incident-bot (one connection, concurrent)':<58} {full_s:>8.2f}")
    print(f"{'target: 1.5 × slowest command + one handshake':<58} {bound:>8.2f}")
    print(f"{'same commands, one ssh per command, one after another':<58} {loop_s:>8.2f}")
    print(f"full checklist / target = {full_s / bound:.2f} ({'met' if full_s <= bound else 'NOT met'}); "
          f"ssh loop / incident-bot = {loop_s / full_s:.1f}×")
    print("each runbook alone (s): " + ", ".join(f"{k} {v:.2f}" for k, v in sorted(singles.items())))


if __name__ == "__main__":
    main()
