"""Process plumbing for the lab: detached starts, pids read from /proc, stopping by process group.

Every server the lab starts outlives the command that started it (``incident-bot lab up`` returns while
the lab runs), so each is started *detached*: a short-lived launcher starts it in a new session and
exits, and from then on the lab knows it only by pid. Orphans are re-parented to PID 1, which on some
machines (containers, microVMs) never reaps them, so a zombie (``Z`` in ``/proc/<pid>/stat``) counts as
stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bot.lab.errors import LabError

_LAUNCHER = """\
import json, os, subprocess, sys
spec = json.loads(sys.argv[1])
log = open(spec["log"], "ab")
proc = subprocess.Popen(spec["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=spec["cwd"],
                        env=spec["env"], start_new_session=True)
sys.stdout.write(str(proc.pid))
sys.stdout.flush()
os._exit(0)
"""


def is_root() -> bool:
    return os.geteuid() == 0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def as_user(argv: Sequence[str], user: str | None) -> list[str]:
    """``argv`` run as ``user`` through ``runuser`` (only meaningful as root; otherwise unchanged)."""
    if user is None or not is_root():
        return list(argv)
    return ["runuser", "-u", user, "--", *argv]


def run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 60.0,
        env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run a command to completion; a non-zero exit becomes a :class:`LabError` naming its last stderr line."""
    try:
        done = subprocess.run(list(argv), cwd=cwd, env=dict(env) if env is not None else None, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError as exc:
        raise LabError(f"{argv[0]} is not installed") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{Path(argv[0]).name} did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise LabError(f"{Path(argv[0]).name} failed: {detail}")
    return done


def spawn_detached(argv: Sequence[str], *, log: Path, cwd: Path, env: Mapping[str, str] | None = None) -> int:
    """Start ``argv`` in its own session with stdout and stderr appended to ``log``; return its pid."""
    spec = {"argv": list(argv), "log": str(log), "cwd": str(cwd), "env": dict(env if env is not None else os.environ)}
    done = run([sys.executable, "-c", _LAUNCHER, json.dumps(spec)], timeout=30)
    return int(done.stdout.strip())


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself contain spaces or parentheses.
    return raw[raw.rindex(")") + 2:].split()


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live (not zombie, not dead) process."""
    if not pid or pid <= 0:
        return False
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X", "x")


def process_state(pid: int) -> str | None:
    """The one-letter state of a process (``S``, ``R``, ``T`` for stopped…), or None when it is gone."""
    fields = _stat_fields(pid)
    return fields[0] if fields else None


def children(pid: int) -> list[int]:
    """Live direct children of ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[1] == str(pid) and fields[0] not in ("Z", "X", "x"):
            found.append(int(entry.name))
    return sorted(found)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return ""


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains ``text`` (e.g. the lab directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        line = cmdline(int(entry.name))
        if text in line and pid_alive(int(entry.name)):
            found.append((int(entry.name), line))
    return found


def read_pid_file(path: Path) -> int | None:
    """The pid on the first line of a pid file (nginx, gunicorn, sshd, postmaster.pid), or None."""
    try:
        first = path.read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, PermissionError):
        return None
    return int(first) if first.isdigit() else None


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, interval: float = 0.05) -> None:
    """Poll ``check`` until it is true; raise :class:`LabError` saying ``what`` did not happen in time."""
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def signal_pid(pid: int, sig: int) -> bool:
    """Send ``sig`` to ``pid``; False when the process is already gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True


def terminate(pid: int | None, *, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
    """Stop ``pid`` and, when it leads its own process group, the whole group: ``sig``, then SIGKILL.

    A stopped (SIGSTOPped) process is continued so it can act on the signal. Returns once the leader (and,
    for a group, every member) is gone or a zombie; never signals our own process group.
    """
    if not pid_alive(pid):
        return
    assert pid is not None
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    leads_group = group == pid and group != os.getpgrp()

    def send(s: int) -> None:
        try:
            if leads_group:
                os.killpg(group, s)
            else:
                os.kill(pid, s)
        except ProcessLookupError:
            pass

    send(sig)
    send(signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        _reap(pid)
        time.sleep(0.05)
    if pid_alive(pid) or (leads_group and _group_alive(group)):
        send(signal.SIGKILL)
        wait_until(lambda: not pid_alive(pid), timeout=5, what=f"process {pid} to die")
    if leads_group:  # a killed worker holds its sockets until it has exited: a connection made meanwhile is
        # queued and then reset, which is not the "connection refused" a dead upstream gives
        wait_until(lambda: not _group_alive(group), timeout=5, what=f"process group {group} to die")
    _reap(pid)


def _group_alive(group: int) -> bool:
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and fields[2] == str(group) and fields[0] not in ("Z", "X", "x"):
                return True
    return False


def _reap(pid: int) -> None:
    """Collect ``pid`` if it happens to be our own child (it usually is not: see the module docstring)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
