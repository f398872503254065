"""SSH fan-out of the checklist: ``incident-bot diagnose`` against ansible-core, parallel-ssh and xargs -P.

Brings the fault lab up (real nginx, gunicorn and PostgreSQL on 127.0.0.1, broken with
``upstream_down``) and starts one real OpenSSH ``sshd`` per simulated host on its own 127.0.0.1 port,
each with its own host key (bench/_sshd_fleet.py). Every host has the lab's facts (its nginx error
log, its PostgreSQL), so every host answers the checklist with real output. For N = 1, 8, 32, 64
hosts it then runs, in one process, each tool on the same hosts, interleaved, keeping the best of
``--rounds`` runs (N ≤ 8) or of ``--rounds-large`` runs (N > 8):

- ``incident-bot diagnose fleet --json -r proxy_log -r sockets -r disk -r postgres -r service_status
  -r load -r memory``: one service with the N hosts, one SSH connection per host, the commands of a
  host concurrent over it (DESIGN §4.5 config, host keys verified against the fleet's known_hosts);
- ``ansible all -m shell -a SCRIPT -f N`` (ansible-core, pipelining on, the interpreter given, one
  fork per host: the settings a person tunes for ad-hoc speed);
- ``parallel-ssh -p N -h HOSTS SCRIPT`` (Debian's pssh, which drives the OpenSSH client);
- ``xargs -P N`` over ``ssh HOST SCRIPT`` (the OpenSSH client, one per host).

SCRIPT is the very commands incident-bot ran on a host (recorded from a run on the first host, with
their ``env LC_ALL=C … timeout`` wrapper), one after another, ending with an ``echo`` that marks the
host done; that is how a person hands a checklist to those tools. Every OpenSSH client verifies host
keys (``StrictHostKeyChecking=yes`` against the fleet's known_hosts) and reads no user ssh config.

Measured per run: wall time; client CPU (user + system of the tool's whole process tree, from the
reaped children's rusage); host CPU (what the sshd sessions and the commands they ran used); failed
hosts (a host is done only when its output carries the marker, or for incident-bot when it has no
``ssh.*``/``runner.*``/crash finding). Prints one table per N and the targets of the benchmarks issue
(≥ 3× faster than ansible-core, at least as fast as parallel-ssh, zero failed hosts). Exits 0.

    bash bench/setup.sh            # once: pssh (Debian), ansible-core (PyPI, into bench/out/peers-venv)
    .venv/bin/python bench/fanout.py [--hosts 1,8,32,64] [--rounds 3] [--rounds-large 1]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from _sshd_fleet import SshdFleet  # bench/ is on sys.path: Python puts the script's directory first

from bot.adapters.ssh import SshExecutor, build_argv
from bot.app import DiagnoseRequest, plans_for
from bot.config import load_settings
from bot.lab import Lab, probe
from bot.lab.errors import LabError
from bot.runbook.registry import load as load_runbooks
from bot.services.runner import Runner

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
OUT = BENCH / "out"
PEERS_VENV = OUT / "peers-venv"
BOT = ROOT / ".venv" / "bin" / "incident-bot"
#: The checklist of the benchmarks issue: proxy log tail, ss -s, df -h, pg_isready, service status, load, memory.
CHECKLIST = ("proxy_log", "sockets", "disk", "postgres", "service_status", "load", "memory")
#: What a host prints last; the script holds ``$((6*7))``, so only a shell that ran to the end prints 42.
MARK = "CHECKLIST-DONE-42"
MARK_CMD = "echo CHECKLIST-DONE-$((6*7))"
TIMEOUT = 180.0
TOOLS = ("incident-bot", "ansible-core", "parallel-ssh", "xargs -P ssh")


@dataclass(frozen=True)
class Run:
    tool: str
    hosts: int
    wall: float
    client_cpu: float
    host_cpu: float
    failed: int
    note: str = ""


@dataclass(frozen=True)
class Setup:
    """Files every tool needs for one N: the bot config, an ansible inventory, a pssh host list."""

    n: int
    config: Path
    inventory: Path
    pssh_hosts: Path
    ports: list[int]
    names: list[str]


def ensure_peers() -> None:
    have = (PEERS_VENV / "bin" / "ansible").exists() and shutil.which("parallel-ssh") and shutil.which("xargs")
    if not have:
        print("installing the peers (bench/setup.sh) …", file=sys.stderr)
        if subprocess.run(["bash", str(BENCH / "setup.sh")], check=False).returncode != 0:
            raise SystemExit("bench/setup.sh failed: the peers (pssh, ansible-core) are not installed")


def ssh_options(fleet: SshdFleet) -> list[str]:
    """The OpenSSH client options every OpenSSH-based peer gets: verified host keys, our key only."""
    return [
        "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={fleet.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "IdentitiesOnly=yes", "-i", str(fleet.identity), "-o", "ConnectTimeout=10",
    ]  # fmt: skip


def write_setup(work: Path, fleet: SshdFleet, n: int, lab_host: dict[str, object]) -> Setup:
    hosts = fleet.hosts[:n]
    names = [h.name for h in hosts]
    config = {
        "ssh": {"user": fleet.user, "identity": str(fleet.identity), "known_hosts": str(fleet.known_hosts),
                "connect_timeout": 10, "command_timeout": 15, "deadline": TIMEOUT - 30,
                "max_parallel_hosts": 64},
        "hosts": {h.name: {"address": "127.0.0.1", "port": h.port, "roles": lab_host["roles"],
                           "facts": lab_host["facts"]} for h in hosts},
        "services": {"fleet": {"hosts": names}},
    }  # fmt: skip
    folder = work / f"n{n}"
    folder.mkdir()
    (folder / "incident-bot.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    common = shlex.join(ssh_options(fleet))
    inventory = [f"{h.name} ansible_host=127.0.0.1 ansible_port={h.port}" for h in hosts]
    inventory += [
        "", "[all:vars]", f"ansible_user={fleet.user}", f"ansible_ssh_private_key_file={fleet.identity}",
        "ansible_python_interpreter=/usr/bin/python3",  # given, so no interpreter discovery round trip
        f"ansible_ssh_common_args={common!r}",
    ]  # fmt: skip
    (folder / "inventory.ini").write_text("\n".join(inventory) + "\n")
    (folder / "pssh_hosts").write_text("".join(f"{fleet.user}@127.0.0.1:{h.port}\n" for h in hosts))
    return Setup(n, folder / "incident-bot.yaml", folder / "inventory.ini", folder / "pssh_hosts",
                 [h.port for h in hosts], names)  # fmt: skip


def recorded_script(setup: Setup) -> tuple[str, int]:
    """The commands incident-bot runs on one host (recorded from a run on the first), as one shell script."""
    settings = load_settings(str(setup.config))
    request = DiagnoseRequest(target=setup.names[0], runbooks=CHECKLIST, adhoc=False)
    [plan] = plans_for(request, settings, load_runbooks())
    report = asyncio.run(Runner(SshExecutor(None, "bench"), deadline=60).run([plan]))
    if report.hosts_failed:
        raise SystemExit(f"the recording run failed: {report.hosts_failed}")
    lines = [shlex.join(build_argv(r.command, r.command.timeout or 15, sudo=False)) for r in report.results]
    return "; ".join([*lines, MARK_CMD]), len(lines)


def timed(argv: Sequence[str], env: dict[str, str], fleet: SshdFleet) -> tuple[float, float, float, int, str]:
    """Run ``argv`` to the end: wall, client CPU (its reaped process tree), host CPU, exit status, stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    host_before = fleet.server_cpu()
    start = time.perf_counter()
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=TIMEOUT,
                          stdin=subprocess.DEVNULL, check=False)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    time.sleep(0.3)  # sshd reaps its session processes a moment after the client has its answer
    host = fleet.server_cpu() - host_before
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, host, done.returncode, done.stdout + ("\n" + done.stderr if done.returncode else "")


