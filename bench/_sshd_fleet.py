"""N OpenSSH ``sshd`` instances on 127.0.0.1, one per simulated host, for the fan-out benchmark.

Each host has its own port, its own ed25519 host key and its own ``sshd -D`` process (so each has
its own ``MaxStartups``/``MaxSessions`` budget, as separate machines do). One user key is authorised
on all of them; ``known_hosts`` lists every host key, so every client verifies every host. Sessions
get a clean ``HOME`` (sshd ``SetEnv``), as a dedicated service account has: the logged-in user's own
``~/.bashrc`` stays out of the measurement (see bench/README.md).

:meth:`SshdFleet.server_cpu` is the CPU time (user + system, seconds) that the servers' finished
sessions used, read from each listener's reaped-children times in ``/proc/<pid>/stat``: sshd forks a
process per connection and reaps it, and that process reaps the commands it ran.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port(taken: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            taken.add(port)
            return port


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                   check=True, capture_output=True, timeout=30)  # fmt: skip


def _config(host_dir: Path, port: int, user: str, authorized: Path, home: Path) -> str:
    return "\n".join(
        [
            f"Port {port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {host_dir / 'host_key'}",
            f"PidFile {host_dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {authorized}",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PermitRootLogin prohibit-password",
            f"AllowUsers {user}",
            "StrictModes no",
            "UsePAM no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            "LogLevel ERROR",
            f"SetEnv HOME={home}",
            "",
        ]
    )


@dataclass(frozen=True)
class Host:
    name: str
    port: int


@dataclass
class SshdFleet:
    """``count`` sshd under ``root``; use as a context manager (stops every sshd it started)."""

    root: Path
    count: int
    user: str = field(default_factory=lambda: pwd.getpwuid(os.geteuid()).pw_name)
    hosts: list[Host] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    @property
    def identity(self) -> Path:
        return self.root / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def home(self) -> Path:
        return self.root / "home"

    def __enter__(self) -> SshdFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        sshd = SSHD if Path(SSHD).exists() else shutil.which("sshd")
        if not sshd:
            raise SystemExit("OpenSSH sshd is not installed: run bench/setup.sh")
        self.root.mkdir(parents=True, exist_ok=True)
        self.home.mkdir(mode=0o700, exist_ok=True)
        _keygen(self.identity, "incident-bot-bench")
        authorized = self.root / "authorized_keys"
        authorized.write_text(Path(f"{self.identity}.pub").read_text())
        authorized.chmod(0o600)
        if os.geteuid() == 0:
            Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # Debian's privilege separation directory
        taken: set[int] = set()
        known: list[str] = []
        for index in range(self.count):
            name = f"host-{index:03d}"
            host_dir = self.root / name
            host_dir.mkdir()
            _keygen(host_dir / "host_key", name)
            port = _free_port(taken)
            kind, blob = Path(f"{host_dir / 'host_key'}.pub").read_text().split()[:2]
            known.append(f"[127.0.0.1]:{port} {kind} {blob}")
            config = host_dir / "sshd_config"
            config.write_text(_config(host_dir, port, self.user, authorized, self.home))
            log = (host_dir / "sshd.log").open("ab")
            proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, start_new_session=True)  # fmt: skip
            log.close()
            self.pids.append(proc.pid)
            self.hosts.append(Host(name, port))
        self.known_hosts.write_text("\n".join(known) + "\n")
        deadline = time.monotonic() + 20
        for host in self.hosts:
            while not _listening(host.port):
                if time.monotonic() > deadline:
                    raise SystemExit(f"sshd for {host.name} did not listen; see {self.root / host.name / 'sshd.log'}")
                time.sleep(0.02)

    def stop(self) -> None:
        for pid in self.pids:
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids.clear()

    def server_cpu(self) -> float:
        """Seconds of CPU (user + system) used so far by the finished sessions of every sshd here."""
        total = 0
        for pid in self.pids:
            try:
                raw = Path(f"/proc/{pid}/stat").read_text()
            except FileNotFoundError:  # an sshd that died (and was reaped) counts no more
                continue
            fields = raw[raw.rindex(")") + 2 :].split()
            total += int(fields[13]) + int(fields[14])  # cutime, cstime (fields 16 and 17 of stat)
        return total / CLOCK_TICKS


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            return False
    return True
