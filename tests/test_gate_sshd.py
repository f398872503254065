"""The forced-command gate behind a real OpenSSH sshd, in front of the fault lab (one lab, one sshd per module).

The lab's own sshd lets the bot's key run anything; a second sshd on 127.0.0.1 (forwarding and PTYs
allowed by its config, so that `restrict` is what refuses them) holds the same key as
``restrict,command="<venv>/bin/incident-bot gate --root /tmp" <key>``, the line deploy/ssh/ documents
(``--root /tmp``: the lab lives there, and discovery also reads any other lab's nginx running on this
machine, which the plain door reads too).
`incident-bot diagnose` runs every built-in runbook through each door and the findings must agree;
injected commands, a PTY and port forwarding through the gated door get nothing. A second key of the bot
is forced to ``gate --read-only --root /tmp``: clear_cache, run through it by the runner as an approved
request is, gets 126 and deletes nothing, while reads still pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.adapters.ssh import SshExecutor, build_argv
from bot.config import load_settings
from bot.core.commands import Command
from bot.core.ports import AuditEntry
from bot.lab import Lab, probe
from bot.lab.process import free_port
from bot.services.runner import HostPlan, Runner
from bot.services.targets import resolve
from runbooks.clear_cache import ClearCache
from tests.labfixture import running_lab

SSHD = "/usr/sbin/sshd"
INCIDENT_BOT = Path(sys.executable).parent / "incident-bot"
#: Runbooks whose findings describe the moment (load, CPU pressure, memory), not the host's set-up: they may
#: differ between two runs a second apart on a busy machine.
VOLATILE_RUNBOOKS = {"load", "memory"}


@dataclass
class Door:
    """The gated sshd in front of a running lab, and the configurations that reach the lab both ways."""

    lab: Lab
    root: Path
    port: int
    gated_config: Path
    #: The same door for the bot's second key, whose forced command is ``gate --read-only --root /tmp``.
    read_only_config: Path

    def ssh(self, *args: str, timeout: float = 30, key: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.ssh_argv(key), *args], capture_output=True, text=True, check=False, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def ssh_argv(self, key: Path | None = None) -> list[str]:
        key = key or self.lab.paths.user_key
        return ["ssh", "-F", "/dev/null", "-i", str(key), "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.root / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", "-l", self.lab.state.user]  # fmt: skip


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    if not (Path(SSHD).exists() and shutil.which("ssh") and shutil.which("curl")):
        pytest.fail("OpenSSH or curl is missing: apt-get install openssh-server openssh-client curl")
    assert INCIDENT_BOT.exists(), f"{INCIDENT_BOT} is missing: pip install -e . in the venv (./dev setup)"
    with running_lab("ibl-gate-") as lab:
        root = tmp_path_factory.mktemp("gated-door")
        port = free_port()
        host_key = root / "host_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(host_key)], check=True)
        kind, blob = Path(f"{host_key}.pub").read_text().split()[:2]
        (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")
        key = Path(f"{lab.paths.user_key}.pub").read_text().strip()
        forced = f"{INCIDENT_BOT} gate --root /tmp"
        read_only_key = root / "read_only_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(read_only_key)], check=True)
        second = Path(f"{read_only_key}.pub").read_text().strip()
        (root / "authorized_keys").write_text(
            f'restrict,command="{forced}" {key}\n'
            f'restrict,command="{INCIDENT_BOT} gate --read-only --root /tmp" {second}\n'
        )
        (root / "sshd_config").write_text(
            f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nPidFile {root / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nAuthenticationMethods publickey\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
            "StrictModes no\nUsePAM no\nAllowTcpForwarding yes\nPermitTTY yes\nGatewayPorts no\n"
            f"SetEnv HOME={lab.paths.root / 'home'}\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        test = [SSHD, "-t", "-f", str(root / "sshd_config")]
        check = subprocess.run(test, capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        document = yaml.safe_load(lab.paths.config.read_text())
        document["hosts"]["lab"].update(port=port, known_hosts=str(root / "known_hosts"))
        gated_config = root / "incident-bot.yaml"
        gated_config.write_text(yaml.safe_dump(document, sort_keys=False))
        document["hosts"]["lab"]["identity"] = str(read_only_key)
        read_only_config = root / "incident-bot-read-only.yaml"
        read_only_config.write_text(yaml.safe_dump(document, sort_keys=False))
        with (root / "sshd.log").open("wb") as log:
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 10
            while not (root / "sshd.pid").exists():
                assert proc.poll() is None and time.monotonic() < deadline, (root / "sshd.log").read_text()
                time.sleep(0.05)
            yield Door(lab, root, port, gated_config, read_only_config)
        finally:
            proc.terminate()
            proc.wait(10)


def diagnose(config: Path, state: Path, *args: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """`incident-bot diagnose lab` as a user runs it; its JSON and the audit log entries it wrote."""
    env = {**os.environ, "XDG_STATE_HOME": str(state)}
    done = subprocess.run(
        [sys.executable, "-m", "bot", "diagnose", "lab", "--config", str(config), "--json", *args],
        capture_output=True, text=True, timeout=180, check=False, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    audit = state / "incident-bot" / "audit.jsonl"
    entries = [json.loads(line) for line in audit.read_text().splitlines()]
    return json.loads(done.stdout), entries


def kinds(body: dict[str, Any]) -> set[tuple[str, str]]:
    return {(f["runbook"], f["kind"]) for f in body["findings"] if f["runbook"] not in VOLATILE_RUNBOOKS}


def test_every_runbook_finds_the_same_through_the_gate(door: Door, tmp_path: Path) -> None:
    """All 17 read-only runbooks (no --status: every one applies; no --runbook: the mutating ones are left
    out) over the plain and the gated door: the same findings, every command of the gated run passed the
    gate (no exit 126) and ran."""
    door.lab.rotate_logs()
    probe(door.lab.url)
    plain, _ = diagnose(door.lab.paths.config, tmp_path / "plain")
    gated, audit = diagnose(door.gated_config, tmp_path / "gated")
    assert [e["argv"][9:] for e in audit if e["exit_status"] == 126] == []
    assert {e["argv"][9] for e in audit} >= {"df", "ss", "tail", "sh", "ps", "curl", "pg_isready", "psql"}
    assert kinds(gated) == kinds(plain)
    ran = {f["runbook"] for f in gated["findings"]}
    assert not ran & {"restart_unit", "clear_cache"}, ran
    assert len(ran) >= 15, ran  # mysql and redis have no facts on the lab: they say so without a command
    assert not [f for f in gated["findings"] if f["kind"] == "runbook.command_failed"]


def test_a_broken_lab_is_diagnosed_through_the_gate(door: Door, tmp_path: Path) -> None:
    """upstream_down through the gated door: the same top cause as without it, quoting nginx's 111 line."""
    lab = door.lab
    lab.rotate_logs()
    lab.break_("upstream_down")
    try:
        assert probe(lab.url)[0] == 502
        gated, audit = diagnose(door.gated_config, tmp_path / "gated", "--status", "502")
    finally:
        lab.repair()
    assert [e["argv"][9:] for e in audit if e["exit_status"] == 126] == []
    top = gated["causes"][0]
    assert top["id"] == "upstream_down"
    assert any("connect() to unix:" in line and "(111: Connection refused)" in line for line in top["evidence"])


