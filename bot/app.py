"""Composition root: builds the real adapters from the settings and hands them to the services.

Nothing is built at import time; each entry point (CLI command, server lifespan) calls what it needs
once, and owns the resources for as long as it runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from bot.adapters.audit import JsonlAuditor, default_audit_path
from bot.adapters.ssh import SshExecutor
from bot.config import Settings
from bot.core.commands import Command
from bot.core.incidents import Incident
from bot.core.models import Diagnosis, Finding, Signal
from bot.core.ports import Auditor, Executor, Prober, Progress, Reporter
from bot.core.probe import PROBE_SIGNALS
from bot.diagnosis.engine import diagnose
from bot.errors import BotError, ConfigError, UsageError
from bot.evidence.registry import load as load_readers
from bot.runbook.base import Runbook
from bot.runbook.registry import Catalog
from bot.runbook.registry import load as load_runbooks
from bot.services.runner import HostPlan, Runner
from bot.services.targets import Overrides, resolve


@dataclass(frozen=True)
class DiagnoseRequest:
    target: str
    status: int | None = None
    url: str | None = None
    runbooks: tuple[str, ...] = ()
    overrides: Overrides = field(default_factory=Overrides)
    #: Who asked: ``cli``, ``alert:<fingerprint>``, ``slack:<user>``… (audited with every command).
    trigger: str = "cli"
    #: Hosts outside the configuration are allowed only when a person at the CLI names them.
    adhoc: bool = True
    #: Parameters per runbook name (validated by each runbook's ``Params`` before it runs).
    params: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    #: The approval (its request id) that lets a mutating runbook run; without one, naming a mutating
    #: runbook is refused (DESIGN §6: it runs only after a second person approves it in chat).
    approval: str | None = None


def plans_for(request: DiagnoseRequest, settings: Settings, catalog: Catalog) -> list[HostPlan]:
    unknown = [name for name in request.runbooks if name not in catalog.runbooks]
    if unknown:
        known = ", ".join(sorted(catalog.runbooks)) or "none"
        raise UsageError(f"unknown runbook {unknown[0]!r} (known: {known})")
    mutating = [name for name in request.runbooks if catalog.runbooks[name].mutating]
    if mutating and request.approval is None:
        raise UsageError(
            f"runbook {mutating[0]!r} changes the host: ask for it in the incident's chat thread "
            f"(request ID {mutating[0]} HOST KEY=VALUE…), where a second operator approves it"
        )
    plans = []
    for resolved in resolve(request.target, settings, request.overrides, adhoc=request.adhoc):
        target = resolved
        url = request.url or _service_url(resolved.name, settings)
        if url and "site_url" not in resolved.facts:
            target = resolved.model_copy(update={"facts": {**resolved.facts, "site_url": url}})
        chosen: Sequence[type[Runbook]] = catalog.select(request.status, target.roles, request.runbooks)
        plans.append(HostPlan(target=target, runbooks=list(chosen), params=request.params))
    return plans


def _service_url(host: str, settings: Settings) -> str | None:
    """The URL of the (first) service this host serves, so runbooks can probe the site itself."""
    for service in settings.services.values():
        if host in service.hosts and service.url:
            return service.url
    return None


async def run_diagnose(
    request: DiagnoseRequest, settings: Settings, progress: Progress | None = None, *, auditor: Auditor | None = None
) -> Diagnosis:
    """Resolve the target, run the runbooks over SSH, rank the causes; every command goes to ``auditor``
    (the JSONL audit log unless told otherwise)."""
    catalog = load_runbooks()
    plans = plans_for(request, settings, catalog)
    executor = SshExecutor(
        auditor or JsonlAuditor(default_audit_path()),
        request.trigger,
        command_timeout=settings.ssh.command_timeout,
    )
    runner = Runner(
        executor,
        deadline=settings.ssh.deadline,
        max_parallel_hosts=settings.ssh.max_parallel_hosts,
        progress=progress,
    )
    report = await runner.run(plans)
    return diagnose(report.findings, request.status, _signals(catalog), target=request.target)


def _signals(catalog: Catalog) -> dict[str, Signal]:
    """What every finding kind suggests: the evidence readers', the runbooks' readers' and the probe's."""
    signals = dict(load_readers().signals())
    for runbook in catalog.runbooks.values():
        for reader in runbook.readers:
            signals.update(reader.signals)
    signals.update(PROBE_SIGNALS)
    return signals


async def diagnose_incident(
    incident: Incident,
    settings: Settings,
    catalog: Catalog,
    *,
    auditor: Auditor | None,
    prober: Prober | None,
    reporter: Reporter | None = None,
) -> Diagnosis:
    """An incident's diagnosis job: its service's configured hosts (never hosts from the alert) over
    SSH and, when the service has a URL, the confirmation probe of it, side by side; then the rules.
    ``reporter`` hears the probe's findings and each host's as soon as they are in."""
    name = incident.service
    service = settings.services.get(name) if name is not None else None
    if name is None or service is None:
        raise ConfigError("services", f"incident {incident.id} has no service of the configuration")
    request = DiagnoseRequest(target=name, status=incident.status, trigger=f"incident:{incident.id}", adhoc=False)
    plans = plans_for(request, settings, catalog)
    executor = SshExecutor(auditor, request.trigger, command_timeout=settings.ssh.command_timeout)
    runner = Runner(
        executor,
        deadline=settings.ssh.deadline,
        max_parallel_hosts=settings.ssh.max_parallel_hosts,
        on_host=reporter.host if reporter is not None else None,
    )

    async def probed() -> list[Finding]:
        if prober is None or not service.url:
            return []
        found = (await prober.probe(service.url)).findings()
        if reporter is not None:
            await reporter.probe(found)
        return found

    report, probe_findings = await asyncio.gather(runner.run(plans), probed())
    findings = [*probe_findings, *report.findings]
    return diagnose(findings, incident.status, _signals(catalog), target=name)


@dataclass(frozen=True)
class HostCheck:
    """One host of ``config check``: reached (an SSH session ran ``true``) or the typed error why not."""

    host: str
    ok: bool
    #: ``ok``, or ``<error code>: <safe one-line message>``.
    detail: str


async def check_hosts(settings: Settings, executor: Executor | None = None) -> list[HostCheck]:
    """Open an SSH session to every configured host and run ``true`` (no runbook, nothing audited), all
    hosts at once up to ``ssh.max_parallel_hosts``; in the configuration's host order."""
    ssh = executor or SshExecutor(None, "config-check", command_timeout=settings.ssh.connect_timeout)
    gate = asyncio.Semaphore(settings.ssh.max_parallel_hosts)

    async def check(name: str) -> HostCheck:
        async with gate:
            try:
                [target] = resolve(name, settings, adhoc=False)
                async with ssh.session(target) as session:
                    result = await session.run(Command.of("true", label="config check"))
            except BotError as exc:
                return HostCheck(name, False, f"{exc.code}: {exc.user_message()}")
        if result.exit_status == 0:
            return HostCheck(name, True, "ok")
        why = result.error or f"exit status {result.exit_status}"
        return HostCheck(name, False, f"command_failed: `true` did not succeed ({why})")

    return list(await asyncio.gather(*(check(name) for name in settings.hosts)))
