"""The runner: drives runbooks against hosts through the Executor port.

One session (connection) per host, every runbook of that host over it concurrently, hosts in parallel
up to a bound, one overall deadline. Whatever goes wrong on one host (unreachable, bad key, a runbook
that raises, the deadline) becomes a finding on that host; the other hosts still report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel, ValidationError

from bot.core.commands import CommandResult, Target
from bot.core.models import Finding, Severity
from bot.core.ports import Executor, HostSession, Progress, ProgressEvent, ProgressState
from bot.errors import RemoteError
from bot.runbook.base import FACTS_KIND, Reply, Runbook, Step

log = logging.getLogger(__name__)

#: Told each host's findings as soon as that host's runbooks are done (or the host failed).
HostDone = Callable[[str, list[Finding]], Awaitable[None]]


@dataclass(frozen=True)
class HostPlan:
    """What to run on one host: the runbooks and, per runbook name, its parameters."""

    target: Target
    runbooks: Sequence[type[Runbook]]
    params: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


@dataclass
class RunReport:
    findings: list[Finding] = field(default_factory=list)
    results: list[CommandResult] = field(default_factory=list)
    hosts_failed: dict[str, str] = field(default_factory=dict)


def _with_discovered_facts(plan: HostPlan, found: Sequence[Finding]) -> HostPlan:
    """The plan with discovered facts added under the configured ones (configuration wins)."""
    discovered: dict[str, str] = {}
    for finding in found:
        if finding.kind == FACTS_KIND:
            discovered.update({str(k): str(v) for k, v in finding.data.items() if v not in (None, "")})
    if not discovered:
        return plan
    target = plan.target.model_copy(update={"facts": {**discovered, **plan.target.facts}})
    return HostPlan(target=target, runbooks=plan.runbooks, params=plan.params)


def _host_finding(host: str, kind: str, summary: str, severity: Severity = Severity.CRITICAL) -> Finding:
    return Finding(kind=kind, severity=severity, summary=summary, host=host)


class Runner:
    def __init__(
        self,
        executor: Executor,
        *,
        deadline: float = 60.0,
        max_parallel_hosts: int = 64,
        progress: Progress | None = None,
        on_host: HostDone | None = None,
    ) -> None:
        self.executor = executor
        self.deadline = deadline
        self.max_parallel_hosts = max_parallel_hosts
        self.progress = progress or (lambda event: None)
        self.on_host = on_host

    async def run(self, plans: Sequence[HostPlan]) -> RunReport:
        report = RunReport()
        started = time.monotonic()
        gate = asyncio.Semaphore(self.max_parallel_hosts)

        async def one(plan: HostPlan) -> None:
            async with gate:
                await self._host(plan, report, started)
            await self._tell(plan.target.name, report)

        tasks = {asyncio.ensure_future(one(plan)): plan for plan in plans}
        if not tasks:
            return report
        try:
            done, pending = await asyncio.wait(tasks, timeout=self.deadline)
        except asyncio.CancelledError:  # the caller stops (shutdown): no host goes on, nor reports, behind it
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=5)
            raise
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
        for task, plan in tasks.items():
            name = plan.target.name
            if task in pending:
                report.hosts_failed[name] = "deadline"
                report.findings.append(
                    _host_finding(
                        name, "ssh.deadline", f"{name}: the diagnosis deadline ({self.deadline:g} s) expired first"
                    )
                )
                self._emit(name, None, "failed", started, "deadline")
            elif task in done and task.exception() is not None:
                exc = task.exception()
                report.hosts_failed[name] = type(exc).__name__
                report.findings.append(
                    _host_finding(name, "runner.crashed", f"{name}: internal error ({type(exc).__name__})")
                )
        return report

    async def _host(self, plan: HostPlan, report: RunReport, started: float) -> None:
        name = plan.target.name
        self._emit(name, None, "connecting", started)
        try:
            async with self.executor.session(plan.target) as session:
                first = [rb for rb in plan.runbooks if rb.discovers]
                rest = [rb for rb in plan.runbooks if not rb.discovers]
                if first:
                    before = len(report.findings)
                    await asyncio.gather(*(self._runbook(session, plan, rb, report, started) for rb in first))
                    plan = _with_discovered_facts(plan, report.findings[before:])
                await asyncio.gather(*(self._runbook(session, plan, rb, report, started) for rb in rest))
        except RemoteError as exc:
            report.hosts_failed[name] = exc.code
            report.findings.append(_host_finding(name, f"ssh.{exc.code}", exc.user_message()))
            self._emit(name, None, "failed", started, exc.user_message())

    async def _runbook(
        self, session: HostSession, plan: HostPlan, runbook: type[Runbook], report: RunReport, started: float
    ) -> None:
        host = plan.target.name
        self._emit(host, runbook.name, "started", started)
        try:
            params: BaseModel = runbook.Params.model_validate(dict(plan.params.get(runbook.name, {})))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "params"
            report.findings.append(
                Finding(
                    kind="runbook.bad_params",
                    severity=Severity.WARNING,
                    summary=f"{runbook.name}: parameter {where}: {first['msg']}",
                    host=host,
                    runbook=runbook.name,
                )
            )
            self._emit(host, runbook.name, "failed", started, "bad parameters")
            return
        steps = runbook(params, plan.target.facts).steps()
        try:
            step: Step = next(steps)
            while True:
                reply: Reply
                if isinstance(step, tuple):
                    reply = tuple(await asyncio.gather(*(session.run(c) for c in step)))
                    report.results.extend(reply)
                else:
                    reply = await session.run(step)
                    report.results.append(reply)
                step = steps.send(reply)
        except StopIteration as finished:
            found: list[Finding] = finished.value or []
            report.findings.extend(f.model_copy(update={"host": host, "runbook": runbook.name}) for f in found)
            self._emit(host, runbook.name, "done", started, f"{len(found)} findings")
        except RemoteError as exc:
            report.findings.append(_host_finding(host, f"ssh.{exc.code}", exc.user_message()))
            self._emit(host, runbook.name, "failed", started, exc.code)
        except Exception as exc:  # a broken runbook must not take the host's other runbooks down
            report.findings.append(
                Finding(
                    kind="runbook.crashed",
                    severity=Severity.WARNING,
                    summary=f"runbook {runbook.name} failed: {type(exc).__name__}",
                    host=host,
                    runbook=runbook.name,
                )
            )
            self._emit(host, runbook.name, "failed", started, type(exc).__name__)

    async def _tell(self, host: str, report: RunReport) -> None:
        """Hand ``on_host`` the host's findings; its failure is logged, never the host's."""
        if self.on_host is None:
            return
        try:
            await self.on_host(host, [f for f in report.findings if f.host == host])
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("runner: reporting the findings of %s failed", host)

    def _emit(self, host: str, runbook: str | None, state: ProgressState, started: float, detail: str = "") -> None:
        self.progress(ProgressEvent(host, runbook, state, time.monotonic() - started, detail))
