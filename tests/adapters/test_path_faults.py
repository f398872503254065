"""Faults of the path to the hosts, through the runner and the real SSH executor against a real sshd.

One diagnosis over several hosts where some are broken: a black-holed port, a refused port, a wrong
key, a changed host key, a command that hangs (its process SIGSTOPped), a host whose sshd dies mid-run.
Each broken host ends as a specific finding within the deadline, the healthy host still reports, and
nothing is left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.adapters.ssh import SshExecutor
from bot.core.commands import Command
from bot.core.models import Finding, Severity
from bot.runbook.base import Runbook, Steps
from bot.services.runner import HostPlan, Runner

from .conftest import ListAuditor, Sshd, children, free_port, public_line, wait_for


class Hostname(Runbook):
    """Reads the host name: the healthy host's proof of life."""

    name = "hostname_test"
    title = "host name"

    def steps(self) -> Steps:
        result = yield Command.of("uname", "-n")
        assert not isinstance(result, tuple)
        if not result.ok:
            return [self.failed(result)]
        return [Finding(kind="test.hostname", severity=Severity.INFO, summary=result.stdout.strip())]


class Hang(Runbook):
    """A command that never finishes by itself."""

    name = "hang_test"
    title = "hangs"

    def steps(self) -> Steps:
        result = yield Command.of("sleep", "300", timeout=2)
        assert not isinstance(result, tuple)
        return [self.failed(result)] if not result.ok else []


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A port whose kernel completes the TCP handshake but where no SSH server ever speaks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def kinds_by_host(findings: list[Finding]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for finding in findings:
        out.setdefault(finding.host or "?", set()).add(finding.kind)
    return out


async def test_broken_hosts_end_as_specific_findings_and_the_healthy_one_reports(
    sshd: Sshd, blackhole: int, tmp_path: Path, auditor: ListAuditor
) -> None:
    wrong_known = tmp_path / "wrong_known_hosts"
    wrong_known.write_text(f"[127.0.0.1]:{sshd.port} {public_line(sshd.keys.other_host_key)}\n")
    plans = [
        HostPlan(sshd.target(name="healthy"), [Hostname]),
        HostPlan(sshd.target(name="refused", port=free_port()), [Hostname]),
        HostPlan(sshd.target(name="blackholed", port=blackhole, connect_timeout=1.5), [Hostname]),
        HostPlan(sshd.target(name="wrong-key", identity=(str(sshd.keys.stranger_key),)), [Hostname]),
        HostPlan(sshd.target(name="changed-key", known_hosts=(str(wrong_known),)), [Hostname]),
        HostPlan(sshd.target(name="hanging"), [Hang, Hostname]),
    ]
    started = time.monotonic()
    report = await Runner(SshExecutor(auditor, "test"), deadline=20).run(plans)
    elapsed = time.monotonic() - started
    found = kinds_by_host(report.findings)
    assert found["healthy"] == {"test.hostname"}
    assert found["refused"] == {"ssh.host_unreachable"}
    assert found["blackholed"] == {"ssh.host_unreachable"}
    assert found["wrong-key"] == {"ssh.auth_failed"}
    assert found["changed-key"] == {"ssh.host_key_mismatch"}
    assert found["hanging"] == {"runbook.command_failed", "test.hostname"}
    hang = next(f for f in report.findings if f.host == "hanging" and f.kind == "runbook.command_failed")
    assert "timed out" in hang.summary
    assert elapsed < 15
    assert not asyncio.all_tasks() - {asyncio.current_task()}


async def test_a_stopped_remote_command_times_out_and_is_reaped(sshd: Sshd, auditor: ListAuditor) -> None:
    """The remote process is SIGSTOPped mid-run: the per-command timeout still ends it."""

    class Sleeper(Runbook):
        name = "sleeper_test"
        title = "sleeps"

        def steps(self) -> Steps:
            result = yield Command.of("sleep", "30", timeout=3)
            assert not isinstance(result, tuple)
            return [self.failed(result)] if not result.ok else []

    async def stop_the_sleep() -> None:
        for _ in range(50):
            for pid, args in sshd.running():
                if args.startswith("sleep 30"):
                    os.kill(pid, signal.SIGSTOP)
                    return
            await asyncio.sleep(0.1)

    stopper = asyncio.ensure_future(stop_the_sleep())
    report = await Runner(SshExecutor(auditor, "test"), deadline=20).run([HostPlan(sshd.target(), [Sleeper])])
    await stopper
    assert [f.kind for f in report.findings] == ["runbook.command_failed"]
    assert wait_for(lambda: not [a for _, a in sshd.running() if a.startswith("sleep 30")], 10)


async def test_a_host_that_dies_mid_run_is_reported_within_the_deadline(sshd: Sshd, auditor: ListAuditor) -> None:
    """sshd and its session die while a command runs: the host ends as a finding, fast."""

    class Slow(Runbook):
        name = "slow_test"
        title = "slow"

        def steps(self) -> Steps:
            result = yield Command.of("sleep", "20", timeout=30)
            assert not isinstance(result, tuple)
            return [self.failed(result)] if not result.ok else []

    async def kill_the_host() -> None:
        for _ in range(50):
            if [a for _, a in sshd.running() if a.startswith("sleep 20")]:
                break
            await asyncio.sleep(0.1)
        for pid in [*children(sshd.proc.pid), sshd.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    killer = asyncio.ensure_future(kill_the_host())
    started = time.monotonic()
    report = await Runner(SshExecutor(auditor, "test"), deadline=25).run([HostPlan(sshd.target(), [Slow])])
    await killer
    assert time.monotonic() - started < 10
    assert len(report.findings) == 1
    finding = report.findings[0]
    assert finding.kind in {"runbook.command_failed", "ssh.host_unreachable"}
    assert finding.host == sshd.target().name
    # The orphaned sleep is ended by its remote `timeout` wrapper at the latest; clean it here.
    for pid, _ in sshd.running():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
