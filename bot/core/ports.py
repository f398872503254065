"""Ports: the interfaces the services need from the outside world, implemented by adapters.

Services depend on these Protocols only; ``bot/app.py`` wires the real adapters, tests use the fakes
in ``bot/testing.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from bot.core.commands import Command, CommandResult, Target
from bot.core.models import Finding
from bot.core.probe import ProbeReport


class HostSession(Protocol):
    """An open connection to one host: commands run over it, concurrently where the adapter allows."""

    @property
    def host(self) -> str: ...

    async def run(self, command: Command) -> CommandResult:
        """Run one command; never raises for the command's own failure (timeouts included): the result says."""
        ...


class Executor(Protocol):
    """Opens sessions to hosts. ``session`` raises a RemoteError subclass when the host cannot be reached."""

    def session(self, target: Target) -> AbstractAsyncContextManager[HostSession]: ...


AuditKind = Literal["command", "approval", "role"]


class AuditEntry(BaseModel):
    """One audited act (DESIGN §7): a command run on a host, an approval, or a role decision.

    ``kind`` says which; for an approval or a role decision ``trigger`` is who acted, ``argv`` the
    decision (e.g. ``("approve", "restart-gunicorn", "incident 4")``), ``host`` the host concerned or
    empty, and ``exit_status`` None. The audit logs chain the entries by hash (:mod:`bot.core.audit_chain`).
    """

    model_config = ConfigDict(frozen=True)

    at: datetime
    trigger: str
    host: str
    argv: tuple[str, ...]
    exit_status: int | None
    duration: float
    output_sha256: str
    error: str | None = None
    kind: AuditKind = "command"


class Auditor(Protocol):
    """Receives an entry for every remote command, whatever its outcome."""

    def record(self, entry: AuditEntry) -> None: ...


ProgressState = Literal["connecting", "started", "done", "failed"]


@dataclass(frozen=True)
class ProgressEvent:
    """A step of a diagnosis, for live progress displays (``runbook`` None: the host connection)."""

    host: str
    runbook: str | None
    state: ProgressState
    elapsed: float
    detail: str = ""


Progress = Callable[[ProgressEvent], None]


class Prober(Protocol):
    """Re-probes a service URL before paging (DESIGN §2): a few attempts, each with its failing layer.

    Never raises for the service's own failure, nor for a URL the address policy refuses: the report
    says (verdict ``refused``).
    """

    async def probe(self, url: str) -> ProbeReport: ...


class Reporter(Protocol):
    """Told the parts of an incident's diagnosis as they arrive (each becomes a thread post)."""

    async def probe(self, findings: list[Finding]) -> None: ...

    async def host(self, host: str, findings: list[Finding]) -> None: ...