def run_bot(setup: Setup, fleet: SshdFleet, env: dict[str, str]) -> Run:
    argv = [str(BOT), "diagnose", "fleet", "--config", str(setup.config), "--json"]
    for name in CHECKLIST:
        argv += ["-r", name]
    wall, cpu, host, code, out = timed(argv, env, fleet)
    failed: set[str] = set()
    try:
        body = json.loads(out[: out.rindex("}") + 1]) if code == 0 else {}
    except ValueError:
        body = {}
    findings = body.get("findings", [])
    seen = {f.get("host") for f in findings}
    for finding in findings:
        kind = str(finding.get("kind", ""))
        if kind.startswith(("ssh.", "runner.")) or kind == "runbook.crashed":
            failed.add(str(finding.get("host")))
    failed |= {name for name in setup.names if name not in seen}
    note = "" if code == 0 else f"exit {code}: {out.strip().splitlines()[-1][:80] if out.strip() else ''}"
    return Run("incident-bot", setup.n, wall, cpu, host, len(failed), note)


def run_ansible(setup: Setup, script: str, fleet: SshdFleet, env: dict[str, str], work: Path) -> Run:
    home = work / "ansible-home"
    home.mkdir(exist_ok=True)
    peer_env = {
        **env,
        "ANSIBLE_HOME": str(home),
        "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
        "ANSIBLE_CONFIG": str(work / "no-ansible.cfg"),
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_PIPELINING": "True",
        # No ControlPersist: a master left by one round would spare the next round its handshakes.
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=no",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
    }
    argv = [str(PEERS_VENV / "bin" / "ansible"), "all", "-i", str(setup.inventory), "-m", "shell",
            "-a", json.dumps({"cmd": script}), "-f", str(setup.n), "-o"]  # fmt: skip
    wall, cpu, host, _, out = timed(argv, peer_env, fleet)
    ok = {m.group(1) for m in re.finditer(r"^(host-\d+) \| CHANGED \| rc=0 \|.*$", out, re.M) if MARK in m.group(0)}
    failed = len(set(setup.names) - ok)
    note = "" if not failed else _first_line(out)
    return Run("ansible-core", setup.n, wall, cpu, host, failed, note)


