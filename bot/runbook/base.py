"""The base of every runbook: a pure generator that yields Commands and returns Findings.

A runbook declares which HTTP statuses and host roles it applies to, its ``Params`` (validated with
pydantic before it runs), and ``steps()``::

    def steps(self) -> Steps:
        df_h, df_i = yield (Command.of("df", "-hP"), Command.of("df", "-iP"))   # a tuple runs concurrently
        status = yield Command.of("systemctl", "is-active", self.params.unit)     # one command
        return [*self.read(df_h, DiskUsage), *self.read(status, SystemdUnit, header=...)]

It never does I/O: the runner owns SSH, timeouts and concurrency, and ``bot.testing.drive`` runs it on
captured outputs with no event loop. Its parsers are evidence readers, so everything a runbook can
read from a host, ``explain`` can read from a paste.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Generator, Mapping, Sequence
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from bot.core.commands import Command, CommandResult
from bot.core.models import Finding, Severity
from bot.evidence.reader import Reader
from bot.evidence.scanner import Scanner
from bot.runbook.shapes import Shape

#: A discovering runbook reports what it found about the host in one finding of this kind, whose
#: ``data`` maps fact names (``nginx_error_log``, ``upstreams``…) to values.
FACTS_KIND = "discovery.facts"

Step = Command | tuple[Command, ...]
Reply = CommandResult | tuple[CommandResult, ...]
Steps = Generator[Step, Reply, list[Finding]]


class NoParams(BaseModel):
    """For runbooks that take no parameters."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Runbook(ABC):
    """One checklist item for a host. Subclasses set the class attributes and implement ``steps``."""

    #: Stable snake_case name (``proxy_log``); what ``--runbook`` and chat commands use.
    name: ClassVar[str]
    title: ClassVar[str]
    #: HTTP statuses it helps with; empty means every status.
    statuses: ClassVar[frozenset[int]] = frozenset()
    #: Host roles it applies to (``proxy``, ``app``, ``db``); empty means every host.
    roles: ClassVar[frozenset[str]] = frozenset()
    #: True when it changes the host (restart, clean up): runs only after an approval in chat.
    mutating: ClassVar[bool] = False
    Params: ClassVar[type[BaseModel]] = NoParams
    #: Runs before the others on a host; its ``discovery.facts`` finding fills the host's facts
    #: (facts from the configuration win).
    discovers: ClassVar[bool] = False
    #: The readers that parse its outputs (also offered to ``explain``).
    readers: ClassVar[tuple[type[Reader], ...]] = ()
    #: Every kind of command line ``steps`` may yield (:mod:`bot.runbook.shapes`): what the
    #: forced-command gate on the hosts lets through. A command no shape matches is refused there.
    shapes: ClassVar[tuple[Shape, ...]] = ()

    def __init__(self, params: BaseModel | None = None, facts: Mapping[str, str] | None = None) -> None:
        self.params = params if params is not None else self.Params()
        self.facts: Mapping[str, str] = dict(facts or {})

    @abstractmethod
    def steps(self) -> Steps:
        """Yield Commands (or tuples of them), receive their results, return the findings."""

    @classmethod
    def applies_to(cls, status: int | None, roles: Sequence[str]) -> bool:
        if cls.statuses and status is not None and status not in cls.statuses:
            return False
        return not cls.roles or not roles or bool(cls.roles & set(roles))

    # -- helpers for steps() ------------------------------------------------------------------
    def read(self, result: CommandResult, *readers: type[Reader], header: str | None = None) -> list[Finding]:
        """Parse a command's output with readers; findings carry this runbook's name and the host.

        ``header`` (default: the command line) is given to the scanner as a ``### `` header so readers
        that recognise outputs by header (``systemctl is-active``) see it.
        """
        if result.error is not None:
            return [self.failed(result)]
        scanner = Scanner([cls() for cls in (readers or self.readers)])
        text = f"### $ {header or result.command.display}\n{result.stdout}"
        if result.stderr:
            text += "\n" + result.stderr
        scanner.scan_text(text)
        return [f.model_copy(update={"host": result.host, "runbook": self.name}) for f in scanner.findings()]

    def failed(self, result: CommandResult) -> Finding:
        """A finding that says a command could not be run or did not finish, and why."""
        what = {
            "command_timeout": "timed out",
            "sudo_not_allowed": "needs sudo, which this host's configuration does not allow",
        }.get(result.error or "", result.error or "failed")
        return Finding(
            kind="runbook.command_failed",
            severity=Severity.WARNING,
            summary=f"`{result.command.display}` {what}",
            evidence=tuple(x for x in (result.stderr.strip()[:500],) if x),
            data={"error": result.error, "exit_status": result.exit_status},
            host=result.host,
            runbook=self.name,
        )
