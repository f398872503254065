"""A real OpenSSH ``sshd`` on 127.0.0.1 for the SSH adapter tests, one per test.

Keys are generated once per module with ``ssh-keygen``. Every session the sshd starts carries
``INCIDENT_BOT_SSHD_TEST=<marker>`` in its environment (``SetEnv``), so the teardown can find any
process a test left running on the "host" and fail the test.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.core.commands import Target
from bot.core.ports import AuditEntry

SSHD = "/usr/sbin/sshd"
MARKER_VAR = "INCIDENT_BOT_SSHD_TEST"


def keygen(path: Path, comment: str = "incident-bot-test") -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path


def public_line(key: Path) -> str:
    kind, blob = Path(f"{key}.pub").read_text().split()[:2]
    return f"{kind} {blob}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def marked_processes(marker: str) -> list[tuple[int, str]]:
    """(pid, cmdline) of every process whose environment carries ``marker``."""
    needle = f"{MARKER_VAR}={marker}".encode()
    found = []
    for pid in _pids():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if needle in env.split(b"\0"):
            found.append((pid, cmd.replace(b"\0", b" ").decode(errors="replace").strip()))
    return found


def children(pid: int) -> list[int]:
    kids = []
    for p in _pids():
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(p)
    return kids


def wait_for(check: Any, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


@dataclass
class Keys:
    dir: Path
    host_key: Path
    other_host_key: Path
    client_key: Path
    stranger_key: Path


@dataclass
class Sshd:
    port: int
    user: str
    dir: Path
    keys: Keys
    known_hosts: Path
    log: Path
    marker: str
    proc: subprocess.Popen[bytes]

    def target(self, **overrides: Any) -> Target:
        fields: dict[str, Any] = {
            "name": "test-host",
            "address": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "identity": (str(self.keys.client_key),),
            "known_hosts": (str(self.known_hosts),),
            "connect_timeout": 5.0,
        }
        fields.update(overrides)
        return Target(**fields)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def logins(self) -> int:
        """How many connections authenticated (sshd logs one line per connection)."""
        return self.log_text().count("Accepted publickey for ")

    def running(self) -> list[tuple[int, str]]:
        return marked_processes(self.marker)


class ListAuditor:
    """The Auditor port, backed by a list."""

    def __init__(self) -> None:
        self.entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self.entries.append(entry)


@pytest.fixture(scope="module")
def ssh_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        pytest.fail("OpenSSH server (sshd, ssh-keygen) is not installed: run ./dev setup")
    d = tmp_path_factory.mktemp("ssh-keys")
    return Keys(
        dir=d,
        host_key=keygen(d / "host_ed25519"),
        other_host_key=keygen(d / "other_host_ed25519"),
        client_key=keygen(d / "client_ed25519"),
        stranger_key=keygen(d / "stranger_ed25519"),
    )


@pytest.fixture
def sshd(ssh_keys: Keys, tmp_path: Path) -> Iterator[Sshd]:
    user = getpass.getuser()
    port = free_port()
    marker = uuid.uuid4().hex
    d = tmp_path / "sshd"
    d.mkdir()
    (d / "authorized_keys").write_text(public_line(ssh_keys.client_key) + "\n")
    config = d / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {ssh_keys.host_key}",
                f"AuthorizedKeysFile {d / 'authorized_keys'}",
                f"PidFile {d / 'sshd.pid'}",
                "AuthenticationMethods publickey",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "StrictModes no",
                "UsePAM no",
                "PermitRootLogin prohibit-password",
                f"AllowUsers {user}",
                "MaxSessions 10",
                "AllowTcpForwarding yes",
                "PrintMotd no",
                "LogLevel VERBOSE",
                f"SetEnv {MARKER_VAR}={marker}",
                "",
            ]
        )
    )
    known = tmp_path / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {public_line(ssh_keys.host_key)}\n")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # Debian's privilege separation directory
    log = d / "sshd.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stdout=out, stderr=subprocess.STDOUT)
    server = Sshd(port, user, d, ssh_keys, known, log, marker, proc)
    try:
        if not wait_for(lambda: "Server listening on 127.0.0.1" in server.log_text() or proc.poll() is not None, 10):
            raise RuntimeError("sshd did not start listening")
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {server.log_text()}")
        yield server
        # Every connection closed (sshd's per-connection children gone) and nothing left running.
        sessions_gone = wait_for(lambda: not children(proc.pid), 5)
        leftovers_gone = wait_for(lambda: not server.running(), 5)
        leftovers = server.running()
        assert sessions_gone, f"sshd still serves connections: {children(proc.pid)}"
        assert leftovers_gone, f"processes left running on the host: {leftovers}"
    finally:
        for pid in [p for p, _ in server.running()] + children(proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def auditor() -> ListAuditor:
    return ListAuditor()