def run_pssh(setup: Setup, script: str, fleet: SshdFleet, env: dict[str, str], work: Path) -> Run:
    outdir = work / f"pssh-{setup.n}-{time.monotonic_ns()}"
    argv = ["parallel-ssh", "-h", str(setup.pssh_hosts), "-p", str(setup.n), "-t", str(int(TIMEOUT)),
            "-o", str(outdir), "-x", shlex.join(ssh_options(fleet)), script]  # fmt: skip
    wall, cpu, host, _, out = timed(argv, env, fleet)
    ok = sum(1 for f in outdir.glob("*") if MARK in f.read_text(errors="replace")) if outdir.exists() else 0
    failed = setup.n - ok
    return Run("parallel-ssh", setup.n, wall, cpu, host, failed, "" if not failed else _first_line(out))


def run_xargs(setup: Setup, script: str, fleet: SshdFleet, env: dict[str, str], work: Path) -> Run:
    outdir = work / f"xargs-{setup.n}-{time.monotonic_ns()}"
    outdir.mkdir()
    # `|| exit 1`: GNU xargs stops waiting for the other hosts when a command exits 255 (ssh's failure code).
    ssh = f"ssh {shlex.join(ssh_options(fleet))}"
    one = f'{ssh} -p "$1" {fleet.user}@127.0.0.1 "$BENCH_SCRIPT" >"$BENCH_OUT/$1" 2>&1 || exit 1'
    peer_env = {**env, "BENCH_SCRIPT": script, "BENCH_OUT": str(outdir)}
    ports = "".join(f"{p}\n" for p in setup.ports)
    argv = ["sh", "-c", f'printf %s "$BENCH_PORTS" | xargs -P {setup.n} -n 1 sh -c {shlex.quote(one)} sh']
    wall, cpu, host, code, _ = timed(argv, {**peer_env, "BENCH_PORTS": ports}, fleet)
    ok = sum(1 for f in outdir.glob("*") if MARK in f.read_text(errors="replace"))
    failed = setup.n - ok
    return Run("xargs -P ssh", setup.n, wall, cpu, host, failed, "" if not failed else f"exit {code}")


