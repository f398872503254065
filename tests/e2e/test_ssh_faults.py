"""SSH faults at scale (hardening issue, item 13): one diagnosis over a fleet where a third of the hosts
are broken — black-holed (a port that accepts and never speaks), refusing (nothing listens), or paused
(a real sshd stopped with SIGSTOP) — beside healthy ones (the fault lab's real sshd, under several
host names). The healthy hosts report their findings within the deadline; each broken one reports its
own reason; afterwards no asyncio task, TCP connection or child process of the run is left."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.app import DiagnoseRequest, run_diagnose
from bot.config import HostConfig, ServiceConfig, Settings, SshDefaults
from bot.lab import Lab, sshd
from bot.lab.paths import LabPaths
from bot.lab.process import free_port
from tests.labfixture import running_lab

HEALTHY, BLACKHOLED, REFUSING, PAUSED = 8, 2, 1, 1
CONNECT_TIMEOUT, DEADLINE = 2.0, 12.0


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with running_lab("ibl-faults-") as the_lab:
        yield the_lab


@pytest.fixture
def paused_sshd(tmp_path: Path) -> Iterator[tuple[int, LabPaths]]:
    """A second real sshd, stopped (SIGSTOP) once it listens: the kernel still completes TCP handshakes."""
    paths = LabPaths(tmp_path / "paused")
    for directory in (paths.logs, paths.run):
        directory.mkdir(parents=True)
    port = free_port()
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()
    pid = sshd.start(paths, port, user)
    os.kill(pid, signal.SIGSTOP)
    try:
        yield port, paths
    finally:
        os.kill(pid, signal.SIGCONT)
        sshd.stop(pid)


@pytest.fixture
def blackholes() -> Iterator[list[int]]:
    socks = []
    for _ in range(BLACKHOLED):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        socks.append(sock)
    try:
        yield [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def established(ports: set[int]) -> list[str]:
    """This process's TCP connections to any of ``ports`` (from ``ss``)."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=True).stdout
    mine = f"pid={os.getpid()},"
    return [line for line in out.splitlines() if mine in line and any(f":{p} " in line + " " for p in ports)]


def children() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():
                found.append(int(entry.name))
    return found


@pytest.mark.usefixtures("audit_in_tmp")
async def test_healthy_hosts_report_within_the_deadline_and_each_broken_one_says_why(
    lab: Lab, blackholes: list[int], paused_sshd: tuple[int, LabPaths]
) -> None:
    status = lab.status()
    assert status.ssh_port is not None
    base = {"user": status.user, "identity": status.identity, "known_hosts": status.known_hosts}
    hosts = {f"ok-{n}": HostConfig(address="127.0.0.1", port=status.ssh_port, **base) for n in range(HEALTHY)}
    hosts |= {f"hole-{n}": HostConfig(address="127.0.0.1", port=port, **base) for n, port in enumerate(blackholes)}
    closed = free_port()  # nothing listens there
    hosts |= {f"refused-{n}": HostConfig(address="127.0.0.1", port=closed, **base) for n in range(REFUSING)}
    paused_port, paused_paths = paused_sshd
    hosts |= {
        f"paused-{n}": HostConfig(
            address="127.0.0.1",
            port=paused_port,
            user=status.user,
            identity=str(paused_paths.user_key),
            known_hosts=str(paused_paths.known_hosts),
        )
        for n in range(PAUSED)
    }
    settings = Settings(
        ssh=SshDefaults(connect_timeout=CONNECT_TIMEOUT, deadline=DEADLINE, command_timeout=8),
        hosts=hosts,
        services={"fleet": ServiceConfig(hosts=list(hosts))},
    )
    request = DiagnoseRequest(target="fleet", status=502, runbooks=("disk", "load", "sockets"), adhoc=False)
    tasks_before = asyncio.all_tasks()
    started = time.monotonic()
    diagnosis = await run_diagnose(request, settings)
    took = time.monotonic() - started
    assert took < DEADLINE + 3, took

    by_host: dict[str, list[str]] = {}
    for finding in diagnosis.findings:
        by_host.setdefault(finding.host or "", []).append(f"{finding.kind}: {finding.summary}")
    for n in range(HEALTHY):
        kinds = by_host.get(f"ok-{n}", [])
        assert any(k.startswith("disk.") for k in kinds) and not any(k.startswith("ssh.") for k in kinds), kinds
    for n in range(BLACKHOLED):
        assert by_host[f"hole-{n}"] == [
            f"ssh.host_unreachable: hole-{n}: 127.0.0.1:{blackholes[n]}: no SSH handshake within {CONNECT_TIMEOUT:g}s"
        ]
    assert by_host["refused-0"] == [f"ssh.host_unreachable: refused-0: 127.0.0.1:{closed}: connection refused"]
    assert by_host["paused-0"] == [
        f"ssh.host_unreachable: paused-0: 127.0.0.1:{paused_port}: no SSH handshake within {CONNECT_TIMEOUT:g}s"
    ]

    await asyncio.sleep(0.2)  # let closed transports finish
    assert asyncio.all_tasks() == tasks_before
    ports = {status.ssh_port, *blackholes, closed, paused_port}
    assert established(ports) == []
    assert children() == []
