"""deploy/ssh/authorized_keys.example under a real OpenSSH sshd on 127.0.0.1.

A stand-in script takes the gate's place at the same spot in the line and prints what the gate would be
given (SSH_ORIGINAL_COMMAND), so what is checked here is the line itself: the forced command runs whatever
the client asks, and `restrict` refuses forwarding and a PTY. The real gate behind the same line, with every
runbook through it, is tests/test_gate_sshd.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_serve import free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "ssh" / "authorized_keys.example"
GATE = "/usr/local/bin/incident-bot gate"
SSHD = "/usr/sbin/sshd"


def _line() -> str:
    [line] = [raw for raw in EXAMPLE.read_text().splitlines() if raw and not raw.startswith("#")]
    return line


class Door:
    """A running sshd whose authorized_keys holds the example line with a real key and the stand-in gate."""

    def __init__(self, root: Path, port: int, key: Path) -> None:
        self.root, self.port, self.key = root, port, key

    def ssh(self, *args: str) -> subprocess.CompletedProcess[str]:
        argv = ["ssh", "-F", "/dev/null", "-i", str(self.key), "-p", str(self.port), "-o", "BatchMode=yes",
                "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={self.root / 'known_hosts'}",
                "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=5", *args]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30, stdin=subprocess.DEVNULL)


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return Path(f"{path}.pub").read_text().split()[1]


@pytest.fixture(scope="module")
def door(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    if not (Path(SSHD).exists() and shutil.which("ssh") and shutil.which("ssh-keygen")):
        pytest.fail("OpenSSH is missing: apt-get install openssh-server openssh-client")
    root = tmp_path_factory.mktemp("door")
    port = free_port()
    _keygen(root / "host_key")
    blob = _keygen(root / "bot_key")
    gate = root / "gate"
    gate.write_text('#!/bin/sh\nprintf "gate asked: %s\\n" "$SSH_ORIGINAL_COMMAND"\n')
    gate.chmod(0o755)
    line = _line().replace(GATE, str(gate)).replace("REPLACE_WITH_THE_BOTS_PUBLIC_KEY", blob)
    (root / "authorized_keys").write_text(line + "\n")
    host = Path(f"{root / 'host_key'}.pub").read_text().split()
    (root / "known_hosts").write_text(f"[127.0.0.1]:{port} {host[0]} {host[1]}\n")
    (root / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {root / 'host_key'}\nPidFile {root / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {root / 'authorized_keys'}\nAuthenticationMethods publickey\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "StrictModes no\nUsePAM no\nAllowTcpForwarding yes\nPermitTTY yes\nAllowAgentForwarding yes\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    check = subprocess.run([SSHD, "-t", "-f", str(root / "sshd_config")], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stderr
    with (root / "sshd.log").open("wb") as log:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(root / "sshd_config")], stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 10
        while not (root / "sshd.pid").exists():
            assert proc.poll() is None and time.monotonic() < deadline, (root / "sshd.log").read_text()
            time.sleep(0.05)
        yield Door(root, port, root / "bot_key")
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_line_forces_the_gate_and_restricts_everything_else() -> None:
    """Exactly `restrict,command="/usr/local/bin/incident-bot gate"` before an ed25519 key."""
    match = re.fullmatch(r'(?P<options>\S+="[^"]*") (?P<kind>\S+) (?P<key>\S+) (?P<comment>\S+)', _line())
    assert match, _line()
    assert match["options"] == f'restrict,command="{GATE}"'
    assert match["kind"] == "ssh-ed25519"


def test_every_session_runs_the_forced_command_with_the_asked_command_line(door: Door) -> None:
    """Whatever the bot asks for reaches the gate as SSH_ORIGINAL_COMMAND and nothing else runs."""
    done = door.ssh("root@127.0.0.1", "env LC_ALL=C timeout -k 2 15 df -hP; touch /tmp/pwned")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "gate asked: env LC_ALL=C timeout -k 2 15 df -hP; touch /tmp/pwned\n"


def test_port_forwarding_is_refused(door: Door) -> None:
    """`restrict` turns TCP forwarding off for this key although sshd allows it (no pivot through the host)."""
    done = door.ssh("-W", f"127.0.0.1:{door.port}", "root@127.0.0.1")
    assert done.returncode != 0
    assert "administratively prohibited" in done.stderr


def test_no_terminal_is_given(door: Door) -> None:
    """`restrict` refuses a PTY although sshd permits one."""
    done = door.ssh("-tt", "root@127.0.0.1", "whoami")
    assert "PTY allocation request failed" in done.stderr


def test_the_example_as_shipped_lets_nobody_in(door: Door, tmp_path: Path) -> None:
    """Until the placeholder is replaced by the bot's key, the line matches no key: login fails closed."""
    (door.root / "authorized_keys").write_text(_line() + "\n")
    try:
        done = door.ssh("root@127.0.0.1", "true")
    finally:
        blob = Path(f"{door.key}.pub").read_text().split()[1]
        gate = door.root / "gate"
        line = _line().replace(GATE, str(gate)).replace("REPLACE_WITH_THE_BOTS_PUBLIC_KEY", blob)
        (door.root / "authorized_keys").write_text(line + "\n")
    assert done.returncode == 255 and "Permission denied" in done.stderr


def test_the_documented_read_only_gate_is_an_option_the_gate_has() -> None:
    """The safer line the comments offer (`gate --read-only`) runs: with --list it names what it refuses."""
    text = EXAMPLE.read_text()
    [command] = re.findall(r'command="(/usr/local/bin/incident-bot gate --read-only)"', text)
    gate = Path(sys.executable).parent / "incident-bot"
    argv = [str(gate), *command.split()[1:], "--list"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "# read-only: the commands of clear_cache, restart_unit (they change the host) are refused" in done.stdout
