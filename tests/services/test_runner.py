"""The runner: one session per host, runbooks concurrently, every failure a finding on its host."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest

from bot.core.commands import Command, Target
from bot.core.models import Finding
from bot.errors import AuthenticationFailed, HostUnreachable
from bot.evidence.readers.nginx import NginxErrorLog
from bot.runbook.base import Runbook, Steps
from bot.services.runner import HostPlan, ProgressEvent, Runner
from bot.testing import FakeExecutor

REFUSED = (
    "2026/11/30 03:25:13 [error] 4942#4942: *1 connect() failed (111: Connection refused) while connecting to"
    ' upstream, client: 127.0.0.1, server: _, request: "GET / HTTP/1.1", upstream: "http://127.0.0.1:8000/",'
    ' host: "localhost"'
)


class ProxyLog(Runbook):
    name = "proxy_log_test"
    title = "proxy log"
    readers: ClassVar[tuple[type[NginxErrorLog], ...]] = (NginxErrorLog,)

    def steps(self) -> Steps:
        out = yield Command.of("tail", "-n", "10", self.facts.get("log", "/var/log/nginx/error.log"))
        assert not isinstance(out, tuple)
        return self.read(out)


class Pair(Runbook):
    name = "pair_test"
    title = "two at once"

    def steps(self) -> Steps:
        results = yield (Command.of("uname", "-n"), Command.of("true"))
        assert isinstance(results, tuple) and len(results) == 2
        return []


class Broken(Runbook):
    name = "broken_test"
    title = "raises"

    def steps(self) -> Steps:
        yield Command.of("true")
        raise RuntimeError("bug in a plugin")


def target(name: str, **facts: str) -> Target:
    return Target(name=name, address="127.0.0.1", facts=facts)


async def test_findings_come_back_tagged_with_host_and_runbook() -> None:
    executor = FakeExecutor({"web-1": {("tail", "-n", "10", "/var/log/nginx/error.log"): REFUSED}})
    report = await Runner(executor).run([HostPlan(target("web-1"), [ProxyLog])])
    assert [(f.kind, f.host, f.runbook) for f in report.findings] == [
        ("nginx.upstream_refused", "web-1", "proxy_log_test")
    ]
    assert executor.open == 0


async def test_facts_of_the_host_reach_the_runbook() -> None:
    executor = FakeExecutor({"web-1": {("tail", "-n", "10", "/srv/err.log"): REFUSED}})
    report = await Runner(executor).run([HostPlan(target("web-1", log="/srv/err.log"), [ProxyLog])])
    assert report.findings and report.findings[0].kind == "nginx.upstream_refused"


async def test_an_unreachable_host_is_a_finding_and_the_others_still_report() -> None:
    executor = FakeExecutor(
        {"web-1": {("tail", "-n", "10", "/var/log/nginx/error.log"): REFUSED}},
        fail={"web-2": HostUnreachable("web-2", "connection refused"), "web-3": AuthenticationFailed("web-3", "no")},
    )
    report = await Runner(executor).run([HostPlan(target(n), [ProxyLog]) for n in ("web-1", "web-2", "web-3")])
    kinds = {(f.host, f.kind) for f in report.findings}
    assert ("web-1", "nginx.upstream_refused") in kinds
    assert ("web-2", "ssh.host_unreachable") in kinds
    assert ("web-3", "ssh.auth_failed") in kinds
    assert report.hosts_failed == {"web-2": "host_unreachable", "web-3": "auth_failed"}


async def test_a_runbook_that_raises_is_reported_and_the_hosts_other_runbooks_finish() -> None:
    executor = FakeExecutor({"h": {("tail", "-n", "10", "/var/log/nginx/error.log"): REFUSED}})
    report = await Runner(executor).run([HostPlan(target("h"), [Broken, ProxyLog, Pair])])
    kinds = sorted(f.kind for f in report.findings)
    assert kinds == ["nginx.upstream_refused", "runbook.crashed"]


async def test_the_deadline_ends_slow_hosts_with_a_finding_and_leaves_no_session_open() -> None:
    executor = FakeExecutor({"fast": {("tail", "-n", "10", "/var/log/nginx/error.log"): REFUSED}}, delay={"slow": 30.0})
    events: list[ProgressEvent] = []
    report = await Runner(executor, deadline=0.3, progress=events.append).run(
        [HostPlan(target("fast"), [ProxyLog]), HostPlan(target("slow"), [ProxyLog])]
    )
    assert {(f.host, f.kind) for f in report.findings} == {
        ("fast", "nginx.upstream_refused"),
        ("slow", "ssh.deadline"),
    }
    assert executor.open == 0
    assert any(e.host == "slow" and e.state == "failed" for e in events)


async def test_each_host_is_reported_as_it_finishes_and_a_broken_reporter_harms_nothing() -> None:
    executor = FakeExecutor({"fast": {("tail", "-n", "10", "/var/log/nginx/error.log"): REFUSED}}, delay={"slow": 0.2})
    told: list[tuple[str, list[str]]] = []

    async def on_host(host: str, findings: list[Finding]) -> None:
        told.append((host, [f.kind for f in findings]))
        if host == "slow":
            raise RuntimeError("the store is down")

    report = await Runner(executor, on_host=on_host).run(
        [HostPlan(target("slow"), [ProxyLog]), HostPlan(target("fast"), [ProxyLog])]
    )
    assert told == [("fast", ["nginx.upstream_refused"]), ("slow", [])]
    assert {f.host for f in report.findings} == {"fast"}


async def test_a_cancelled_run_stops_every_host_and_reports_none_afterwards() -> None:
    """serve shutting down mid-diagnosis: nothing goes on behind it (no session, no report to the store)."""
    executor = FakeExecutor(delay={"slow": 5.0})
    told: list[str] = []

    async def on_host(host: str, findings: list[Finding]) -> None:
        told.append(host)

    run = asyncio.create_task(Runner(executor, on_host=on_host).run([HostPlan(target("slow"), [ProxyLog])]))
    await asyncio.sleep(0.1)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await asyncio.sleep(0.1)
    assert executor.open == 0 and told == []
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_bad_params_are_a_finding_not_a_crash() -> None:
    report = await Runner(FakeExecutor()).run([HostPlan(target("h"), [Pair], params={"pair_test": {"x": 1}})])
    assert [f.kind for f in report.findings] == ["runbook.bad_params"]


async def test_concurrent_steps_run_over_one_session() -> None:
    executor = FakeExecutor({"h": {"uname -n": "h\n", "true": ""}})
    await Runner(executor).run([HostPlan(target("h"), [Pair])])
    assert [c.display for c in executor.sessions["h"].ran] == ["uname -n", "true"]


class Discover(Runbook):
    name = "discover_test"
    title = "finds the log"
    discovers = True

    def steps(self) -> Steps:
        out = yield Command.of("find-log")
        assert not isinstance(out, tuple)
        from bot.core.models import Finding, Severity
        from bot.runbook.base import FACTS_KIND

        return [Finding(kind=FACTS_KIND, severity=Severity.INFO, summary="facts", data={"log": out.stdout.strip()})]


async def test_discovered_facts_reach_the_other_runbooks_and_configured_facts_win() -> None:
    replies = {"find-log": "/srv/found.log\n", ("tail", "-n", "10", "/srv/found.log"): REFUSED}
    report = await Runner(FakeExecutor({"h": replies})).run([HostPlan(target("h"), [ProxyLog, Discover])])
    assert "nginx.upstream_refused" in {f.kind for f in report.findings}
    pinned = await Runner(FakeExecutor({"h": replies})).run(
        [HostPlan(target("h", log="/srv/pinned.log"), [ProxyLog, Discover])]
    )
    assert "nginx.upstream_refused" not in {f.kind for f in pinned.findings}