def _line(*argv: str) -> str:
    return shlex.join(build_argv(Command(argv=argv), 15, sudo=False))


def test_injected_commands_get_exit_126_and_run_nothing(door: Door, tmp_path: Path) -> None:
    """Each attempt is refused by the gate (126, its reason on stderr) and the marker file never appears."""
    marker = tmp_path / "pwned"
    touch = f"touch {marker}"
    df = _line("df", "-hP")
    attempts = {
        "semicolon": f"{df}; {touch}",
        "and": f"{df} && {touch}",
        "command substitution": f"{df} $({touch})",
        "backticks": f"{df} `{touch}`",
        "pipe to sh": f"echo {shlex.quote(touch)} | sh",
        "newline": f"{df}\n{touch}",
        "a path outside the allowed roots": _line("tail", "-n", "10", "--", "/etc/shadow"),
        "an extra argument": _line("df", "-hP", "--output=source,target"),
        "a plain shell": _line("sh", "-c", touch),
        "no wrapper": touch,
    }
    for name, line in attempts.items():
        done = door.ssh("127.0.0.1", line)
        assert done.returncode == 126, (name, done.returncode, done.stderr)
        assert "incident-bot gate: refused" in done.stderr, (name, done.stderr)
        assert not marker.exists(), name
    ok = door.ssh("127.0.0.1", _line("cat", "/proc/pressure/cpu"))
    assert ok.returncode == 0 and ok.stdout.startswith("some avg10="), ok.stderr  # the door itself works


def test_a_pty_request_gets_no_terminal_and_no_shell(door: Door) -> None:
    """`ssh -tt` (a terminal demanded): restrict refuses the PTY and the client gives up with nothing run,
    for a login and for a command alike; without -tt the same login meets the gate and is refused."""
    for args in (("127.0.0.1", "whoami"), ("127.0.0.1",)):
        done = door.ssh("-tt", *args)
        assert "PTY allocation request failed" in done.stderr, done.stderr
        assert done.returncode != 0 and "root" not in done.stdout, done
    login = door.ssh("127.0.0.1")
    assert login.returncode == 126 and "no command asked" in login.stderr