def _first_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.strip() and MARK not in line]
    return lines[0][:100] if lines else ""


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    debian = Path("/etc/debian_version").read_text().strip() if Path("/etc/debian_version").exists() else "?"
    ssh = subprocess.run(["ssh", "-V"], capture_output=True, text=True, check=False).stderr.strip()
    return f"{os.cpu_count()} cores ({cpu}), Debian {debian}, Linux {platform.release()}, {ssh}"


def versions() -> str:
    ansible = subprocess.run([str(PEERS_VENV / "bin" / "ansible"), "--version"], capture_output=True, text=True,
                             check=False).stdout.splitlines()[0]  # fmt: skip
    pssh = subprocess.run(["parallel-ssh", "--version"], capture_output=True, text=True, check=False)
    return f"{ansible.strip()}; parallel-ssh (pssh) {(pssh.stdout or pssh.stderr).strip()}"


def table(runs: list[Run], hosts: Sequence[int]) -> str:
    lines = [
        "| hosts | tool | wall s | client CPU s | host CPU s | failed hosts | wall ÷ incident-bot's "
        "| client CPU ÷ incident-bot's |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for n in hosts:
        ours = next(r for r in runs if r.hosts == n and r.tool == "incident-bot")
        for run in (r for r in runs if r.hosts == n):
            ratio = "1.00" if run is ours else f"{run.wall / ours.wall:.2f}"
            cpu_ratio = "1.00" if run is ours else f"{run.client_cpu / ours.client_cpu:.2f}"
            note = f" ({run.note})" if run.note else ""
            lines.append(f"| {n} | {run.tool} | {run.wall:.2f} | {run.client_cpu:.2f} | {run.host_cpu:.2f} "
                         f"| {run.failed}{note} | {ratio} | {cpu_ratio} |")  # fmt: skip
    return "\n".join(lines)


def verdicts(runs: list[Run], hosts: Sequence[int]) -> list[str]:
    out = []
    for n in hosts:
        ours = next(r for r in runs if r.hosts == n and r.tool == "incident-bot")
        by = {r.tool: r for r in runs if r.hosts == n}
        checks = []
        if "ansible-core" in by:
            ratio = by["ansible-core"].wall / ours.wall
            checks.append(f"vs ansible-core {ratio:.2f}× (target ≥ 3: {'met' if ratio >= 3 else 'NOT met'})")
        if "parallel-ssh" in by:
            ratio = by["parallel-ssh"].wall / ours.wall
            checks.append(f"vs parallel-ssh {ratio:.2f}× (target ≥ 1: {'met' if ratio >= 1 else 'NOT met'})")
        failed = sum(r.failed for r in by.values())
        checks.append(f"failed hosts {ours.failed} ours, {failed - ours.failed} peers "
                      f"(target 0: {'met' if failed == 0 else 'NOT met'})")  # fmt: skip
        out.append(f"N={n}: " + "; ".join(checks))
    return out


def best(runs: list[Run]) -> Run:
    """The fastest run that failed no host; else the fastest."""
    clean = [r for r in runs if r.failed == 0]
    return min(clean or runs, key=lambda r: r.wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hosts", default="1,8,32,64", help="comma-separated host counts (default 1,8,32,64)")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool at N ≤ 8; the best is kept")
    parser.add_argument(
        "--rounds-large",
        type=int,
        default=1,
        help="runs of each tool at N > 8 (default 1: each takes seconds; the whole stays under 5 min)",
    )
    parser.add_argument("--scenario", default="upstream_down", help="how the lab is broken (default upstream_down)")
    parser.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of: {', '.join(TOOLS)}")
    args = parser.parse_args()
    try:
        hosts = sorted({int(h) for h in args.hosts.split(",") if h.strip()})
    except ValueError:
        parser.error("--hosts takes comma-separated numbers")
    if not hosts or hosts[0] < 1 or hosts[-1] > 64:
        parser.error("--hosts must be between 1 and 64 (ssh.max_parallel_hosts)")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := [t for t in tools if t not in TOOLS]:
        parser.error(f"unknown tool {unknown[0]!r}")
    if "incident-bot" not in tools:
        tools.insert(0, "incident-bot")
    ensure_peers()
    base = Path(tempfile.mkdtemp(prefix="ib-fanout-", dir="/tmp"))
    base.chmod(0o755)
    env = {**os.environ, "XDG_STATE_HOME": str(base / "state")}
    lab = Lab(base / "lab")
    runs: list[Run] = []
    started = time.monotonic()
    load_at_start = os.getloadavg()[0]
    try:
        lab.up()
        lab.break_(args.scenario)
        probe(lab.url)
        lab_config = yaml.safe_load(lab.paths.config.read_text())
        lab_host = lab_config["hosts"]["lab"]
        with SshdFleet(base / "fleet", hosts[-1]) as fleet:
            work = base / "work"
            work.mkdir()
            (work / "no-ansible.cfg").write_text("[defaults]\n")
            setups = {n: write_setup(work, fleet, n, lab_host) for n in hosts}
            script, commands = recorded_script(setups[hosts[0]])
            runners: dict[str, Callable[[Setup], Run]] = {
                "incident-bot": lambda s: run_bot(s, fleet, env),
                "ansible-core": lambda s: run_ansible(s, script, fleet, env, work),
                "parallel-ssh": lambda s: run_pssh(s, script, fleet, env, work),
                "xargs -P ssh": lambda s: run_xargs(s, script, fleet, env, work),
            }
            for tool in tools:  # warm-up: page cache, Python bytecode, first-run files
                runners[tool](setups[hosts[0]])
            for n in hosts:
                tried: dict[str, list[Run]] = {tool: [] for tool in tools}
                for _ in range(args.rounds if n <= 8 else args.rounds_large):
                    for tool in tools:
                        tried[tool].append(runners[tool](setups[n]))
                for tool in tools:
                    kept = best(tried[tool])
                    runs.append(kept)
                    print(
                        f"N={n:<3} {tool:<14} wall {kept.wall:6.2f} s  client CPU {kept.client_cpu:6.2f} s  "
                        f"host CPU {kept.host_cpu:6.2f} s  failed {kept.failed}",
                        file=sys.stderr,
                        flush=True,
                    )
    finally:
        with contextlib.suppress(LabError):  # a lab that never came up has nothing to repair
            lab.repair()
        lab.down()
        shutil.rmtree(base, ignore_errors=True)
    elapsed = time.monotonic() - started
    header = [
        f"fan-out of the checklist ({', '.join(CHECKLIST)}: {commands} commands per host), "
        f"best of {args.rounds} at N ≤ 8 and of {args.rounds_large} above, {datetime.now(UTC):%Y-%m-%d}",
        f"machine: {machine()}",
        f"load average (1 min) before the run {load_at_start:.2f} (the machine is shared: other people's work "
        "competes for the same two cores)",
        f"peers: {versions()}",
        "",
    ]
    report = "\n".join([*header, table(runs, hosts), "", *verdicts(runs, hosts), f"(whole run {elapsed:.0f} s)"])
    print(report)
    OUT.mkdir(exist_ok=True)
    (OUT / "fanout.md").write_text(report + "\n")


if __name__ == "__main__":
    main()
