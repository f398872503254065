"""OpenSSH ``sshd`` on 127.0.0.1 with generated keys: the door ``incident-bot diagnose`` comes in by."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from bot.lab.errors import LabError
from bot.lab.paths import LabPaths
from bot.lab.process import is_root, pid_alive, read_pid_file, run, spawn_detached, terminate, wait_until

SSHD = "/usr/sbin/sshd"


def _sshd_binary() -> str:
    found = SSHD if Path(SSHD).exists() else shutil.which("sshd")
    if not found:
        raise LabError("OpenSSH sshd is not installed (Debian: apt-get install openssh-server)")
    return str(Path(found).absolute())  # sshd refuses to re-exec itself from a relative path


def sshd_config(paths: LabPaths, port: int, user: str) -> str:
    return "\n".join([
        "# incident-bot fault lab: sshd on loopback, public keys only",
        f"Port {port}",
        "ListenAddress 127.0.0.1",
        f"HostKey {paths.host_key}",
        f"PidFile {paths.pid_file('sshd')}",
        f"AuthorizedKeysFile {paths.authorized_keys}",
        "AuthenticationMethods publickey",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitRootLogin prohibit-password",
        f"AllowUsers {user}",
        "StrictModes no",
        "UsePAM no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "LogLevel VERBOSE",
        # The bot logs in to a clean home, like a dedicated service account: the lab user's own shell
        # start-up files (a developer's ~/.bashrc, which bash sources for ssh commands) stay out of it.
        f"SetEnv HOME={paths.root / 'home'}",
        "",
    ])


def make_keys(paths: LabPaths, user: str) -> None:
    """Host key, the bot's user key, ``authorized_keys`` (the bot key only), the session home."""
    (paths.root / "home").mkdir(mode=0o700, exist_ok=True)
    paths.keys.mkdir(mode=0o700, exist_ok=True)
    for key, comment in ((paths.host_key, "incident-bot-lab-host"), (paths.user_key, f"incident-bot@{user}")):
        if not key.exists():
            run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(key)])
    paths.authorized_keys.write_text(Path(f"{paths.user_key}.pub").read_text())
    os.chmod(paths.authorized_keys, 0o600)


def write_known_hosts(paths: LabPaths, port: int) -> None:
    kind, blob = Path(f"{paths.host_key}.pub").read_text().split()[:2]
    paths.known_hosts.write_text(f"[127.0.0.1]:{port} {kind} {blob}\n")


def start(paths: LabPaths, port: int, user: str) -> int:
    """Write the config and keys, start ``sshd -D -e`` detached and wait until it listens."""
    binary = _sshd_binary()
    make_keys(paths, user)
    write_known_hosts(paths, port)
    paths.sshd_config.write_text(sshd_config(paths, port, user))
    if is_root():
        # Debian's sshd insists on its privilege separation directory (normally made by systemd).
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    run([binary, "-t", "-f", str(paths.sshd_config)])
    pid = spawn_detached([binary, "-D", "-e", "-f", str(paths.sshd_config)], log=paths.sshd_log, cwd=paths.root)
    try:
        wait_until(lambda: read_pid_file(paths.pid_file("sshd")) == pid or not pid_alive(pid),
                   timeout=10, what="sshd to listen")
    except LabError:
        terminate(pid)
        raise
    if not pid_alive(pid):
        raise LabError(f"sshd exited at start; see {paths.sshd_log}")
    return pid


def stop(pid: int | None) -> None:
    terminate(pid)