def _forward(door: Door, *option: str, seconds: float = 1.5) -> subprocess.Popen[str]:
    argv = [*door.ssh_argv(), "-N", "-o", "ExitOnForwardFailure=yes", *option, "127.0.0.1"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    time.sleep(seconds)  # the session is up (or already refused) by then
    return proc


def _stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    _, err = proc.communicate(timeout=10)
    return err


def test_local_remote_and_dynamic_port_forwarding_get_nothing(door: Door) -> None:
    """-L and -D: the tunnel opens locally but sshd refuses every channel (the lab's site is not reached);
    -R: sshd refuses the listener and ssh gives up."""
    http = door.lab.state.ports["http"]
    local, socks = free_port(), free_port()
    forward_l = _forward(door, "-L", f"{local}:127.0.0.1:{http}")
    forward_d = _forward(door, "-D", str(socks))
    try:
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5).read()
        curl = subprocess.run(
            ["curl", "-sS", "-m", "5", "--socks5-hostname", f"127.0.0.1:{socks}", f"http://127.0.0.1:{http}/"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert curl.returncode != 0 and curl.stdout == "", curl
    finally:
        errors_l, errors_d = _stop(forward_l), _stop(forward_d)
    assert "administratively prohibited" in errors_l
    assert "administratively prohibited" in errors_d
    remote = _forward(door, "-R", f"{free_port()}:127.0.0.1:{http}", seconds=0)
    try:
        remote.wait(15)
    finally:
        errors_r = _stop(remote)
    assert remote.returncode != 0
    assert "remote port forwarding failed" in errors_r.lower()
    with socket.socket() as sock:  # and the lab's site itself is still up: the refusals were the door's
        sock.settimeout(5)
        sock.connect(("127.0.0.1", http))


class _Audit:
    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


def _clear_cache(config: Path, cache: Path) -> tuple[list[Any], list[AuditEntry]]:
    """clear_cache on the lab host through ``config``'s door, driven by the runner as an approved run is."""
    [target] = resolve("lab", load_settings(str(config)))
    target = target.model_copy(update={"facts": {**target.facts, "cache_dirs": f"thumbs={cache}"}})
    audit = _Audit()
    plan = HostPlan(target=target, runbooks=[ClearCache], params={"clear_cache": {"cache": "thumbs"}})
    report = asyncio.run(Runner(SshExecutor(audit, "test:gate"), deadline=60).run([plan]))
    return report.findings, audit.entries


def test_a_read_only_gate_refuses_what_changes_the_host_and_passes_reads(door: Door) -> None:
    """Through the `--read-only` door: clear_cache's first command gets 126 (its finding quotes the gate's
    line) and the cache keeps its files; restart_unit's restart gets 126; a read still passes. Through the
    plain gated door the same clear_cache empties the cache."""
    base = Path(tempfile.mkdtemp(prefix="incident-bot-gate-test-", dir="/var/cache"))
    try:
        cache = base / "thumbs"
        (cache / "sub").mkdir(parents=True)
        (cache / "a.bin").write_bytes(os.urandom(65536))
        (cache / "sub" / "b.bin").write_bytes(b"b")
        found, audit = _clear_cache(door.read_only_config, cache)
        assert [(e.argv[9:], e.exit_status) for e in audit] == [(("stat", "-c", "%F", "--", str(cache)), 126)]
        [finding] = found
        assert finding.kind == "action.cache_clear_failed", finding.summary
        assert finding.evidence[0].startswith("incident-bot gate: refused a command from 127.0.0.1: read-only gate")
        assert sorted(p.name for p in cache.rglob("*")) == ["a.bin", "b.bin", "sub"]
        key = door.root / "read_only_key"
        restart = shlex.join(build_argv(Command.of("systemctl", "restart", "--", "nginx.service"), 30, sudo=True))
        done = door.ssh("127.0.0.1", restart, key=key)
        assert done.returncode == 126 and "read-only gate" in done.stderr, done
        read = door.ssh("127.0.0.1", _line("cat", "/proc/pressure/cpu"), key=key)
        assert read.returncode == 0 and read.stdout.startswith("some avg10="), read.stderr
        found, audit = _clear_cache(door.gated_config, cache)
        assert [f.kind for f in found] == ["action.cache_cleared"], [f.summary for f in found]
        assert cache.is_dir() and list(cache.iterdir()) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)
